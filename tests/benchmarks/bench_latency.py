"""Benchmark of the latency chapter: wall time per profile and repeatability of speedups.

Targets (issue "INT8 vs FP32 latency"): the chapter within 3 minutes at ``smoke`` and 8 minutes
at ``default`` on 2 cores, from an empty store; two ``default`` runs agree within 10 % on the
per-item INT8 speedup for at least 90 % of rows. Run with ``make bench-latency`` (about 20 min);
it prints the figures and exits non-zero when a target is missed. Not part of the test suite:
timings belong in benchmarks, not in timed tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from _chapter import run_chapter

TARGET_S = {"smoke": 180, "default": 480}


def repeatability(a: pd.DataFrame, b: pd.DataFrame, tol: float = 0.10) -> float:
    """Share of (item, device) rows whose speedups differ by at most ``tol`` (relative)."""
    m = a.merge(b, on=["item", "device"], suffixes=("_a", "_b"))
    rel = (m.speedup_a - m.speedup_b).abs() / m[["speedup_a", "speedup_b"]].mean(axis=1)
    return float((rel <= tol).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="smoke,default")
    ap.add_argument("--repeat", type=int, default=2, help="default-profile runs to compare")
    args = ap.parse_args()
    ok = True
    for profile in args.profiles.split(","):
        tables = []
        for i in range(args.repeat if profile == "default" else 1):
            with tempfile.TemporaryDirectory() as runs:
                seconds = run_chapter("latency", profile, Path(runs))
                table = pd.read_parquet(Path(runs) / profile / "latency" / "measurements.parquet")
            tables.append(table)
            hit = seconds <= TARGET_S[profile]
            ok &= hit
            print(f"latency chapter, profile {profile}, run {i + 1}: {seconds:.0f} s "
                  f"(target {TARGET_S[profile]} s: {'met' if hit else 'MISSED'}), "
                  f"{len(table)} records, {int(table.noisy.sum())} noisy")
        if len(tables) == 2:
            share = repeatability(*tables)
            ok &= share >= 0.90
            print(f"repeatability at {profile}: {share:.1%} of rows within 10 % "
                  f"(target 90 %: {'met' if share >= 0.90 else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
