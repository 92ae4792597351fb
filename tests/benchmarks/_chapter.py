"""What every chapter benchmark does first: execute one chapter with papermill, as the book
does, into a given runs folder, and return the wall time."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def run_chapter(name: str, profile: str, runs_dir: Path, **params) -> float:
    """Execute chapter ``name`` at ``profile`` (``params`` override single parameters) with
    ``runs_dir`` as the artifact store, in a scratch book folder; seconds of wall time."""
    os.environ["SPACEEVO_RUNS_DIR"] = str(runs_dir)
    from spaceevo_lib import book
    with tempfile.TemporaryDirectory() as root:
        for rel in ("_config.yml", "_toc.yml"):
            Path(root, rel).write_text((book.project_root() / rel).read_text())
        t = time.perf_counter()
        book.run_chapter(name, {"profile": profile, **params}, root=Path(root))
        return time.perf_counter() - t


def time_from_scratch(name: str, profile: str, runs_dir: Path, needs: tuple[str, ...],
                      target_s: float) -> bool:
    """The chapters ``name`` needs made first in ``runs_dir`` if missing (untimed), then
    ``name`` timed from an empty run folder; prints the time against ``target_s`` and says
    whether it was met."""
    import shutil
    for need in needs:
        if not (runs_dir / profile / need / "summary.json").is_file():
            print(f"making the {need} chapter at {profile} first (untimed) ...", flush=True)
            run_chapter(need, profile, runs_dir)
    shutil.rmtree(runs_dir / profile / name, ignore_errors=True)
    seconds = run_chapter(name, profile, runs_dir)
    hit = seconds <= target_s
    print(f"{name} chapter, profile {profile}: {seconds:.0f} s (target {target_s:.0f} s: "
          f"{'met' if hit else 'MISSED'})")
    return hit


def parse_args(name: str, doc: str, *extra) -> tuple[argparse.Namespace, list[str], Path]:
    """The command line every chapter benchmark takes (``--profiles``, ``--runs-dir``), plus
    ``extra`` (``(args, kwargs)`` pairs of ``add_argument``): (arguments, profiles, runs
    folder, a temporary one unless given)."""
    import pandas as pd
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--profiles", default="smoke,default")
    ap.add_argument("--runs-dir", help="runs folder holding (or receiving) the chapters this one "
                    "needs; default: a temporary one")
    for a, kw in extra:
        ap.add_argument(*a, **kw)
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix=f"bench-{name}-"))
    return args, args.profiles.split(","), runs
