"""Search over candidate search spaces: LUT tables, the Q-T score, aging evolution (§3.7-5).

CPU-only and torch-free: everything here reads the per-stage lookup tables (NSR loss and INT8
latency of sampled sub-stages) and never builds a network. Reusable machinery only: the Q-T
chapter's replay of the paper's search is :mod:`spaceevo_lib.chapters.qt`.
"""

from spaceevo_lib.search.evolution import (HISTORY_COLUMNS, EvolutionConfig, EvolutionResult,
                                           aging_evolution, describe_spaces, mutate_block,
                                           mutate_window, uniform_spaces)
from spaceevo_lib.search.lut import (LUT_RESOLUTIONS, REQUIRED_COLUMNS, LUTError, StageTable,
                                     StageTables)
from spaceevo_lib.search.qt import (LUT_MS_PER_MMAC, OTHER_PARTS, OtherLatency,
                                    OtherLatencyEstimate, QTConfig, QTPart, QTResult, QTSamples,
                                    QTScorer, lut_ms_per_mmac, paper_other_latency, qt_score,
                                    resolve_other_latency)

__all__ = [
    "HISTORY_COLUMNS", "EvolutionConfig", "EvolutionResult", "aging_evolution",
    "describe_spaces", "mutate_block", "mutate_window", "uniform_spaces",
    "LUT_RESOLUTIONS", "REQUIRED_COLUMNS", "LUTError", "StageTable", "StageTables",
    "LUT_MS_PER_MMAC", "OTHER_PARTS", "OtherLatency", "OtherLatencyEstimate", "QTConfig",
    "QTPart", "QTResult", "QTSamples", "QTScorer", "lut_ms_per_mmac", "paper_other_latency",
    "qt_score", "resolve_other_latency",
]
