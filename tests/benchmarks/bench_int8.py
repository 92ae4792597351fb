"""Benchmark of the chapter "Training in INT8": wall time per profile and its targets.

Targets (issue "Training in INT8"): the chapter within 2 minutes at ``smoke`` and 15 minutes at
``default`` on 2 cores, from an empty store; the ORT file with learned scales within 0.5
top-1 points of the fake-quant network and within 10 % of the post-training ORT file's INT8
latency; the teacher at 80 % top-1 or more (the aim). Also prints the training throughput
(images/s) of FP32 and LSQ+ training. Run with ``make bench-int8``; it prints the figures and
exits non-zero when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from _chapter import run_chapter

TARGET_S = {"smoke": 120, "default": 900}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="smoke,default")
    ap.add_argument("--keep", help="copy the default run folder here (for the issue note)")
    args = ap.parse_args()
    ok = True
    pd.set_option("display.width", 200)
    for profile in args.profiles.split(","):
        with tempfile.TemporaryDirectory() as runs:
            seconds = run_chapter("int8", profile, Path(runs))
            out = Path(runs) / profile / "int8"
            hit = seconds <= TARGET_S[profile]
            ok &= hit
            print(f"int8 chapter, profile {profile}: {seconds:.0f} s (target "
                  f"{TARGET_S[profile]} s: {'met' if hit else 'MISSED'})")
            history = pd.read_parquet(out / "history.parquet")
            tput = history.groupby(["network", "phase"])["images_per_s"].median()
            print("training throughput (images/s, median epoch):\n" + tput.round(0).to_string())
            results = pd.read_parquet(out / "results.parquet")
            print(results.drop(columns=["artifact"]).round(3).to_string())
            from spaceevo_lib.chapters.int8 import verdicts
            checks = verdicts(results)
            print(checks.round(3).to_string())
            if profile == "default":
                ok &= bool(checks.holds.eq(True).all())  # undecided (None) is not a pass
            if args.keep and profile == "default":
                import shutil
                shutil.copytree(out, args.keep, dirs_exist_ok=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
