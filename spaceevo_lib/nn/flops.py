"""MACs ("FLOPs") and parameter counts of PyTorch networks, in the paper's convention.

Two conventions (paper-notes §9.3):

* **paper** (``mflops_paper``): multiply-accumulates of ``nn.Conv2d`` layers only, SE convs
  included, no bias/BN/activation/pooling/add costs. The reference ``flops_counter.py`` hooks
  conv layers by exact type and never the final ``QLinear``, so its "MFLOPs" (Table 1's FLOPs
  column) exclude the classifier (1.92 M MACs for 1920 -> 1000).
* **all** (``mflops_all``): the same plus ``nn.Linear`` layers (``in * out`` per output row).

Counts are per image: an input batch of N counts once, not N times. Parameters count every
``nn.Parameter`` (conv/linear weights and biases, BN gamma/beta); BN running statistics are
buffers and are not counted. The reference's parameter figure also has 3 LSQ+ scalars per
quantized op, which a plain FP32 network does not have.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _per_image_rows(t: torch.Tensor) -> int:
    """Rows of a Linear output for one image: product of the dims between batch and features."""
    return math.prod(t.shape[1:-1]) if t.dim() > 2 else 1


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: Sequence[int],
               include_classifier: bool = True) -> int:
    """Multiply-accumulates of one forward pass, per image (paper-notes §9.3).

    Conv2d: ``out_h * out_w * cout * (cin / groups) * kh * kw``; Linear (only if
    ``include_classifier``): ``in * out``. ``input_shape`` is ``(N, C, H, W)`` (or ``(C, H, W)``);
    the module runs once on zeros in eval mode, and its train/eval flags are restored after.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) or (C, H, W); got {input_shape}")
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        _, cout, oh, ow = out.shape  # (B, C, H, W); per image: no batch factor
        total[0] += oh * ow * cout * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        total[0] += _per_image_rows(out) * m.in_features * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear) and include_classifier:
            handles.append(m.register_forward_hook(linear_hook))
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        module(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return total[0]


def count_params(module: nn.Module) -> int:
    """Number of parameters (weights, biases, BN affine); buffers are not counted."""
    return sum(p.numel() for p in module.parameters())


def profile(module: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """``mflops_paper`` (conv MACs, no classifier: Table 1's FLOPs), ``mflops_all`` (with the
    Linear layers) and ``mparams``, all in millions (paper-notes §9.3)."""
    return {
        "mflops_paper": count_macs(module, input_shape, include_classifier=False) / 1e6,
        "mflops_all": count_macs(module, input_shape, include_classifier=True) / 1e6,
        "mparams": count_params(module) / 1e6,
    }
