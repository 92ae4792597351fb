"""Static PyTorch blocks of the SpaceEvo hyperspaces (paper-notes §2.4), one builder per family
of the block registry (:mod:`spaceevo_lib.nn.registry`, which maps each code to its family).

Every block is built from conv + BN (+ activation) layers and plain tensor ops only, so that
``spaceevo_lib.export`` can mirror it to ONNX and Keras/TFLite unchanged. The elastic
(weight-sharing) blocks of the supernet extract into these same classes.

Block codes match ``configs/hyperspaces.yaml``: ``MBv1Dual``, ``MBv2Res``, ``MBv3Res``,
``ResNet``, ``ResNetSE``, ``FusedMBRes``, ``FusedMBSERes``, ``MBv3K3Res``, ``MBv2K3Res``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from ..space.hyperspace import make_divisible  # noqa: F401  (re-exported: nn.make_divisible)
from .registry import K3_STACK, BlockType, block_type, candidate_codes

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=False),
    "relu6": lambda: nn.ReLU6(inplace=False),
    "hswish": lambda: nn.Hardswish(inplace=False),
    "swish": lambda: nn.SiLU(inplace=False),
    "none": nn.Identity,
}


def act_layer(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise KeyError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


class ConvBNAct(nn.Sequential):
    """k x k convolution (symmetric padding k//2), batch norm, activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: str = "relu",
                 groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act_layer(act))


class SqueezeExcite(nn.Module):
    """SE as in the reference ``QSE``: GAP, 1x1 (bias) -> ReLU -> 1x1 (bias) -> HardSigmoid."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))  # (B, C, 1, 1)
        return x * s


def channel_projection(cin: int, cout: int) -> nn.Sequential:
    """A 1x1 conv (no bias) whose weight keeps the first ``cout`` input channels or appends
    zero channels: the parameter-free width change of a supernet's stride-1 block, written as
    the runtimes' op (the paper's shortcut conv with BN folded is the same graph, so latency
    predictors and exporters see the paper's block)."""
    conv = nn.Conv2d(cin, cout, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        idx = torch.arange(min(cin, cout))
        conv.weight[idx, idx] = 1.0
    return nn.Sequential(conv)


def shortcut(cin: int, cout: int, stride: int, fixed: bool = False) -> nn.Module:
    """The "forced residual": identity when shapes match, else 1x1 conv (stride) + BN;
    ``fixed`` (stride 1 only): :func:`channel_projection` instead of a learned conv + BN."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    if fixed:
        if stride != 1:
            raise ValueError(f"a fixed channel shortcut keeps the resolution; got stride {stride}")
        return channel_projection(cin, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    """``post_act(body(x) + shortcut(x))``: the add every hyperspace block ends with."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, post_act: str = "none",
                 fixed_shortcut: bool = False):
        super().__init__()
        self.body = body
        self.shortcut = shortcut(cin, cout, stride, fixed_shortcut)
        self.post_act = act_layer(post_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_act(self.body(x) + self.shortcut(x))


def _depthwise(channels: int, k: int, stride: int, act: str, stacked_k3: bool) -> nn.Sequential:
    """k x k depthwise conv + BN + act; ``stacked_k3``: 1-3 plain 3x3 depthwise convs instead
    (k = 3, 5, 7), the first carrying the stride, one BN + act after the stack (K3 blocks)."""
    if not stacked_k3:
        return ConvBNAct(channels, channels, k, stride, act, groups=channels)
    convs = [nn.Conv2d(channels, channels, 3, stride if i == 0 else 1, 1, groups=channels,
                       bias=False) for i in range(K3_STACK[k])]
    return nn.Sequential(*convs, nn.BatchNorm2d(channels), act_layer(act))


# One builder per family of the block registry (``spaceevo_lib.nn.registry``): ``bt`` is the
# code's BlockType (its switches: se, k3, forced_residual, hidden_from, se_from).

def conv_bn_act_block(bt: BlockType, cin, cout, k, stride, e, act,
                      fixed_shortcut: bool = False) -> nn.Module:
    """The stem: k x k conv (stride) + BN + act."""
    return ConvBNAct(cin, cout, k, stride, act)


def mbv1_dual_block(bt: BlockType, cin, cout, k, stride, e, act,
                    fixed_shortcut: bool = False) -> nn.Module:
    """DW k (stride) -> PW cin->cout -> DW k -> PW cout->cout, each BN + act; forced residual."""
    body = nn.Sequential(ConvBNAct(cin, cin, k, stride, act, groups=cin),
                         ConvBNAct(cin, cout, 1, 1, act),
                         ConvBNAct(cout, cout, k, 1, act, groups=cout),
                         ConvBNAct(cout, cout, 1, 1, act))
    return Residual(body, cin, cout, stride, fixed_shortcut=fixed_shortcut)


def mb_block(bt: BlockType, cin, cout, k, stride, e, act,
             fixed_shortcut: bool = False) -> nn.Module:
    """Inverted residual: PW expand to make_divisible(e*cin) (skipped when equal to cin) ->
    DW k (or the K3 stack) [-> SE, mid make_divisible(hidden // 4)] -> PW linear project.
    Forced residual, except the plain MBv2, which adds the input only when the shape is kept
    (and is then the bare body otherwise)."""
    hidden = bt.hidden(cin, cout, e)
    layers = [] if hidden == cin else [ConvBNAct(cin, hidden, 1, 1, act)]
    layers.append(_depthwise(hidden, k, stride, act, bt.k3))
    if bt.se:
        layers.append(SqueezeExcite(hidden, bt.se_mid(cin, hidden)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    body = nn.Sequential(*layers)
    if not bt.forced_residual and not (stride == 1 and cin == cout):
        return body
    return Residual(body, cin, cout, stride, fixed_shortcut=fixed_shortcut)


def resnet_block(bt: BlockType, cin, cout, k, stride, e, act,
                 fixed_shortcut: bool = False) -> nn.Module:
    """Bottleneck 1x1 -> k x k (stride) [-> SE, mid make_divisible(cin // 4)] -> 1x1 with
    hidden = make_divisible(e * cout); add; activation."""
    hidden = bt.hidden(cin, cout, e)
    layers = [ConvBNAct(cin, hidden, 1, 1, act), ConvBNAct(hidden, hidden, k, stride, act)]
    if bt.se:
        layers.append(SqueezeExcite(hidden, bt.se_mid(cin, hidden)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    return Residual(nn.Sequential(*layers), cin, cout, stride, post_act=act,
                    fixed_shortcut=fixed_shortcut)


def fused_block(bt: BlockType, cin, cout, k, stride, e, act,
                fixed_shortcut: bool = False) -> nn.Module:
    """Fused-MBConv: k x k conv cin -> make_divisible(e*cin) (stride) [-> SE, mid
    make_divisible(cin // 4)] -> 1x1 project; forced residual."""
    hidden = bt.hidden(cin, cout, e)
    layers = [ConvBNAct(cin, hidden, k, stride, act)]
    if bt.se:
        layers.append(SqueezeExcite(hidden, bt.se_mid(cin, hidden)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    return Residual(nn.Sequential(*layers), cin, cout, stride, fixed_shortcut=fixed_shortcut)


def create_block(code: str, cin: int, cout: int, k: int, stride: int, e: float | None = None,
                 act: str | None = None) -> nn.Module:
    """A static block by code (candidate or fixed); ``act`` overrides the block's default
    activation. The registry's :meth:`~spaceevo_lib.nn.registry.BlockType.static`."""
    return block_type(code).static(cin, cout, k, stride, e, act)


def list_blocks() -> list[str]:
    """The candidate block codes of the hyperspaces."""
    return candidate_codes()


def head_parts(cin: int, expand_width: int, expand_act: str, mix_width: int, mix_act: str,
               n_classes: int, dropout: float = 0.0) -> "OrderedDict[str, nn.Module]":
    """The head: ``final_expand`` (1x1 + BN + act), ``feature_mix`` (GAP, then 1x1 + BN + act;
    ``mix_width`` 0: GAP only, torchvision's MobileNetV2 head), ``logits`` (flatten, dropout,
    Linear with bias)."""
    final_expand = ConvBNAct(cin, expand_width, 1, 1, expand_act)  # built first: init order
    mix = OrderedDict(pool=nn.AdaptiveAvgPool2d(1))  # (B, C, 1, 1)
    if mix_width:
        mix["conv"] = ConvBNAct(expand_width, mix_width, 1, 1, mix_act)
    return OrderedDict(
        final_expand=final_expand,
        feature_mix=nn.Sequential(mix),
        logits=nn.Sequential(OrderedDict(
            flatten=nn.Flatten(1),  # (B, C)
            dropout=nn.Dropout(dropout),
            linear=nn.Linear(mix_width or expand_width, n_classes))),
    )
