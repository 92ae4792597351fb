"""Block-wise quantized distillation and own search spaces (paper-notes §3-5): machinery.

:mod:`.teacher` cuts the teacher at the stage boundaries and banks its features (its images,
the boundary checks); :mod:`.students` holds the elastic stage students and their sandwich
training step; :mod:`.tables` samples them into lookup tables in the published format;
:mod:`.jobs` trains every student as a resumable parallel job; :mod:`.spaces` runs the Q-T
score and aging evolution on those tables. The chapter's plan, tables and verdicts are
:mod:`spaceevo_lib.chapters.blockkd`.
"""

from .jobs import JobContext, JobSettings, run_job, run_jobs
from .students import StageStudent, SubStage
from .teacher import BlockKDError, FeatureBank, nsr, stage_boundaries

__all__ = ["BlockKDError", "FeatureBank", "JobContext", "JobSettings", "StageStudent",
           "SubStage", "nsr", "run_job", "run_jobs", "stage_boundaries"]
