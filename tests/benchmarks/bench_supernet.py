"""Benchmark of the supernet chapter: wall time per profile, and 1 against 2 random subnets per
sandwich at equal minutes.

Targets (issue "the quantized-for-all supernet"): the chapter within 3 minutes at ``smoke``
and 55 minutes at ``default`` on 2 cores. The chapter needs the INT8, predictor and block-wise
chapters at the same profile: they are made first in ``--runs-dir`` if missing (untimed), then
the chapter is timed from an empty ``supernet`` folder.

The sandwich comparison (``--minutes`` per setting, 0 to skip) trains the evolved space's
supernet from scratch for the same wall time with ``n_random`` 1 and 2 (each setting's images
per second measured first, its epoch sized to the minutes) and reports the held-out top-1 of
its max and min subnets: the paper's 2 random nets cost a third more per step, so on a fixed
budget they also mean fewer images seen. Run with ``make bench-supernet``; it prints the
figures and exits non-zero when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from _chapter import parse_args, time_from_scratch

TARGET_S = {"smoke": 180, "default": 3300}
NEEDS = ("int8", "predictor", "blockkd")


def sandwich_at_equal_minutes(profile: str, runs: Path, minutes: float) -> pd.DataFrame:
    """Held-out top-1 of max and min after ``minutes`` of FP32 sandwich training from scratch,
    with 1 and with 2 random subnets per step."""
    import os

    import torch

    os.environ["SPACEEVO_RUNS_DIR"] = str(runs)
    from spaceevo_lib import config
    from spaceevo_lib.chapters import supernet as chapter
    from spaceevo_lib.supernet.evaluation import max_min_evaluator
    from spaceevo_lib.supernet.training import train_supernet
    from spaceevo_lib.train.data import load_training_data

    cfg = config.chapter_config("supernet", profile=profile)
    plan = chapter.plan(cfg)
    space = plan.spaces["evolved-ort-vnni"]
    rows = []
    for n_random in (1, 2):
        probe = replace(plan.fp32, epochs=1, train_images=8 * plan.fp32.batch_size,
                        warmup_epochs=0.0)
        data = load_training_data(chapter.resolution_of(plan), probe,
                                  calibration_images=cfg.recal_images)
        net = chapter.new_supernet(space, "scratch", cfg.seed, None)
        t = time.perf_counter()
        train_supernet(net, probe, chapter.train_valid_loaders(data), None, "fp32", n_random,
                       plan.dropout)
        ips = probe.train_images / (time.perf_counter() - t)
        images = int(ips * minutes * 60) // probe.batch_size * probe.batch_size
        run_cfg = replace(plan.fp32, epochs=1, train_images=images, warmup_epochs=0.1)
        data = load_training_data(chapter.resolution_of(plan), run_cfg,
                                  calibration_images=cfg.recal_images)
        net = chapter.new_supernet(space, "scratch", cfg.seed, None)
        t = time.perf_counter()
        h = train_supernet(net, run_cfg, chapter.train_valid_loaders(data), None, "fp32", n_random,
                           plan.dropout, evaluator=max_min_evaluator(
                               torch.from_numpy(data.calibration)))
        rows.append({"n_random": n_random, "images_per_s": round(ips, 1), "images": images,
                     "minutes": round((time.perf_counter() - t) / 60, 2),
                     "valid_top1_max": round(float(h.valid_top1_max.iloc[-1]), 2),
                     "valid_top1_min": round(float(h.valid_top1_min.iloc[-1]), 2)})
    return pd.DataFrame(rows)


def main() -> int:
    args, profiles, runs = parse_args(
        "supernet", __doc__,
        (("--minutes",), {"type": float, "default": 5.0, "help": "minutes per setting of the "
                          "1-vs-2 random nets comparison (0: skip)"}),
        (("--sandwich-only",), {"action": "store_true", "help": "only the 1-vs-2 comparison, "
                                "on the block-wise chapter's spaces of an existing --runs-dir "
                                "(the chapter is not rerun)"}))
    ok = True
    for profile in profiles:
        if args.sandwich_only:
            print(f"1 vs 2 random subnets per sandwich, {args.minutes} minutes each:")
            print(sandwich_at_equal_minutes(profile, runs, args.minutes).to_string(index=False))
            continue
        ok &= time_from_scratch("supernet", profile, runs, NEEDS, TARGET_S[profile])
        out = runs / profile / "supernet"
        history = pd.read_parquet(out / "history.parquet")
        from spaceevo_lib.chapters.supernet import minutes_table
        print(minutes_table(history).round(2).to_string(index=False))
        if args.minutes > 0 and profile != "smoke":
            print(f"1 vs 2 random subnets per sandwich, {args.minutes} minutes each:")
            print(sandwich_at_equal_minutes(profile, runs, args.minutes).to_string(index=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
