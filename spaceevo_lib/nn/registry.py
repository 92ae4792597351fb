"""The one description of every block code, and who builds what from it.

Each block code of the hyperspaces (``configs/hyperspaces.yaml``, paper-notes §2.4) and the two
fixed blocks (``FirstConv``, the mobilew ``MBv2`` of stage0) is a :class:`BlockType`: its
family (the layer pattern) and the switches that tell family members apart (squeeze-excite,
stacked 3x3 depthwise convs, forced residual, default activation). Everything that needs a
block resolves it here, once:

========== =========================================== ==========================================
role       built by                                    from
========== =========================================== ==========================================
static     :meth:`BlockType.static`                    ``spaceevo_lib.nn.blocks`` (one function
                                                       per family)
elastic    :meth:`BlockType.elastic`                   ``spaceevo_lib.supernet.elastic`` (one
                                                       class per family)
cost       :meth:`BlockType.cost`                      ``spaceevo_lib.predictor.units`` (the
                                                       latency predictor's analytic features)
keras      ``export.keras.to_keras(static module)``    the static module, traced (no per-code
                                                       code)
quantized  ``quant.quantize_model(static module)``     the static module traced, LSQ+ quantizers
                                                       placed by op type (no per-code code)
========== =========================================== ==========================================

The implementations are named by import path and imported on first use, so this module
imports nothing heavy and none of the implementing modules import each other for dispatch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..space.hyperspace import make_divisible

#: Stacked plain 3x3 depthwise convolutions of a K3 block per kernel size (paper-notes §2.4).
K3_STACK = {3: 1, 5: 2, 7: 3}

#: Per family, the implementation of each role as ``"module:attribute"``.
FAMILIES: dict[str, dict[str, str]] = {
    "stem": {"static": "spaceevo_lib.nn.blocks:conv_bn_act_block",
             "elastic": "spaceevo_lib.supernet.elastic:ElasticConvBNActBlock",
             "cost": "spaceevo_lib.predictor.units:stem_cost"},
    "mb": {"static": "spaceevo_lib.nn.blocks:mb_block",
           "elastic": "spaceevo_lib.supernet.elastic:ElasticMB",
           "cost": "spaceevo_lib.predictor.units:mb_cost"},
    "mbv1dual": {"static": "spaceevo_lib.nn.blocks:mbv1_dual_block",
                 "elastic": "spaceevo_lib.supernet.elastic:ElasticMBv1Dual",
                 "cost": "spaceevo_lib.predictor.units:mbv1_dual_cost"},
    "resnet": {"static": "spaceevo_lib.nn.blocks:resnet_block",
               "elastic": "spaceevo_lib.supernet.elastic:ElasticResNet",
               "cost": "spaceevo_lib.predictor.units:resnet_cost"},
    "fused": {"static": "spaceevo_lib.nn.blocks:fused_block",
              "elastic": "spaceevo_lib.supernet.elastic:ElasticFused",
              "cost": "spaceevo_lib.predictor.units:fused_cost"},
}

_RESOLVED: dict[str, Callable[..., Any]] = {}


def _resolve(path: str) -> Callable[..., Any]:
    if path not in _RESOLVED:
        module, attr = path.split(":")
        _RESOLVED[path] = getattr(importlib.import_module(module), attr)
    return _RESOLVED[path]


@dataclass(frozen=True)
class BlockType:
    """One block code. ``hidden_from``: the width the expand ratio multiplies (``cin`` for MB and
    fused blocks, ``cout`` for ResNet bottlenecks); ``se_from``: the width the SE mid is a
    quarter of (``hidden`` for MB blocks, ``cin`` for ResNetSE and fused SE, RegNet style);
    ``forced_residual``: a 1x1 conv shortcut when the shape changes (False: the plain MBv2 adds
    the input only when the shape is kept); ``fixed``: a fixed part of every subnet (stem,
    mobilew stage0), not a candidate of the hyperspaces."""

    code: str
    family: str
    act: str
    summary: str
    se: bool = False
    k3: bool = False
    forced_residual: bool = True
    hidden_from: str = "cin"
    se_from: str = "hidden"
    fixed: bool = False

    def _impl(self, role: str) -> Callable[..., Any]:
        return _resolve(FAMILIES[self.family][role])

    def static(self, cin: int, cout: int, k: int, stride: int, e: float | None = None,
               act: str | None = None, fixed_shortcut: bool = False):
        """The static PyTorch block (``nn.Module``); ``act`` overrides the default;
        ``fixed_shortcut``: a stride-1 width change is added through the parameter-free
        channel projection (``nn.blocks.channel_projection``), not a learned 1x1 conv + BN."""
        if min(cin, cout, k, stride) < 1:
            raise ValueError(f"block {self.code}: cin, cout, k, stride must be >= 1; "
                             f"got {cin}, {cout}, {k}, {stride}")
        return self._impl("static")(self, cin, cout, k, stride, 1.0 if e is None else e,
                                    self.act if act is None else act,
                                    fixed_shortcut=fixed_shortcut)

    def elastic(self, spec, cins, widths, stride: int, fixed_shortcut: bool = False):
        """The weight-sharing block of the supernet for a hyperspace ``BlockSpec``
        (``fixed_shortcut``: as for :meth:`static`, for a block inside a stage)."""
        return self._impl("elastic")(self, spec, cins, widths, stride,
                                     fixed_shortcut=fixed_shortcut)

    def cost(self, acc, unit) -> int:
        """Add the unit's layers to the predictor's cost accumulator; returns the widest
        inner tensor's channel count (the shortcut and add are the caller's)."""
        return self._impl("cost")(self, acc, unit)

    def hidden(self, cin: int, cout: int, e: float | None) -> int:
        """The block's hidden width (the reference's make_divisible rounding)."""
        if self.family == "mbv1dual":
            return max(cin, cout)
        if self.family == "stem":
            return cout
        return make_divisible((1.0 if e is None else e) * (cin if self.hidden_from == "cin"
                                                           else cout))

    def se_mid(self, cin: int, hidden: int) -> int:
        return make_divisible((hidden if self.se_from == "hidden" else cin) // 4)


BLOCK_TYPES: dict[str, BlockType] = {b.code: b for b in (
    BlockType("FirstConv", "stem", "relu", "k x k conv (stride) + BN + act", fixed=True),
    BlockType("MBv2", "mb", "relu", "PW expand -> DW k -> PW linear; identity residual only "
              "when the shape is kept (mobilew stage0)", forced_residual=False, fixed=True),
    BlockType("MBv1Dual", "mbv1dual", "relu",
              "DW k (stride) -> PW cin->cout -> DW k -> PW cout->cout; forced residual"),
    BlockType("MBv2Res", "mb", "relu6", "inverted residual: PW expand -> DW k -> PW project"),
    BlockType("MBv3Res", "mb", "hswish", "MBv2Res with SE after the depthwise conv", se=True),
    BlockType("MBv2K3Res", "mb", "relu6", "MBv2Res with 1-3 stacked 3x3 depthwise convs",
              k3=True),
    BlockType("MBv3K3Res", "mb", "swish", "MBv3Res with 1-3 stacked 3x3 depthwise convs",
              se=True, k3=True),
    BlockType("ResNet", "resnet", "relu", "bottleneck 1x1 -> k x k (stride) -> 1x1, hidden = "
              "e * cout; add; act", hidden_from="cout"),
    BlockType("ResNetSE", "resnet", "relu", "bottleneck with SE (mid cin // 4) after the "
              "k x k conv", se=True, hidden_from="cout", se_from="cin"),
    BlockType("FusedMBRes", "fused", "swish", "Fused-MBConv: k x k conv cin -> hidden "
              "(stride) -> 1x1 project"),
    BlockType("FusedMBSERes", "fused", "swish", "Fused-MBConv with SE (mid cin // 4)", se=True,
              se_from="cin"),
)}


def block_type(code: str) -> BlockType:
    """The :class:`BlockType` of a code; KeyError lists the known ones."""
    try:
        return BLOCK_TYPES[code]
    except KeyError:
        raise KeyError(f"unknown block {code!r}; known: {', '.join(sorted(BLOCK_TYPES))}"
                       ) from None


def candidate_codes() -> list[str]:
    """The candidate block codes of the hyperspaces (the fixed stem and stage0 excluded)."""
    return sorted(c for c, b in BLOCK_TYPES.items() if not b.fixed)
