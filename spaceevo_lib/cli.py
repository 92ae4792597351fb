"""``spaceevo``: build the book, rerun one chapter, list parameters, fetch data.

    spaceevo book --profile default            execute every chapter, build _build/html
    spaceevo chapter data -p resolution 32     rerun one chapter with new parameters, rebuild
    spaceevo params data                       a chapter's parameters and profile values
    spaceevo fetch imagenette                  download + convert the originals (internet)
    spaceevo fetch missing                     every data set the book lacks (`make book` and
                                               `make test` do this first)
    spaceevo lab --profile smoke               JupyterLab on the notebooks (`make lab`)
    spaceevo train mobilenet_v3_small -o epochs 3   train one network on Imagenette (also
                                               under torchrun; see spaceevo_lib.train.run)
    spaceevo blockkd-students -p profile paper  the block-wise distillation chapter's
                                               students (under torchrun: shared by rank)
    spaceevo supernet-train -p profile paper   the supernet chapter's supernets (under
                                               torchrun: data-parallel)
"""

from __future__ import annotations

import argparse
import os
import sys

from . import book
from .config import PROFILES, ParameterError, chapters, check_profile, get_chapter, parse_cli_value
from .data.errors import DataError
from .data.fetch import ensure_data, fetch
from .settings import PROFILE_ENV, project_root, runs_dir
from .store import MissingResultError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spaceevo", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("book", help="execute all chapters with papermill and build the HTML")
    b.add_argument("--profile", default="default", help=f"one of {', '.join(PROFILES)}")
    b.add_argument("--no-html", action="store_true", help="execute only")
    c = sub.add_parser("chapter", help="rerun one chapter with new parameters")
    c.add_argument("name", help=f"one of {', '.join(chapters())}")
    c.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="parameter override, as in papermill")
    c.add_argument("--no-html", action="store_true", help="execute only")
    p = sub.add_parser("params", help="show a chapter's parameters")
    p.add_argument("name")
    f = sub.add_parser("fetch", help="download the original data (needs internet)")
    f.add_argument("name", choices=["imagenette", "spaceevo-reference", "missing"],
                   help="a data set, or 'missing': every data set the book needs that the data "
                   "directory lacks")
    lab = sub.add_parser("lab", help="JupyterLab on the notebooks, kernels at a quick profile")
    lab.add_argument("--profile", default="smoke", help="the profile of notebooks whose "
                     "parameters cell says 'default' (default: smoke)")
    lab.add_argument("--port", type=int, default=None)
    lab.add_argument("--no-browser", action="store_true")
    lab.add_argument("--token", default=None, help="server token (default: JupyterLab's)")
    t = sub.add_parser("train", help="train one network on Imagenette (torchrun-ready)")
    t.add_argument("name", help="'teacher', a torchvision model name or '<space>:<subnet>' "
                   "encodings")
    t.add_argument("--out", default=None, help="run folder (default: runs/train/<name>)")
    t.add_argument("--resolution", type=int, default=32, help="Imagenette side: 32 or 64")
    t.add_argument("-o", nargs=2, action="append", default=[], metavar=("OPTION", "VALUE"),
                   help="a training option of spaceevo_lib.train.TrainConfig")
    t.add_argument("--lsq", action="store_true",
                   help="then fine-tune with LSQ+ (INT8), as the chapter 'Training in INT8'")
    t.add_argument("-l", nargs=2, action="append", default=[], metavar=("OPTION", "VALUE"),
                   help="an LSQ+ fine-tuning option (TrainConfig; default lr 0.005, no warm-up)")
    k = sub.add_parser("blockkd-students", help="train the block-wise distillation chapter's "
                       "stage students outside the notebook (torchrun shares them by rank)")
    k.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter of the chapter, as for 'spaceevo chapter blockkd'")
    s = sub.add_parser("supernet-train", help="train the supernet chapter's supernets outside "
                       "the notebook (torchrun: data-parallel, gradients averaged)")
    s.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter of the chapter, as for 'spaceevo chapter supernet'")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "book":
            ensure_data()  # a fresh machine: the data first (offline: the two ways to get it)
            index = book.build_book(args.profile, html=not args.no_html)
            print(f"[spaceevo] book: {index}" if index else "[spaceevo] chapters executed")
        elif args.cmd == "chapter":
            params = {k: parse_cli_value(v) for k, v in args.p}
            out = book.run_chapter(args.name, params, progress=True)
            print(f"[spaceevo] executed: {out}")
            if not args.no_html:
                print(f"[spaceevo] book: {book.build_html()}")
        elif args.cmd == "lab":
            return _lab(args)
        elif args.cmd == "train":
            return _train(args)
        elif args.cmd == "blockkd-students":
            from .chapters.blockkd import train_students  # heavy: imports torch
            out = train_students({k: parse_cli_value(v) for k, v in args.p})
            print(f"[spaceevo] stage students: {out}")
        elif args.cmd == "supernet-train":
            from .chapters.supernet import train_supernets  # heavy: imports torch
            out = train_supernets({k: parse_cli_value(v) for k, v in args.p})
            print(f"[spaceevo] supernets: {out}")
        elif args.cmd == "params":
            _print_params(args.name)
        elif args.name == "missing":
            print(f"[spaceevo] data: {', '.join(ensure_data()) or 'nothing missing'}")
        else:
            fetch(args.name)
    except (ParameterError, DataError, MissingResultError, book.ChapterFailed) as e:
        print(f"spaceevo: error: {e}", file=sys.stderr)
        return 2
    return 0


def _lab(args) -> int:
    """JupyterLab from this environment (its python3 kernel is this interpreter), rooted at
    the notebooks, with SPACEEVO_PROFILE set for its kernels."""
    check_profile(args.profile)
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={project_root()}",
           "--LabApp.default_url=/lab/tree/notebooks"]
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines run as root
    if args.port:
        cmd.append(f"--ServerApp.port={args.port}")
    if args.token is not None:
        cmd.append(f"--IdentityProvider.token={args.token}")
    print(f"[spaceevo] JupyterLab at profile {args.profile!r} (notebooks whose parameters cell "
          f"says 'default'); Ctrl-C stops it", flush=True)
    # JupyterLab replaces this process (same pid): Ctrl-C, SIGTERM from a process manager or a
    # test stop the server itself, and no server outlives a stopped `spaceevo lab`
    os.execve(sys.executable, cmd, {**os.environ, PROFILE_ENV: args.profile})


def _train(args) -> int:
    from .train import CheckpointError  # heavy: imports torch
    from .train.run import main as train_main  # heavy: imports torch
    out = args.out or str(runs_dir() / "train" / args.name.replace(":", "_").replace("/", "_"))
    try:
        lsq = ({k: parse_cli_value(v) for k, v in args.l} if args.lsq or args.l else None)
        return train_main(args.name, out, {k: parse_cli_value(v) for k, v in args.o},
                          args.resolution, lsq)
    except (ValueError, KeyError, CheckpointError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # (no repr quotes)
        print(f"spaceevo train: error: {message}", file=sys.stderr)
        return 2


def _print_params(name: str) -> None:
    ch = get_chapter(name)
    print(f"chapter {name!r} ({ch.notebook}): {ch.title}")
    print(f"  profile   one of {', '.join(PROFILES)} (default 'default')")
    print("  seed      int in [0, 2**32) (default 0)")
    for p in ch.params.values():
        vals = ", ".join(f"{k}={v!r}" for k, v in p.profiles.items())
        print(f"  {p.name:<9} {p.allowed()}: {p.help}\n            profiles: {vals}")


if __name__ == "__main__":
    sys.exit(main())
