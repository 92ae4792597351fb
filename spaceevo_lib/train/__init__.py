"""The one training engine (:mod:`.engine`), its run settings (:mod:`.config`), the data every
run reads (:mod:`.data`), the networks it builds and the ``spaceevo train`` entry
(:mod:`.run`), and the chapter "Training in INT8" (:mod:`.int8`)."""

from .config import OPTIMIZERS, TrainConfig
from .data import TrainingData, load_training_data
from .engine import (CheckpointError, Trainer, ce_step, evaluate, load_checkpoint, lr_at,
                     make_optimizer, param_groups, recalibrate_bn, seed_everything,
                     train_loader)

__all__ = ["OPTIMIZERS", "CheckpointError", "TrainConfig", "Trainer", "ce_step", "evaluate",
           "load_checkpoint", "lr_at", "make_optimizer", "param_groups", "recalibrate_bn",
           "seed_everything", "train_loader", "TrainingData", "load_training_data",
           "build_network"]


def __getattr__(name: str):
    if name == "build_network":  # lazy: run pulls in pandas and the data module
        from .run import build_network
        return build_network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
