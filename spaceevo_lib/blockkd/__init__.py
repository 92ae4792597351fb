"""Block-wise quantized distillation and this host's own search spaces (paper-notes §3-5).

:mod:`.teacher` cuts the teacher at the stage boundaries and banks its features;
:mod:`.students` holds the elastic stage students and their sandwich training step;
:mod:`.tables` samples them into lookup tables in the published format; :mod:`.spaces` runs
the Q-T score and aging evolution on those tables per device; :mod:`.run` is the chapter's
procedure (parallel, resumable jobs); :mod:`.summary` its tables and verdicts.
"""

from .students import StageStudent, SubStage
from .summary import THRESHOLDS, cost_table, int8_cost, int8_cost_glue, noxnn_comparison, verdicts
from .teacher import BlockKDError, FeatureBank, nsr, stage_boundaries

__all__ = ["BlockKDError", "FeatureBank", "StageStudent", "SubStage", "THRESHOLDS", "cost_table",
           "int8_cost", "int8_cost_glue", "noxnn_comparison", "nsr", "stage_boundaries",
           "verdicts"]
