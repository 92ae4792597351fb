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

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._io import stable_hash
from ..quant.lsq import Quantizer
from ..space.encoding import SpaceChoice
from ..train.distill import adaptive_alpha_loss
from ..train.config import TrainConfig
from ..train.engine import CheckpointError, Trainer, load_checkpoint
from ..train.sandwich import sandwich_loss, step_rng
from .network import Supernet
from .quantized import initialise_quantizers, quantize_elastic

#: Dropout before the classifier, on the max subnet only (the reference's 0.2).
DROPOUT = 0.2
PHASES = ("fp32", "lsq")


def supernet_step(n_random: int = 2, dropout: float = DROPOUT, with_min: bool = True,
                  teacher: torch.nn.Module | None = None):
    """The engine's step for a supernet: one sandwich per batch (max, min unless
    ``with_min`` is False, ``n_random`` random subnets; max alone is a plain loop on the max
    subnet). The max subnet learns from the labels (label-smoothed cross-entropy), the others
    distil in place from its detached logits with AlphaNet's loss; with a ``teacher`` (a
    trained network, eval mode), every subnet distils from the teacher's logits instead, the
    max subnet on top of its cross-entropy. Returns the summed loss, the max subnet's logits
    (the top-1 the engine reports) and each pass's loss (``loss_max``, ``loss_min``,
    ``loss_random``)."""
    if teacher is not None:
        teacher.eval()

    def step(net, x, y, cfg):
        core = getattr(net, "module", net)
        seen: dict[str, torch.Tensor] = {}
        if teacher is not None:
            with torch.no_grad():
                seen["teacher"] = teacher(x)

        def pass_loss(model, kind, _subnet):
            core.set_dropout(dropout if kind == "max" else 0.0)
            logits = model(x)
            if kind == "max":
                seen["max"] = logits
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if teacher is not None:
                    loss = loss + adaptive_alpha_loss(logits, seen["teacher"])
                return loss
            return adaptive_alpha_loss(logits, seen.get("teacher", seen["max"]).detach())

        loss, parts = sandwich_loss(net, step_rng(), pass_loss, n_random, with_min)
        core.set_dropout(0.0)
        return loss, seen["max"], {f"loss_{k}": v for k, v in parts.items()}
    return step


def supernet_arch(space: SpaceChoice | str, phase: str, shortcut: str = "fixed") -> str:
    """The architecture name a supernet's checkpoints carry (another space, shortcut kind or
    phase is refused)."""
    if phase not in PHASES:
        raise ValueError(f"supernet phase must be one of {', '.join(PHASES)}; got {phase!r}")
    sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
    return f"supernet/{sp.encode()}/{shortcut}/{phase}"


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
                   device=None, with_min: bool = True,
                   teacher: torch.nn.Module | None = None) -> pd.DataFrame:
    """Train ``supernet`` (FP32, or its :func:`quantize_supernet` copy for ``lsq``) for
    ``cfg.epochs`` with :func:`supernet_step` (``n_random``, ``with_min``, ``teacher``),
    resuming from ``checkpoint``; returns the per-epoch metrics. A phase that does not match
    the network (LSQ+ training of an FP32 supernet, or the reverse) stops before any step."""
    quantized = any(isinstance(m, Quantizer) for m in supernet.modules())
    if phase == "lsq" and not quantized:
        raise ValueError("the LSQ+ stage trains the quantize_supernet() copy of a trained FP32 "
                         "supernet (load_supernet(space, fp32 checkpoint, 'fp32', "
                         "finished_epochs=N) first); this supernet has no quantizers")
    if phase == "fp32" and quantized:
        raise ValueError("an LSQ+ supernet trains in phase 'lsq', not 'fp32'")
    trainer = Trainer(supernet, cfg, loaders,
                      arch=supernet_arch(supernet.space, phase, supernet.shortcut),
                      step=supernet_step(n_random, dropout, with_min, teacher),
                      checkpoint=checkpoint,
                      evaluator=evaluator, progress=progress, device=device, ddp=False)
    return trainer.fit(stop_after).assign(phase=phase)


def load_supernet(space: SpaceChoice | str, checkpoint: Path, phase: str = "fp32",
                  n_classes: int | None = None, finished_epochs: int | None = None,
                  shortcut: str = "fixed") -> Supernet:
    """A trained supernet from its checkpoint (``weights_only``); the LSQ+ one is rebuilt by
    :func:`quantize_supernet` first. CheckpointError when the file is missing, of another
    space, shortcut kind or phase, or (``finished_epochs``) not trained that far."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"no {phase} supernet checkpoint {checkpoint}: train that stage "
                              "first (an INT8 stage starts from the finished FP32 weights)")
    state = load_checkpoint(checkpoint, supernet_arch(space, phase, shortcut))
    if finished_epochs is not None and state["epoch"] < finished_epochs:
        raise CheckpointError(f"supernet checkpoint {checkpoint} has {state['epoch']} of "
                              f"{finished_epochs} epochs: finish that stage first")
    net = Supernet(space, n_classes, shortcut=shortcut)
    if phase == "lsq":
        net = quantize_supernet(net)
    net.load_state_dict(state["model"])
    return net.eval()


def step_seconds(space: SpaceChoice | str, cfg, n_random: int = 2, with_min: bool = True,
                 teacher: torch.nn.Module | None = None, dropout: float = DROPOUT,
                 shortcut: str = "fixed", steps: int = 4, seed: int = 0) -> float:
    """Median seconds of one training step of a fresh supernet on this host (one random batch
    of ``cfg.batch_size`` at the largest resolution, ``cfg``'s memory layout, the step's
    passes and teacher), the first step left out (it warms oneDNN's kernels up)."""
    torch.manual_seed(seed)
    net = Supernet(space, shortcut=shortcut).train()
    r = max(net.hyperspace.resolutions)
    x = torch.randn(cfg.batch_size, 3, r, r)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, net.n_classes, (cfg.batch_size,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = supernet_step(n_random, dropout, with_min, teacher)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss, _, _ = step(net, x, y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ----------------------------------------------------------------------------- recipes

#: What a phase trains: the max subnet alone (a plain loop, OFA's first phase), the FP32
#: sandwich, or the LSQ+ sandwich of the quantized copy.
PHASE_KINDS = ("max", "sandwich", "lsq")


@dataclass(frozen=True)
class Phase:
    """One stage of a supernet's training recipe: its kind, its run's settings, the random
    subnets per sandwich and whether every subnet distils from the teacher (else in place,
    from the max subnet)."""

    kind: str
    cfg: TrainConfig
    n_random: int = 2
    teacher: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PHASE_KINDS:
            raise ValueError(f"phase kind must be one of {', '.join(PHASE_KINDS)}; "
                             f"got {self.kind!r}")

    @property
    def precision(self) -> str:
        return "lsq" if self.kind == "lsq" else "fp32"

    def key(self, previous: str) -> str:
        """A digest of everything this phase's result depends on: its own settings and the
        key of what it starts from (the start, or the previous phase). The memory layout is
        left out: it changes speed, not what is learned, so a run stopped in channels-last
        may go on in NCHW from its checkpoint."""
        cfg = {k: v for k, v in self.cfg.as_dict().items() if k != "channels_last"}
        return stable_hash({"kind": self.kind, "cfg": cfg, "n_random": self.n_random,
                            "teacher": self.teacher, "from": previous})[:12]


def start_key(space: SpaceChoice | str, **settings) -> str:
    """The key of a supernet's start (space, shortcut kind, initialisation, seed, ...): the
    first phase's checkpoint chains on it, so another start trains anew."""
    sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
    return stable_hash({"space": sp.encode(), **settings})[:12]


def phase_checkpoints(folder: Path, label: str, phases, start: str) -> list[Path]:
    """Where each phase of a recipe keeps its checkpoint: ``<label>-<i>-<kind>-<key>.pt``,
    the key chained over the phases, so that a rerun with one changed setting trains that
    phase and every later one anew and reuses the ones before it."""
    out, key = [], start
    for i, ph in enumerate(phases):
        key = ph.key(key)
        out.append(Path(folder) / f"{label}-{i}-{ph.kind}-{key}.pt")
    return out


def train_recipe(supernet: Supernet, phases, checkpoints, loaders_for, evaluator=None,
                 teacher: torch.nn.Module | None = None, quant_images: torch.Tensor | None = None,
                 dropout: float = DROPOUT, progress: bool = False
                 ) -> tuple[Supernet, Supernet | None, pd.DataFrame]:
    """Train ``supernet`` phase by phase (each resuming from its own checkpoint); the first
    ``lsq`` phase trains the :func:`quantize_supernet` copy of the FP32 weights, its
    quantizers initialised min-max on ``quant_images``. ``loaders_for(phase)`` gives a phase's
    train/valid loaders. Returns (FP32 supernet, LSQ+ supernet or None, the per-epoch metrics
    of every phase with columns ``phase`` (its precision), ``stage`` (its kind) and ``step``
    (its index))."""
    fp32, q, frames = supernet, None, []
    for i, (ph, path) in enumerate(zip(phases, checkpoints)):
        if ph.teacher and teacher is None:
            raise ValueError(f"phase {i} ({ph.kind}) distils from a teacher; none was given")
        if ph.teacher and ph.cfg.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)  # (the batches' layout)
        if ph.kind == "lsq" and q is None:
            q = quantize_supernet(fp32, quant_images, ph.cfg.seed)
        net = q if ph.kind == "lsq" else fp32
        if ph.kind != "lsq" and q is not None:
            raise ValueError("an FP32 phase cannot follow the LSQ+ phase")
        h = train_supernet(net, ph.cfg, loaders_for(ph), path, ph.precision,
                           0 if ph.kind == "max" else ph.n_random,
                           dropout, evaluator=evaluator, progress=progress,
                           with_min=ph.kind != "max",
                           teacher=teacher if ph.teacher else None)
        frames.append(h.assign(stage=ph.kind, step=i))
    history = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return fp32.eval(), None if q is None else q.eval(), history
