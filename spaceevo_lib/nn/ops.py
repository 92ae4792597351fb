"""Single operators as tiny networks, so each can be exported and timed on its own.

The latency chapter measures these (the paper's Figure 2, left) next to whole blocks and
models. Convolutions include BN + activation, as every runtime fuses them (and as nn-Meter's
kernels do); activations, SE, add, pooling and FC are measured alone.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .blocks import ConvBNAct, SqueezeExcite, act_layer, make_divisible


class Add(nn.Module):
    """A residual add of two different tensors (the input and its negation-free scaling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * 0.5


class FullyConnected(nn.Module):
    """Flatten a (B, C, 1, 1) feature and apply a Linear layer, as a classifier head does."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 1, 1) -> (B, cout)
        return self.fc(torch.flatten(x, 1))


# name -> (builder(c), whether the input is a (1, C, 1, 1) vector rather than a feature map)
OPERATORS: dict[str, tuple[Callable[[int], nn.Module], bool]] = {
    "conv3x3": (lambda c: ConvBNAct(c, c, 3, 1, "relu"), False),
    "conv1x1": (lambda c: ConvBNAct(c, c, 1, 1, "relu"), False),
    "dwconv3x3": (lambda c: ConvBNAct(c, c, 3, 1, "relu", groups=c), False),
    "dwconv5x5": (lambda c: ConvBNAct(c, c, 5, 1, "relu", groups=c), False),
    "dwconv7x7": (lambda c: ConvBNAct(c, c, 7, 1, "relu", groups=c), False),
    "relu": (lambda c: act_layer("relu"), False),
    "relu6": (lambda c: act_layer("relu6"), False),
    "hardswish": (lambda c: act_layer("hswish"), False),
    "swish": (lambda c: act_layer("swish"), False),
    "se": (lambda c: SqueezeExcite(c, make_divisible(c // 4)), False),
    "add": (lambda c: Add(), False),
    "gap": (lambda c: nn.AdaptiveAvgPool2d(1), False),
    "fc": (lambda c: FullyConnected(c, 1000), True),
}


def create_operator(name: str, channels: int) -> nn.Module:
    try:
        builder, _ = OPERATORS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; known: {sorted(OPERATORS)}") from None
    if channels < 1:
        raise ValueError(f"operator {name}: channels must be >= 1; got {channels}")
    return builder(channels)


def operator_input_shape(name: str, channels: int, hw: int) -> tuple[int, int, int, int]:
    """NCHW input of an operator: a (1, C, hw, hw) feature map, or (1, C, 1, 1) for FC."""
    if hw < 1:
        raise ValueError(f"operator {name}: hw must be >= 1; got {hw}")
    return (1, channels, 1, 1) if OPERATORS[name][1] else (1, channels, hw, hw)


def list_operators() -> list[str]:
    return list(OPERATORS)
