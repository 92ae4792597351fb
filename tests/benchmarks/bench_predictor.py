"""Benchmark of the predictor chapter: first-run time, accuracy beside repeatability, speed.

Targets (issue "predictors that meet nn-Meter's bar on every device"): the chapter at
``default`` within 22 minutes for its first run, measurements included, on 2 cores (60
held-out networks per device at the training scale, 10 additivity subnets, two cross
predictors); at least 95 % of held-out networks within +-10 % (the point estimate, its 95 %
Wilson interval beside) for INT8 on every device and scale and for FP32 at the training scale,
beside the ground truth's own split-half repeatability; at least 10,000 subnet predictions per
second on one core.

By default the chapter is executed here from an empty runs folder (a first run, as on a clean
clone), then its tables are read; ``--existing`` reads the last run at ``--profile`` instead.
Run with ``make bench-predictor`` (about 22 minutes); it prints the figures and exits non-zero
when a target is missed. Not part of the test suite: timings belong in benchmarks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _chapter import run_chapter

TARGET_MIN = {"smoke": 3, "default": 22}


def report(profile: str, seconds: float | None) -> bool:
    from spaceevo_lib.chapters import predictor as px
    from spaceevo_lib.chapters.predictor import load_predictor
    from spaceevo_lib.store import Run
    run = Run("predictor", profile)
    ok = True
    side = run.load("side_by_side")
    for _, r in side.iterrows():
        line = (f"{r.device} {r.hyperspace} {r.precision.upper()}: {r.within_10pct:.0f} % of "
                f"{r.networks} held-out networks within +-10 % (95 % interval "
                f"{r.within_10pct_ci_low:.0f}-{r.within_10pct_ci_high:.0f} %; 5 %: "
                f"{r.within_5pct:.0f} %, "
                f"RMSPE {r.rmspe_pct:.1f} %); ground truth halves within +-10 %: "
                f"{r.repeat_within_10pct:.0f} % ({r.statistic})")
        if r.target_met is not None and r.target_met == r.target_met:
            ok &= bool(r.target_met)
            line += f"  [target >= {r.target_pct:.0f} %: {'met' if r.target_met else 'MISSED'}]"
        print(line)
    n, span = px.measurement_summary(run)
    if seconds is not None:
        limit = TARGET_MIN.get(profile)
        met = limit is None or seconds / 60 <= limit
        ok &= met
        print(f"chapter at {profile}, first run from an empty runs folder: {seconds / 60:.1f} "
              f"min ({n} measurement records over {span:.1f} min; target <= {limit} min: "
              f"{'met' if met else 'MISSED'})")
    pred = load_predictor("ort-vnni", "train", profile)
    space = run.load("validation").query("hyperspace == @pred.hyperspace").space.iloc[0]
    cold = px.prediction_speed(pred, space, n=20000)
    warm = px.prediction_speed(pred, space, n=20000, warm=True)
    met = cold >= 10000
    ok &= met
    print(f"prediction speed, ort-vnni {pred.hyperspace} ({pred.family}), one core: "
          f"{cold:,.0f} subnets/s from an empty cache, {warm:,.0f} warm "
          f"(target >= 10,000: {'met' if met else 'MISSED'})")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--existing", action="store_true", help="read the last run, do not run")
    ap.add_argument("--runs-dir", help="run in this runs folder and keep it (default: a "
                    "temporary one); it must be empty for a first-run time")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.existing:
        return 0 if report(args.profile, None) else 1
    if args.runs_dir:
        runs = Path(args.runs_dir)
        if runs.exists() and any(runs.iterdir()):
            ap.error(f"--runs-dir {runs} is not empty: a first run needs an empty folder")
        runs.mkdir(parents=True, exist_ok=True)
        seconds = run_chapter("predictor", args.profile, runs)
        return 0 if report(args.profile, seconds) else 1
    with tempfile.TemporaryDirectory() as runs:
        seconds = run_chapter("predictor", args.profile, Path(runs))
        return 0 if report(args.profile, seconds) else 1


if __name__ == "__main__":
    sys.exit(main())
