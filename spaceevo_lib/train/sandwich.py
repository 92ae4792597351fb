"""The sandwich rule (BigNAS / AttentiveNAS; paper-notes §3.4, §7.1): per batch, the largest,
the smallest and ``n_random`` random settings of an elastic model each take one pass, and
their losses are summed into one optimiser step (the same gradient as accumulating them).

One sampler for every elastic model of the study: a model that offers ``sample_max()``,
``sample_min()`` and ``sample_random(rng)`` (each activating a setting and returning it) is
trained by :func:`sandwich_loss`, whether it is an elastic stage student (block-wise
distillation) or a whole supernet.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from .engine import NonFiniteLoss

#: The passes of one batch, in order: the largest setting first (AlphaNet: it is the one
#: the others may distil from), then the smallest, then random ones.
KINDS = ("max", "min", "random")


class Elastic(Protocol):
    def sample_max(self): ...
    def sample_min(self): ...
    def sample_random(self, rng: np.random.Generator): ...


def step_rng() -> np.random.Generator:
    """The generator one training step samples its settings from, seeded from torch's global
    stream: the trainer checkpoints that stream (so a resumed run samples what an uninterrupted
    one samples), and processes of one torchrun job draw the same values from it (so every
    rank trains the same settings)."""
    return np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,))))


def sandwich_settings(model: Elastic, rng: np.random.Generator, n_random: int = 2,
                      with_min: bool = True):
    """Activate max, min (unless ``with_min`` is False) and ``n_random`` random settings in
    turn, yielding (kind, setting) while each is active. With neither min nor random
    settings only the largest trains: a plain loop on the max setting (OFA's first phase)."""
    yield "max", model.sample_max()
    if with_min:
        yield "min", model.sample_min()
    for _ in range(n_random):
        yield "random", model.sample_random(rng)


def sandwich_loss(net: nn.Module, rng: np.random.Generator,
                  pass_loss: Callable[[nn.Module, str, object], torch.Tensor],
                  n_random: int = 2, with_min: bool = True
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of ``pass_loss(net, kind, setting)`` over the sandwich's passes, and each pass's
    loss (``max``, ``min``, ``random`` = their mean) for the metrics. ``net`` may be the
    DistributedDataParallel wrapper: the settings are activated on the wrapped module."""
    core = getattr(net, "module", net)
    total, parts, n_rand = None, {}, 0
    for kind, setting in sandwich_settings(core, rng, n_random, with_min):
        loss = pass_loss(net, kind, setting)
        total = loss if total is None else total + loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLoss(f"the sandwich's {kind} subnet gave a loss of {value}: "
                                f"{setting}")
        if kind == "random":
            parts["random"] = parts.get("random", 0.0) + value
            n_rand += 1
        else:
            parts[kind] = value
    if n_rand:
        parts["random"] /= n_rand
    return total, parts
