"""Training a weight-sharing supernet on the one engine (paper-notes §7, training-notes §4).

Two stages, both :class:`~spaceevo_lib.train.engine.Trainer` runs with :func:`supernet_step`
plugged in (no second loop): FP32, then LSQ+ INT8 from the FP32 weights
(:func:`quantize_supernet`). Each step is one sandwich (:mod:`spaceevo_lib.train.sandwich`):
the max subnet with label-smoothed cross-entropy and dropout, the min subnet and ``n_random``
random subnets distilled in place from the max subnet's detached logits with AlphaNet's
adaptive alpha-divergence (:mod:`spaceevo_lib.train.distill`); their losses summed, one
optimizer step. The subnets are drawn from torch's seeded stream (:func:`step_rng`), so a
resumed run samples what an uninterrupted one samples and every torchrun process trains the
same subnets; under torchrun the gradients are averaged after the sandwich's one backward.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ..quant.lsq import Quantizer
from ..space.encoding import SpaceChoice
from ..train.distill import adaptive_alpha_loss
from ..train.engine import CheckpointError, Trainer, load_checkpoint
from ..train.sandwich import sandwich_loss, step_rng
from .network import Supernet
from .quantized import initialise_quantizers, quantize_elastic

#: Dropout before the classifier, on the max subnet only (the reference's 0.2).
DROPOUT = 0.2
PHASES = ("fp32", "lsq")


def supernet_step(n_random: int = 2, dropout: float = DROPOUT):
    """The engine's step for a supernet: one sandwich per batch (max, min, ``n_random``
    random subnets). Returns the summed loss, the max subnet's logits (the top-1 the engine
    reports) and each pass's loss (``loss_max``, ``loss_min``, ``loss_random``)."""
    def step(net, x, y, cfg):
        core = getattr(net, "module", net)
        teacher: dict[str, torch.Tensor] = {}

        def pass_loss(model, kind, _subnet):
            core.set_dropout(dropout if kind == "max" else 0.0)
            logits = model(x)
            if kind == "max":
                teacher["logits"] = logits
                return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            return adaptive_alpha_loss(logits, teacher["logits"].detach())

        loss, parts = sandwich_loss(net, step_rng(), pass_loss, n_random)
        core.set_dropout(0.0)
        return loss, teacher["logits"], {f"loss_{k}": v for k, v in parts.items()}
    return step


def supernet_arch(space: SpaceChoice | str, phase: str) -> str:
    """The architecture name a supernet's checkpoints carry (another space is refused)."""
    if phase not in PHASES:
        raise ValueError(f"supernet phase must be one of {', '.join(PHASES)}; got {phase!r}")
    sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
    return f"supernet/{sp.encode()}/{phase}"


def quantize_supernet(supernet: Supernet, images: torch.Tensor | None = None,
                      seed: int = 0) -> Supernet:
    """The LSQ+ version of a trained FP32 supernet (a copy): every elastic conv and linear
    layer quantizes its input and its active weight, per tensor as in the reference. With
    ``images`` (real training images), every quantizer is initialised min-max at once, the
    max subnet first (:func:`~.quantized.initialise_quantizers`); without, each initialises on
    its first training pass (a rarely used conv then stays uninitialised for long)."""
    q = quantize_elastic(supernet)
    if images is not None:
        left = initialise_quantizers(q, lambda _subnet: images, seed)
        if left:
            raise RuntimeError(f"{left} quantizers of the supernet saw no data in 32 settings")
    return q


def train_supernet(supernet: Supernet, cfg, loaders: dict, checkpoint: Path | None,
                   phase: str = "fp32", n_random: int = 2, dropout: float = DROPOUT,
                   evaluator=None, progress: bool = False, stop_after: int | None = None,
                   device=None) -> pd.DataFrame:
    """Train ``supernet`` (FP32, or its :func:`quantize_supernet` copy for ``lsq``) for
    ``cfg.epochs``, resuming from ``checkpoint``; returns the per-epoch metrics. A phase that
    does not match the network (LSQ+ training of an FP32 supernet, or the reverse) stops
    before any step."""
    quantized = any(isinstance(m, Quantizer) for m in supernet.modules())
    if phase == "lsq" and not quantized:
        raise ValueError("the LSQ+ stage trains the quantize_supernet() copy of a trained FP32 "
                         "supernet (load_supernet(space, fp32 checkpoint, 'fp32', "
                         "finished_epochs=N) first); this supernet has no quantizers")
    if phase == "fp32" and quantized:
        raise ValueError("an LSQ+ supernet trains in phase 'lsq', not 'fp32'")
    trainer = Trainer(supernet, cfg, loaders, arch=supernet_arch(supernet.space, phase),
                      step=supernet_step(n_random, dropout), checkpoint=checkpoint,
                      evaluator=evaluator, progress=progress, device=device, ddp=False)
    return trainer.fit(stop_after).assign(phase=phase)


def load_supernet(space: SpaceChoice | str, checkpoint: Path, phase: str = "fp32",
                  n_classes: int | None = None, finished_epochs: int | None = None) -> Supernet:
    """A trained supernet from its checkpoint (``weights_only``); the LSQ+ one is rebuilt by
    :func:`quantize_supernet` first. CheckpointError when the file is missing, of another
    space or phase, or (``finished_epochs``) not trained that far."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"no {phase} supernet checkpoint {checkpoint}: train that stage "
                              "first (an INT8 stage starts from the finished FP32 weights)")
    state = load_checkpoint(checkpoint, supernet_arch(space, phase))
    if finished_epochs is not None and state["epoch"] < finished_epochs:
        raise CheckpointError(f"supernet checkpoint {checkpoint} has {state['epoch']} of "
                              f"{finished_epochs} epochs: finish that stage first")
    net = Supernet(space, n_classes)
    if phase == "lsq":
        net = quantize_supernet(net)
    net.load_state_dict(state["model"])
    return net.eval()
