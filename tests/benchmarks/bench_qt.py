"""Benchmark of the Q-T replay: one Q-T evaluation, a paper-setting evolution, determinism.

Targets (issue "Q-T score and aging evolution"): one Q-T evaluation at 100,000 samples under
10 ms; the paper-setting evolution (5,000 spaces) within 2 minutes per hyperspace on 2 cores;
the same seed gives the same result bit for bit. Run with ``make bench-qt`` (a few minutes).
The chapter's wall time per profile is printed by ``make book`` and kept in the run folder's
``timing.json``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from spaceevo_lib.search import (EvolutionConfig, QTConfig, QTScorer, StageTables,
                                 aging_evolution, paper_other_latency)
from spaceevo_lib.space import published_spaces


def main() -> int:
    ok = True
    qt = QTConfig()
    for hs in ("onnxw", "mobilew"):
        tables = StageTables(hs).load_all()
        scorer = QTScorer(tables, paper_other_latency(hs), qt, seed=0)
        space = next(sp for sp in published_spaces().values() if sp.hyperspace == hs)
        scorer(space)  # warm caches
        times = []
        for _ in range(20):
            t = time.perf_counter()
            scorer(space)
            times.append((time.perf_counter() - t) * 1e3)
        med = float(np.median(times))
        ok &= med < 10
        print(f"{hs}: one Q-T evaluation at {qt.n_samples:,} samples: median {med:.2f} ms "
              f"(target < 10 ms: {'met' if med < 10 else 'MISSED'})")
        t = time.perf_counter()
        a = aging_evolution(hs, scorer, EvolutionConfig())
        secs = time.perf_counter() - t
        ok &= secs < 120
        print(f"{hs}: evolution over {len(a.history)} spaces: {secs:.1f} s "
              f"(target < 120 s: {'met' if secs < 120 else 'MISSED'})")
        b = aging_evolution(hs, QTScorer(tables, paper_other_latency(hs), qt, seed=0),
                            EvolutionConfig())
        same = a.history.equals(b.history)
        ok &= same
        print(f"{hs}: same seed, same history bit for bit: {'yes' if same else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
