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
def recalibrate_bn(model: nn.Module, inputs: Iterable, batches: int | None = None) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as the exact average
    (cumulative, momentum None) over the first ``batches`` items of ``inputs`` (all if None;
    none if <= 0). Items are input tensors or ``(input, label)`` pairs, so a data loader works
    as it is. Only the BN layers run in training mode; every other module runs in eval mode
    (dropout, stochastic depth and LSQ+ quantizers as at inference: AttentiveNAS / AlphaNet,
    training-notes §5). The model is left in eval mode; its weights are not changed."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not bns or (batches is not None and batches <= 0):
        return model
    saved = [m.momentum for m in bns]
    for m in bns:  # BNs are leaves: set the flag, no recursive .train()
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over all batches
        m.training = True
    for i, item in enumerate(inputs):
        if batches is not None and i >= batches:
            break
        model(item[0] if isinstance(item, (tuple, list)) else item)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
        m.training = False
    return model
