"""Batch-norm statistics from data: what a random or weight-shared network needs before use.

A randomly initialised network has running statistics of (0, 1), so its activations drift in
scale layer after layer (a random torchvision MobileNetV3 ends with logits near 1e-10), which
makes INT8 calibration and any output comparison meaningless. Re-estimating the statistics on
real inputs fixes that; the supernet chapters use the same step per subnet (paper-notes §7.2).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(module: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running mean/var to the exact average over ``batches``.

    The module is left in eval mode; its weights are not changed.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return module.eval()
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over all batches
    module.train()
    for x in batches:
        module(x)
    module.eval()
    for m, (momentum, _) in zip(bns, saved):
        m.momentum = momentum
    return module
