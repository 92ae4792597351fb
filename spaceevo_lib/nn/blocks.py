"""Static PyTorch blocks of the SpaceEvo hyperspaces (paper-notes §2.4), by block code.

Every block is built from conv + BN (+ activation) layers and plain tensor ops only, so that
``spaceevo_lib.export`` can mirror it to ONNX and Keras/TFLite unchanged. The elastic
(weight-sharing) blocks of the supernet extract into these same classes.

Block codes match ``configs/hyperspaces.yaml``: ``MBv1Dual``, ``MBv2Res``, ``MBv3Res``,
``ResNet``, ``ResNetSE``, ``FusedMBRes``, ``FusedMBSERes``, ``MBv3K3Res``, ``MBv2K3Res``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..space.hyperspace import make_divisible  # noqa: F401  (re-exported: nn.make_divisible)

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


def shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """The "forced residual": identity when shapes match, else 1x1 conv (stride) + BN."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    """``post_act(body(x) + shortcut(x))``: the add every hyperspace block ends with."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, post_act: str = "none"):
        super().__init__()
        self.body = body
        self.shortcut = shortcut(cin, cout, stride)
        self.post_act = act_layer(post_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_act(self.body(x) + self.shortcut(x))


def _depthwise(channels: int, k: int, stride: int, act: str, stacked_k3: bool) -> nn.Sequential:
    """k x k depthwise conv + BN + act; ``stacked_k3``: 1-3 plain 3x3 depthwise convs instead
    (k = 3, 5, 7), the first carrying the stride, one BN + act after the stack (K3 blocks)."""
    if not stacked_k3:
        return ConvBNAct(channels, channels, k, stride, act, groups=channels)
    n = {3: 1, 5: 2, 7: 3}[k]
    convs = [nn.Conv2d(channels, channels, 3, stride if i == 0 else 1, 1, groups=channels,
                       bias=False) for i in range(n)]
    return nn.Sequential(*convs, nn.BatchNorm2d(channels), act_layer(act))


def mbv1_dual(cin, cout, k, stride, e=None, act="relu"):
    """DW k (stride) -> PW cin->cout -> DW k -> PW cout->cout, each BN + act; forced residual."""
    body = nn.Sequential(ConvBNAct(cin, cin, k, stride, act, groups=cin),
                         ConvBNAct(cin, cout, 1, 1, act),
                         ConvBNAct(cout, cout, k, 1, act, groups=cout),
                         ConvBNAct(cout, cout, 1, 1, act))
    return Residual(body, cin, cout, stride)


def _mb(cin, cout, k, stride, e, act, se: bool, stacked_k3: bool):
    hidden = make_divisible(e * cin)
    layers = [] if hidden == cin else [ConvBNAct(cin, hidden, 1, 1, act)]
    layers.append(_depthwise(hidden, k, stride, act, stacked_k3))
    if se:
        layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    return Residual(nn.Sequential(*layers), cin, cout, stride)


def mbv2_res(cin, cout, k, stride, e, act="relu6"):
    """Inverted residual: PW expand (skipped if e*cin == cin) -> DW -> PW project; residual."""
    return _mb(cin, cout, k, stride, e, act, se=False, stacked_k3=False)


def mbv3_res(cin, cout, k, stride, e, act="hswish"):
    """MBv2Res with SE after the depthwise conv (act: hswish on onnxw, swish on mobilew)."""
    return _mb(cin, cout, k, stride, e, act, se=True, stacked_k3=False)


def mbv3_k3_res(cin, cout, k, stride, e, act="swish"):
    return _mb(cin, cout, k, stride, e, act, se=True, stacked_k3=True)


def mbv2_k3_res(cin, cout, k, stride, e, act="relu6"):
    return _mb(cin, cout, k, stride, e, act, se=False, stacked_k3=True)


def _resnet(cin, cout, k, stride, e, act, se: bool):
    hidden = make_divisible(e * cout)
    layers = [ConvBNAct(cin, hidden, 1, 1, act), ConvBNAct(hidden, hidden, k, stride, act)]
    if se:
        layers.append(SqueezeExcite(hidden, make_divisible(cin // 4)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    return Residual(nn.Sequential(*layers), cin, cout, stride, post_act=act)


def resnet(cin, cout, k, stride, e, act="relu"):
    """Bottleneck 1x1 -> k x k (stride) -> 1x1 with hidden = e * cout; add; ReLU."""
    return _resnet(cin, cout, k, stride, e, act, se=False)


def resnet_se(cin, cout, k, stride, e, act="relu"):
    """Bottleneck with SE (mid = cin // 4, RegNet style) after the k x k conv."""
    return _resnet(cin, cout, k, stride, e, act, se=True)


def _fused(cin, cout, k, stride, e, act, se: bool):
    hidden = make_divisible(e * cin)
    layers = [ConvBNAct(cin, hidden, k, stride, act)]
    if se:
        layers.append(SqueezeExcite(hidden, make_divisible(cin // 4)))
    layers.append(ConvBNAct(hidden, cout, 1, 1, "none"))
    return Residual(nn.Sequential(*layers), cin, cout, stride)


def fused_mb_res(cin, cout, k, stride, e, act="swish"):
    """Fused-MBConv: k x k conv cin->hidden (stride) -> 1x1 project; forced residual."""
    return _fused(cin, cout, k, stride, e, act, se=False)


def fused_mb_se_res(cin, cout, k, stride, e, act="swish"):
    return _fused(cin, cout, k, stride, e, act, se=True)


BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "MBv1Dual": mbv1_dual, "MBv2Res": mbv2_res, "MBv3Res": mbv3_res, "ResNet": resnet,
    "ResNetSE": resnet_se, "FusedMBRes": fused_mb_res, "FusedMBSERes": fused_mb_se_res,
    "MBv3K3Res": mbv3_k3_res, "MBv2K3Res": mbv2_k3_res,
}


def create_block(code: str, cin: int, cout: int, k: int, stride: int, e: float | None = None,
                 act: str | None = None) -> nn.Module:
    """A static block by code; ``act`` overrides the block's default activation."""
    try:
        fn = BLOCKS[code]
    except KeyError:
        raise KeyError(f"unknown block {code!r}; known: {sorted(BLOCKS)}") from None
    if min(cin, cout, k, stride) < 1:
        raise ValueError(f"block {code}: cin, cout, k, stride must be >= 1; "
                         f"got {cin}, {cout}, {k}, {stride}")
    kwargs = {} if act is None else {"act": act}
    return fn(cin, cout, k, stride, e if e is not None else 1.0, **kwargs)


def list_blocks() -> list[str]:
    return sorted(BLOCKS)
