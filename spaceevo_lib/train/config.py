"""One training run's settings, validated before any work (one dataclass for every chapter
that trains: teacher, LSQ+ fine-tuning, block students, supernets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..data.imagenette import AUGMENTATIONS

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """What one run does. Defaults are the teacher recipe at the training scale (32 px
    Imagenette on 2 cores); the paper profile passes the paper's values (training-notes §1)."""

    epochs: int = 10
    batch_size: int = 128  # per process; the global batch is batch_size x processes
    optimizer: str = "sgd"  # sgd: Nesterov momentum (the paper's); adamw for small ablations
    lr: float = 0.1  # peak learning rate, reached after the warm-up
    min_lr: float = 0.0  # where the cosine ends
    warmup_epochs: float = 1.0  # linear warm-up from lr / 100, counted in steps
    momentum: float = 0.9
    weight_decay: float = 5e-5
    # Decay only conv/linear weights. BN scales and shifts and biases are not decayed (decay
    # there only fights the normalisation), nor are quantizer scales and offsets: decay
    # would shrink the scales towards 0, i.e. clip more, for no regularising benefit.
    decay_norm_and_bias: bool = False
    quantizer_lr_scale: float = 1.0  # learning rate of quantizer parameters relative to lr
    grad_clip_value: float | None = None  # clip each gradient element to +-value (reference: 1)
    grad_clip_norm: float | None = 5.0  # clip the global gradient norm (None: off)
    label_smoothing: float = 0.1
    augment: str = "crop_flip"  # none | flip | crop_flip (reflect-padded random crop + flip)
    valid_size: int = 1000  # images held out of the training split for model selection
    train_images: int = 0  # a seeded subset of the rest for quick runs (0: all of them)
    bn_recalibration_batches: int = 0  # after training: re-estimate BN statistics (0: off)
    # NHWC memory layout for weights and batches: oneDNN's fast convolution path on CPU
    # (1.5-1.8x the training throughput of NCHW for the study's networks on 2 cores)
    channels_last: bool = True
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # step-specific settings (e.g. KD)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"training option {name!r} must be {allowed}; got "
                                 f"{getattr(self, name)!r}")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
             "an integer >= 1")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
        need(self.lr > 0, "lr", "> 0")
        need(0 <= self.min_lr <= self.lr, "min_lr", "between 0 and lr")
        need(0 <= self.warmup_epochs < self.epochs, "warmup_epochs",
             f"in [0, epochs) with epochs {self.epochs}")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.quantizer_lr_scale > 0, "quantizer_lr_scale", "> 0")
        need(self.grad_clip_value is None or self.grad_clip_value > 0, "grad_clip_value",
             "None or > 0")
        need(self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm",
             "None or > 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)")
        need(self.augment in AUGMENTATIONS, "augment", f"one of {', '.join(AUGMENTATIONS)}")
        need(isinstance(self.valid_size, int) and self.valid_size >= 0, "valid_size",
             "an integer >= 0")
        need(isinstance(self.train_images, int) and self.train_images >= 0, "train_images",
             "an integer >= 0")
        need(isinstance(self.bn_recalibration_batches, int)
             and self.bn_recalibration_batches >= 0, "bn_recalibration_batches",
             "an integer >= 0")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> TrainConfig:
        """A config from user options; unknown names are refused with the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        try:
            return cls(**dict(options))
        except ValueError as e:  # a default the user did not type clashes with one they did
            name = str(e).split("'")[1] if "'" in str(e) else ""
            if name and name not in options:
                raise ValueError(f"{e} (its default; set it with the other options)") from None
            raise

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra"] = dict(self.extra)
        return d
