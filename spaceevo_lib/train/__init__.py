"""The one training engine (:mod:`.engine`) and its run settings (:mod:`.config`)."""

from .config import OPTIMIZERS, TrainConfig
from .engine import (CheckpointError, Trainer, ce_step, evaluate, load_checkpoint, lr_at,
                     make_optimizer, param_groups, recalibrate_bn, seed_everything,
                     train_loader)

__all__ = ["OPTIMIZERS", "CheckpointError", "TrainConfig", "Trainer", "ce_step", "evaluate",
           "load_checkpoint", "lr_at", "make_optimizer", "param_groups", "recalibrate_bn",
           "seed_everything", "train_loader"]
