"""Benchmark of the supernet chapter: its wall time per profile, and the training recipe
chosen by curves at equal minutes.

Targets (issue "a supernet whose subnets learn"): the chapter within 3 minutes at ``smoke``
and 50 minutes (55 with the 10 % slack) at ``default`` on 2 cores. The chapter needs the
INT8, predictor and block-wise chapters at the same profile: they are made first in
``--runs-dir`` if missing (untimed), then the chapter is timed from an empty ``supernet``
folder.

``--recipes`` (run once per study host, ``make bench-supernet ARGS=--recipes``): every
candidate of ``chapters.supernet.CANDIDATES`` trains the evolved space's supernet from the
same seed for the same FP32 minutes (each phase's images per second measured first, its epochs
sized to the minutes), then the chapter's LSQ+ phase; after every epoch the held-out top-1 of
the max, min and the fixed random subnets, in FP32 and INT8 (min-max scales before LSQ+, the
learned ones after). ``chapters.supernet.RECIPE_RULE`` picks the recipe; the curves, the pick,
the one-dimension-at-a-time table of the paper's shortcut and of the plain sandwich, the host
and the commit are written to ``spaceevo_lib/configs/bench/supernet_recipes.json``, which the
chapter draws. Not part of the test suite.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from _chapter import parse_args, time_from_scratch

TARGET_S = {"smoke": 180, "default": 3300}
CURVE_IMAGES = 500
NEEDS = ("int8", "predictor", "blockkd")


def images_per_s(space, plan_, phase, teacher) -> float:
    """Training images per second of one phase's step on this host (its batch, memory
    layout and passes; the teacher's forward included when it distils from one)."""
    from spaceevo_lib.supernet.training import step_seconds
    sec = step_seconds(space, phase.cfg, 0 if phase.kind == "max" else phase.n_random,
                       phase.kind != "max", teacher if phase.teacher else None, plan_.dropout,
                       plan_.shortcut, steps=3)
    return phase.cfg.batch_size / sec


def recipes(profile: str, runs: Path, minutes: float, names: list[str], out: Path,
            keep: bool = False) -> dict:
    """Every candidate at ``minutes`` of FP32 training, its curves and the rule's pick,
    written to ``out`` after each candidate (``complete`` false until the last). With
    ``keep``, the candidates of the saved file that are not rerun stay in it (each size row
    names the commit that trained it; the saved file must be of the same profile and
    minutes)."""
    import os


    os.environ["SPACEEVO_RUNS_DIR"] = str(runs)
    from spaceevo_lib import config
    from spaceevo_lib.chapters import supernet as chapter
    from spaceevo_lib.store import _git_commit
    from spaceevo_lib.supernet.training import phase_checkpoints, train_recipe
    from spaceevo_lib.train.data import balanced_loader

    commit = _git_commit()  # (the code that runs, before anything else is committed)
    base = config.chapter_config("supernet", profile=profile)
    plan0 = chapter.plan(base)
    label = "evolved-ort-vnni"
    space = plan0.spaces[label]
    data, lsq_data = chapter.load_data(base, plan0)
    n_train = len(data.loaders["train"].dataset)
    subnets = chapter.random_subnets(space, base.random_subnets, base.seed,
                                     max(space.spec.resolutions))
    recal = chapter.recal_images(data, base.recal_images)
    quant_images = chapter.recal_images(data, 64)
    folder = runs / profile / "bench-supernet"
    # the curves' held-out images: a class-balanced part of the split, so that twenty
    # evaluations per epoch (max, min, 8 random; FP32 and INT8) stay a small share of the time
    valid = balanced_loader(data.loaders["valid"], CURVE_IMAGES, base.seed)
    rows, table_b, sizes, kept = [], [], [], []
    if keep and out.is_file():
        prev = json.loads(out.read_text())
        if (prev["profile"], prev["minutes"]) != (profile, minutes):
            raise SystemExit(f"{out} holds {prev['profile']} at {prev['minutes']} minutes, not "
                             f"{profile} at {minutes}: rerun every candidate")
        kept = [n for n in prev["candidates"] if n not in names]
        rows = [r for r in prev["curves"] if r["candidate"] in kept]
        table_b = [r for r in prev["table_b"] if r["candidate"] in kept]
        sizes = [{"commit": prev["commit"], **r} for r in prev["sizes"] if r["candidate"] in kept]
    names = kept + names
    for name in names[len(kept):]:
        overrides = chapter.CANDIDATES[name]
        cfg = config.chapter_config("supernet", profile=profile, **overrides)
        plan_ = chapter.plan(cfg)
        teacher, digest = chapter.load_teacher(plan_, profile)
        ips = {p.kind: images_per_s(space, plan_, p, teacher) for p in plan_.phases
               if p.kind != "lsq"}
        epochs = chapter.equal_minutes_epochs(minutes, ips, n_train)
        cfg = config.chapter_config("supernet", profile=profile, **overrides,
                                    fp32_epochs=epochs["sandwich"],
                                    **({"max_epochs": epochs["max"]} if "max" in epochs else {}))
        plan_ = chapter.plan(cfg)
        students = chapter.students_folder(plan_, profile)
        net = chapter.new_supernet(space, plan_.init, plan_.fp32.seed, students, plan_.shortcut,
                                   "zero-gamma" in plan_.recipe)
        paths = phase_checkpoints(folder, name.replace(" ", "_").replace("'", ""),
                                  plan_.phases, chapter.start_of(plan_, label, students, digest))
        print(f"[{name}] images/s {ips}, epochs {epochs}", flush=True)
        t0 = time.perf_counter()
        fp32, q, h = train_recipe(
            net, plan_.phases, paths,
            lambda ph: {"train": (lsq_data if ph.kind == "lsq" else data).loaders["train"],
                        "valid": valid},
            chapter.curve_evaluator(recal, subnets, quant_images), teacher, quant_images,
            plan_.dropout, progress=True)
        h = h.assign(candidate=name, minutes=h.seconds.cumsum() / 60)
        rows += h.to_dict("records")
        sizes.append({"candidate": name, "commit": commit,
                      **{f"images_per_s_{k}": v for k, v in ips.items()},
                      **{f"epochs_{k}": v for k, v in epochs.items()},
                      "wall_minutes": (time.perf_counter() - t0) / 60})
        if name in ("paper's shortcut", "sandwich"):
            dims = chapter.dimension_table(q, data, base.recal_images, base.diagnose_draws,
                                           base.seed)
            table_b += dims.assign(candidate=name).to_dict("records")
        last = h.iloc[-1]
        print(f"[{name}] after LSQ+: max {last.valid_top1_max_int8:.1f} min "
              f"{last.valid_top1_min_int8:.1f} random median "
              f"{last.valid_top1_random_int8:.1f}", flush=True)
        del fp32, q
        result = summary(rows, table_b, sizes, names, commit, profile, minutes, space, valid,
                         subnets)
        result["complete"] = len(sizes) == len(names)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary(rows, table_b, sizes, names, commit, profile, minutes, space, valid, subnets):
    """The saved benchmark: host, commit, curves, sizes and the rule's pick so far."""
    import torch

    from spaceevo_lib import host
    from spaceevo_lib.chapters import supernet as chapter
    curves = pd.DataFrame(rows)
    final = (curves.groupby("candidate", sort=False).tail(1)
             .rename(columns={f"valid_top1_{k}_int8": f"top1_{k}"
                              for k in ("max", "min", "random")}))
    chosen = chapter.choose_recipe(final[["candidate", "top1_max", "top1_min", "top1_random"]])
    cpu = host.cpu_info()
    host_facts = {"cpu": cpu["cpu_model"], "cores": cpu["logical_cores"], "vnni": cpu["vnni"],
                  "python": platform.python_version(), "torch": torch.__version__}
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit, "host": host_facts,
            "profile": profile, "minutes": minutes, "space": space.encode(),
            "curve_images": len(valid.dataset),
            "random_subnets": [s.encode() for s in subnets],
            "rule": chapter.RECIPE_RULE.format(tie=chapter.RECIPE_TIE_POINTS),
            "candidates": {n: chapter.CANDIDATES[n] for n in names[:len(sizes)]},
            "sizes": sizes, "curves": json.loads(curves.to_json(orient="records")),
            "table_b": json.loads(pd.DataFrame(table_b).to_json(orient="records")),
            "chosen": chosen}


def main() -> int:
    args, profiles, runs = parse_args(
        "supernet", __doc__,
        (("--recipes",), {"action": "store_true", "help": "compare the training recipes at "
                          "equal minutes on an existing --runs-dir (the chapter is not rerun) "
                          "and write the saved curves"}),
        (("--minutes",), {"type": float, "default": 10.0, "help": "FP32 minutes per candidate"}),
        (("--candidates",), {"default": "", "help": "comma-separated candidate names "
                             "(default: all of chapters.supernet.CANDIDATES)"}),
        (("--out",), {"default": "", "help": "where to write the curves (default: the file the "
                      "chapter reads)"}),
        (("--keep",), {"action": "store_true", "help": "keep the saved file's candidates that "
                       "are not rerun (same profile and minutes)"}))
    ok = True
    for profile in profiles:
        if args.recipes:
            from spaceevo_lib.chapters import supernet as chapter
            names = [n for n in args.candidates.split(",") if n] or list(chapter.CANDIDATES)
            out = Path(args.out or chapter.RECIPE_BENCH)
            result = recipes(profile, runs, args.minutes, names, out, args.keep)
            print(f"chosen recipe: {result['chosen']} -> {out}")
            continue
        ok &= time_from_scratch("supernet", profile, runs, NEEDS, TARGET_S[profile])
        history = pd.read_parquet(runs / profile / "supernet" / "history.parquet")
        from spaceevo_lib.chapters.supernet import minutes_table
        print(minutes_table(history).round(2).to_string(index=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
