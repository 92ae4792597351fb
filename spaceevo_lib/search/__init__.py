"""The study's two searches: over candidate search spaces (LUT tables, the Q-T score, aging
evolution; §3.7-5) and over the subnets of a trained supernet under a latency limit (§8),
sharing one population, history and selection machinery (:mod:`.evolution`).

CPU-only and torch-free: the space search reads the per-stage lookup tables (NSR loss and INT8
latency of sampled sub-stages); the subnet search calls the fitness and latency functions it is
given. Neither builds a network. Reusable machinery only: the Q-T chapter's replay of the
paper's search is :mod:`spaceevo_lib.chapters.qt`.
"""

from spaceevo_lib.search.evolution import (HISTORY_COLUMNS, EvolutionConfig, EvolutionResult,
                                           History, aging_evolution, checked_score,
                                           describe_spaces, fittest, mutate_block, mutate_window,
                                           tournament, uniform_spaces)
from spaceevo_lib.search.lut import (LUT_RESOLUTIONS, REQUIRED_COLUMNS, LUTError, StageTable,
                                     StageTables)
from spaceevo_lib.search.qt import (LUT_MS_PER_MMAC, OTHER_PARTS, OtherLatency,
                                    OtherLatencyEstimate, QTConfig, QTPart, QTResult, QTSamples,
                                    QTScorer, lut_ms_per_mmac, paper_other_latency, qt_score,
                                    resolve_other_latency)
from spaceevo_lib.search.subnets import (FitnessCache, NoValidSubnetError, SubnetSearchConfig,
                                         SubnetSearchResult, random_subnets, subnet_search)

__all__ = [
    "HISTORY_COLUMNS", "EvolutionConfig", "EvolutionResult", "History", "aging_evolution",
    "checked_score", "describe_spaces", "fittest", "mutate_block", "mutate_window",
    "tournament", "uniform_spaces",
    "FitnessCache", "NoValidSubnetError", "SubnetSearchConfig", "SubnetSearchResult",
    "random_subnets", "subnet_search",
    "LUT_RESOLUTIONS", "REQUIRED_COLUMNS", "LUTError", "StageTable", "StageTables",
    "LUT_MS_PER_MMAC", "OTHER_PARTS", "OtherLatency", "OtherLatencyEstimate", "QTConfig",
    "QTPart", "QTResult", "QTSamples", "QTScorer", "lut_ms_per_mmac", "paper_other_latency",
    "qt_score", "resolve_other_latency",
]
