"""Benchmark of the block-wise distillation chapter: wall time per profile and its targets.

Targets (issue "block-wise quantized distillation"): the chapter within 2 minutes at
``smoke`` and 15 minutes at ``default`` on 2 cores, teacher features and block students
included. The chapter needs the teacher and MobileNetV3-Small's latency (chapter "Training in
INT8") and the training-scale predictors (predictor chapter) at the same profile: they are
made first in ``--runs-dir`` if missing (untimed), then the chapter is timed from an empty
``blockkd`` folder. Run with ``make bench-blockkd``; it prints the figures and exits non-zero
when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import sys

import pandas as pd

from _chapter import parse_args, time_from_scratch

TARGET_S = {"smoke": 120, "default": 900}
NEEDS = ("int8", "predictor")


def main() -> int:
    _, profiles, runs = parse_args("blockkd", __doc__)
    ok = True
    for profile in profiles:
        ok &= time_from_scratch("blockkd", profile, runs, NEEDS, TARGET_S[profile])
        out = runs / profile / "blockkd"
        students = pd.read_parquet(out / "students.parquet")
        print(f"{len(students)} students, {int(students.rows.sum())} table rows, "
              f"{students.seconds.sum() / 3600:.2f} core-hours; slowest:")
        print(students.sort_values("seconds").tail(5)[["hyperspace", "stage", "code",
                                                       "train_seconds", "seconds"]].round(1)
              .to_string(index=False))
        for f in sorted(out.glob("scores_*.parquet")):
            s = pd.read_parquet(f)
            print(f.stem, "\n", s.head(8)[["space", "kind", "qt_mean", "qt_std"]].round(4)
                  .to_string(index=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
