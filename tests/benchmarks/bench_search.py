"""Benchmark of the SEQnet search chapter: wall time per profile, and where the minutes went.

Targets (issue "SEQnet search and Table 1"): the chapter within 3 minutes at ``smoke`` and 30
minutes at ``default`` on 2 cores. The chapter needs the INT8, predictor, block-wise and
supernet chapters at the same profile: they are made first in ``--runs-dir`` if missing
(untimed), then the chapter is timed from an empty ``search`` folder. Prints the chapter's own
minutes per step, its searches' evaluations, and the search against random sampling. Run with
``make bench-search``; exits non-zero when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from _chapter import parse_args, time_from_scratch

TARGET_S = {"smoke": 180, "default": 1800}
NEEDS = ("int8", "predictor", "blockkd", "supernet")


def main() -> int:
    _, profiles, runs = parse_args("search", __doc__)
    ok = True
    for profile in profiles:
        ok &= time_from_scratch("search", profile, runs, NEEDS, TARGET_S[profile])
        out = runs / profile / "search"
        print(pd.read_parquet(out / "minutes.parquet").round(2).to_string(index=False))
        history = pd.read_parquet(out / "search_history.parquet")
        print(history.groupby(["device", "space", "limit"], sort=False).agg(
            evaluated=("order", "size"), best=("score", "max")).reset_index().to_string())
        records = {r["name"]: r["value"] for r in
                   json.loads((out / "summary.json").read_text())}
        print("search against random sampling:", records.get("verdict/search_beats_random"),
              records.get("search_gain_over_random/search/evolved-ort-vnni"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
