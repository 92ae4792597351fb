"""Training: the one engine (:mod:`.engine`: schedule, pluggable step, checkpoints that resume
bit-exact, evaluation, torchrun), its run settings (:mod:`.config`), the data every run reads
(:mod:`.data`), the networks it trains by name (:mod:`.networks`), the FP32 and LSQ+ phases
(:mod:`.recipes`), the sandwich sampler (:mod:`.sandwich`) and the ``spaceevo train`` entry
(:mod:`.run`). Reusable machinery only: the INT8 chapter's tables and verdicts are
:mod:`spaceevo_lib.chapters.int8`.
"""

from .config import OPTIMIZERS, TrainConfig
from .data import TrainingData, load_training_data
from .engine import (CheckpointError, NonFiniteLoss, Trainer, ce_step, evaluate,
                     load_checkpoint, lr_at, make_optimizer, param_groups, process_group,
                     seed_everything, train_loader)
from .networks import build_network, teacher_network
from .recipes import train_fp32, train_lsq

__all__ = ["OPTIMIZERS", "CheckpointError", "NonFiniteLoss", "TrainConfig", "Trainer",
           "ce_step", "evaluate", "load_checkpoint", "lr_at", "make_optimizer", "param_groups",
           "process_group",
           "seed_everything", "train_loader", "TrainingData", "load_training_data",
           "build_network", "teacher_network", "train_fp32", "train_lsq"]
