"""Subnets as sums of *units*: the blocks the runtimes execute as one piece, and their costs.

The latency predictor works at block level (the chapter measures why: every runtime fuses
conv + BN + activation, and the INT8 runtimes keep a block's inside in integer arithmetic, so a
block is the smallest piece whose isolated latency adds up). A subnet of a candidate space is
``first_conv``, the blocks of ``stage0`` .. ``stage6`` and the head; each becomes one
:class:`Unit` row: block code, activation, input/output widths, kernel, expand ratio, stride
and input side. The same rows build the PyTorch module that is measured
(:func:`build_unit`) and give the analytic features the regressors use (:func:`unit_features`:
MACs, parameters, tensor sizes), counted exactly as :mod:`spaceevo_lib.nn.flops` counts the
built module (a test checks it block type by block type).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from torch import nn

from ..latency.jobs import job_builder
from ..nn.blocks import head_parts
from ..nn.models import create_model
from ..nn.registry import K3_STACK, block_type
from ..space.encoding import SpaceChoice, Subnet, as_space, stage_options
from ..space.hyperspace import as_hyperspace

HEAD = "Head"
#: Numeric features of a unit, in the order of :func:`unit_features`' columns.
FEATURES = ("cin", "cout", "hw", "k", "e", "stride", "cin_mod16", "cout_mod16",
            "hidden_mod16", "macs", "params", "in_elems",
            "out_elems", "hidden_elems", "macs_conv", "macs_pw", "macs_dw", "macs_fc",
            "out_conv", "out_pw", "out_dw", "act_relu", "act_hswish", "act_swish", "se_elems",
            "se_count", "add_elems", "pool_elems", "n_kernels", "dw7_count", "macs_dw7")


class Unit(NamedTuple):
    """One block as it sits in a subnet. ``e`` is 0.0 where the block has no expand ratio;
    ``fe``/``fm`` are the head's final-expand and feature-mix widths (0 elsewhere)."""

    code: str
    act: str
    cin: int
    cout: int
    k: int
    e: float
    stride: int
    hw: int
    fe: int = 0
    fm: int = 0

    @property
    def group(self) -> str:
        """The regressor a unit belongs to: its block code and activation."""
        return f"{self.code}/{self.act}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cin, self.hw, self.hw)


def subnet_units(space: SpaceChoice | str, subnet: Subnet | str) -> list[Unit]:
    """The units of ``subnet`` in ``space``, in network order (head last).

    The subnet is checked against the space: a description outside the hyperspace raises
    :class:`~spaceevo_lib.space.EncodingError` naming the field, the stage and what is allowed.
    For many subnets of one space, build a :class:`SpaceUnits` once and call it.
    """
    return SpaceUnits(space)(subnet)


class SpaceUnits:
    """Fast :func:`subnet_units` for many subnets of one candidate space (the search's case).

    The space's allowed values are read once; each subnet is checked by set membership and,
    only if a value is not allowed, by :meth:`Subnet.validate` for its full error message.
    """

    def __init__(self, space: SpaceChoice | str):
        self.space = as_space(space)
        hs = self.space.spec
        self.stages = []
        for opt in stage_options(self.space):
            self.stages.append((opt.block.code, opt.block.activation, hs.stage(opt.name).stride,
                                frozenset(opt.depths), frozenset(opt.kernels),
                                frozenset(opt.widths), frozenset(opt.expands)))
        self.resolutions = frozenset(hs.resolutions)
        fe, fm = hs.final_expand, hs.feature_mix
        self.head = (fe.activation, hs.n_classes, fe.width, fm.width)

    def __call__(self, subnet: Subnet | str) -> list[Unit]:
        sub = (subnet if isinstance(subnet, Subnet) else Subnet.decode(subnet))
        units: list[Unit] = []
        cin, hw, i = 3, sub.resolution, 0
        ok = sub.resolution in self.resolutions and len(sub.depths) == len(self.stages)
        for (code, act, stride, depths, kernels, widths, expands), d in zip(self.stages,
                                                                             sub.depths):
            ok = ok and d in depths
            for b in range(d):
                k, w, e = sub.kernels[i], sub.widths[i], sub.expands[i]
                ok = ok and k in kernels and w in widths and e in expands
                st = stride if b == 0 else 1
                units.append(Unit(code, act, cin, w, k, float(e or 0.0), st, hw))
                cin, hw, i = w, -(-hw // st), i + 1
        if not ok:
            sub.validate(self.space.spec, self.space)  # raises with the offending field
        act, n_classes, fe, fm = self.head
        units.append(Unit(HEAD, act, cin, n_classes, 1, 0.0, 1, hw, fe, fm))
        return units


def _out(hw: int, stride: int) -> int:
    """Output side of a 'same'-padded odd-kernel conv: ceil(hw / stride)."""
    return -(-hw // stride)


# ----------------------------------------------------------------------------- modules


@job_builder("block-unit")
def build_unit(code: str, act: str, cin: int, cout: int, k: int, e: float, stride: int,
               hw: int = 0, fe: int = 0, fm: int = 0):
    """The PyTorch module of one unit (the keyword form of :class:`Unit`, so that latency
    jobs can rebuild it in a worker process)."""
    if code == HEAD:  # fm = 0: no feature-mix conv (torchvision's MobileNetV2 head)
        return nn.Sequential(head_parts(cin, fe, act, fm, act, cout))
    return block_type(code).static(cin, cout, k, stride, e or None, act)


def unit_spec(u: Unit) -> dict:
    """Keyword arguments of :func:`build_unit` (plain Python types, picklable)."""
    return {"code": u.code, "act": u.act, "cin": int(u.cin), "cout": int(u.cout), "k": int(u.k),
            "e": float(u.e), "stride": int(u.stride), "hw": int(u.hw), "fe": int(u.fe),
            "fm": int(u.fm)}


# ----------------------------------------------------------------------------- analytic cost

#: Kernel-level cost features of a unit (sums over its layers), the linear model's inputs:
#: MACs and output elements per convolution kind, elements through each activation family
#: (relu/relu6, hswish, swish), squeeze-excite, residual-add and pooling elements, and the
#: number of kernels (a per-kernel overhead), and the count and MACs of 7x7 depthwise
#: convolutions on their own: TFLite runs them some 30x slower per MAC than 3x3 and 5x5 ones
#: (FP32 and INT8; measured in the predictor chapter's blocks), so they need their own cost.
KERNEL_FEATURES = ("macs_conv", "macs_pw", "macs_dw", "macs_fc", "out_conv", "out_pw",
                   "out_dw", "act_relu", "act_hswish", "act_swish", "se_elems", "se_count",
                   "add_elems", "pool_elems", "in_elems", "n_kernels", "dw7_count", "macs_dw7")
_ACT_FAMILY = {"relu": "act_relu", "relu6": "act_relu", "hswish": "act_hswish",
               "swish": "act_swish", "none": None}


class _Cost:
    """Accumulates a unit's layers: MACs, parameters and the kernel features."""

    def __init__(self) -> None:
        self.macs = 0
        self.params = 0
        self.f = dict.fromkeys(KERNEL_FEATURES, 0.0)

    def conv(self, cin: int, cout: int, k: int, hw_out: int, groups: int = 1, act: str = "none",
             bias: bool = False, bn: bool = True) -> None:
        w = cout * (cin // groups) * k * k
        macs, out = w * hw_out * hw_out, cout * hw_out * hw_out
        self.macs += macs
        self.params += w + (cout if bias else 0) + (2 * cout if bn else 0)
        kind = "dw" if groups > 1 else ("pw" if k == 1 else "conv")
        self.f[f"macs_{kind}"] += macs
        self.f[f"out_{kind}"] += out
        self.f["n_kernels"] += 1
        if kind == "dw" and k >= 7:
            self.f["dw7_count"] += 1
            self.f["macs_dw7"] += macs
        self.activation(act, out)

    def activation(self, act: str, elems: int) -> None:
        fam = _ACT_FAMILY[act]
        if fam:
            self.f[fam] += elems

    def se(self, channels: int, mid: int, hw: int) -> None:
        self.conv(channels, mid, 1, 1, act="relu", bias=True, bn=False)
        self.conv(mid, channels, 1, 1, bias=True, bn=False)
        self.f["se_elems"] += channels * hw * hw  # pool + gate multiply over the map
        self.f["se_count"] += 1

    def add(self, elems: int) -> None:
        self.f["add_elems"] += elems
        self.f["n_kernels"] += 1


def _unit_cost(u: Unit) -> tuple[_Cost, int]:
    """The unit's layers, as the registry's static block builds them (one cost function per
    family below); returns the accumulated cost and the widest inner tensor's elements."""
    hw_in, s, act = u.hw, u.stride, u.act
    hw = _out(hw_in, s)
    cost = _Cost()
    cost.f["in_elems"] = u.cin * hw_in * hw_in
    out_elems = u.cout * hw * hw
    if u.code == HEAD:
        cost.conv(u.cin, u.fe, 1, hw_in, act=act)
        cost.f["pool_elems"] += u.fe * hw_in * hw_in
        if u.fm:
            cost.conv(u.fe, u.fm, 1, 1, act=act)
        width = u.fm or u.fe
        cost.macs += width * u.cout
        cost.params += width * u.cout + u.cout
        cost.f["macs_fc"] += width * u.cout
        cost.f["n_kernels"] += 1
        return cost, u.fe * hw_in * hw_in
    try:
        bt = block_type(u.code)
    except KeyError as err:
        raise KeyError(f"unit code {u.code!r} has no cost model; known: {HEAD} and the block "
                       f"registry's codes") from err
    hidden = bt.cost(cost, u)
    if bt.family == "stem":
        return cost, out_elems
    keeps_shape = s == 1 and u.cin == u.cout
    if not bt.forced_residual and not keeps_shape:  # plain MBv2: no shortcut, no add
        return cost, hidden * hw * hw
    if not keeps_shape:
        cost.conv(u.cin, u.cout, 1, hw)  # the forced residual's 1x1 conv + BN
    cost.add(out_elems)
    if bt.family == "resnet":
        cost.activation(act, out_elems)  # post-add activation
    return cost, hidden * hw * hw


# One cost function per family of the block registry, layer for layer as the builders of
# ``spaceevo_lib.nn.blocks``; each returns the block's hidden width.

def stem_cost(bt, cost: _Cost, u: Unit) -> int:
    cost.conv(u.cin, u.cout, u.k, _out(u.hw, u.stride), act=u.act)
    return u.cout


def mbv1_dual_cost(bt, cost: _Cost, u: Unit) -> int:
    hw = _out(u.hw, u.stride)
    cost.conv(u.cin, u.cin, u.k, hw, u.cin, u.act)
    cost.conv(u.cin, u.cout, 1, hw, act=u.act)
    cost.conv(u.cout, u.cout, u.k, hw, u.cout, u.act)
    cost.conv(u.cout, u.cout, 1, hw, act=u.act)
    return bt.hidden(u.cin, u.cout, None)


def mb_cost(bt, cost: _Cost, u: Unit) -> int:
    hw = _out(u.hw, u.stride)
    hidden = bt.hidden(u.cin, u.cout, u.e or None)
    if hidden != u.cin:
        cost.conv(u.cin, hidden, 1, u.hw, act=u.act)
    if bt.k3:  # 1-3 stacked 3x3 depthwise convs, one BN + act after the stack
        n = K3_STACK[u.k]
        for i in range(n):
            last = i == n - 1
            cost.conv(hidden, hidden, 3, hw, hidden, u.act if last else "none", bn=last)
    else:
        cost.conv(hidden, hidden, u.k, hw, hidden, u.act)
    if bt.se:
        cost.se(hidden, bt.se_mid(u.cin, hidden), hw)
    cost.conv(hidden, u.cout, 1, hw)
    return hidden


def resnet_cost(bt, cost: _Cost, u: Unit) -> int:
    hw = _out(u.hw, u.stride)
    hidden = bt.hidden(u.cin, u.cout, u.e or None)
    cost.conv(u.cin, hidden, 1, u.hw, act=u.act)
    cost.conv(hidden, hidden, u.k, hw, act=u.act)
    if bt.se:
        cost.se(hidden, bt.se_mid(u.cin, hidden), hw)
    cost.conv(hidden, u.cout, 1, hw)
    return hidden


def fused_cost(bt, cost: _Cost, u: Unit) -> int:
    hw = _out(u.hw, u.stride)
    hidden = bt.hidden(u.cin, u.cout, u.e or None)
    cost.conv(u.cin, hidden, u.k, hw, act=u.act)
    if bt.se:
        cost.se(hidden, bt.se_mid(u.cin, hidden), hw)
    cost.conv(hidden, u.cout, 1, hw)
    return hidden


def unit_cost(u: Unit) -> dict[str, float]:
    """Analytic MACs, parameters, tensor sizes and kernel features of one unit (batch 1)."""
    cost, hidden_elems = _unit_cost(u)
    hw_out = 1 if u.code == HEAD else _out(u.hw, u.stride)
    return {"macs": float(cost.macs), "params": float(cost.params),
            "in_elems": float(u.cin * u.hw * u.hw),
            "out_elems": float(u.cout * hw_out * hw_out), "hidden_elems": float(hidden_elems),
            **{k: float(v) for k, v in cost.f.items()}}


def unit_features(units: Sequence[Unit]) -> np.ndarray:
    """(len(units), len(FEATURES)) float array: raw configuration and analytic costs."""
    rows = []
    for u in units:
        c = unit_cost(u)
        # channel counts off the 16-lane SIMD blocking (AVX-512, onnxruntime's NCHWc layout)
        # run padded or in slower kernels: the regressors see the remainders
        hw_out = 1 if u.code == HEAD else _out(u.hw, u.stride)
        hidden = int(round(c["hidden_elems"] / max(1, hw_out * hw_out)))
        rows.append([u.cin, u.cout, u.hw, u.k, u.e, u.stride, u.cin % 16, u.cout % 16,
                     hidden % 16, c["macs"], c["params"],
                     c["in_elems"], c["out_elems"], c["hidden_elems"],
                     *(c[k] for k in KERNEL_FEATURES if k != "in_elems")])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


#: torchvision models made only of the hyperspaces' units (checked by a test), so that the
#: predictors can price them; the others use blocks no hyperspace has.
BASELINES = ("mobilenet_v2",)
_OUTSIDE = {"mobilenet_v3_small": "its inverted residuals skip the shortcut when shapes change "
                                  "and place SE and hswish per layer",
            "mobilenet_v3_large": "its inverted residuals skip the shortcut when shapes change "
                                  "and place SE and hswish per layer",
            "efficientnet_b0": "its MBConv squeeze-excite is sized from the block input and it "
                               "uses stochastic depth",
            "resnet18": "its BasicBlock (two 3x3 convolutions) is in no hyperspace",
            "resnet50": "its bottleneck's expansion and ReLU placement differ from ResNetBlock"}


def baseline_units(name: str, resolution: int, n_classes: int = 1000,
                   stem_stride: int = 2) -> list[Unit]:
    """The units of a torchvision baseline (see :data:`BASELINES`), read off the model
    (built as :func:`~spaceevo_lib.nn.models.create_model` builds it, ``stem_stride`` included).

    torchvision's MobileNetV2 is a FirstConv (ReLU6), inverted residuals that are exactly the
    hyperspaces' ``MBv2`` block with ReLU6 (expand conv skipped at ratio 1, identity shortcut
    only when the shape is kept), and a head without the feature-mix conv (``fm = 0``).
    """
    if name not in BASELINES:
        why = _OUTSIDE.get(name, "it is not a torchvision baseline of this study")
        raise KeyError(f"{name!r} cannot be priced by a block predictor: {why}; priceable "
                       f"baselines: {', '.join(BASELINES)}")

    m = create_model(name, n_classes=n_classes, stem_stride=stem_stride)
    convs = lambda mod: [c for c in mod.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    first = convs(m.features[0])[0]
    units = [Unit("FirstConv", "relu6", 3, first.out_channels, first.kernel_size[0], 0.0,
                  first.stride[0], resolution)]
    hw = _out(resolution, first.stride[0])
    for blk in m.features[1:-1]:
        cs = convs(blk)
        dw = next(c for c in cs if c.groups > 1)
        cin, cout = cs[0].in_channels, cs[-1].out_channels
        units.append(Unit("MBv2", "relu6", cin, cout, dw.kernel_size[0],
                          dw.out_channels / cin, dw.stride[0], hw))
        hw = _out(hw, dw.stride[0])
    last = convs(m.features[-1])[0]
    units.append(Unit(HEAD, "relu6", last.in_channels, n_classes, 1, 0.0, 1, hw,
                      last.out_channels, 0))
    return units


def subnet_mflops(space: SpaceChoice | str, subnet: Subnet | str) -> float:
    """MACs of a whole subnet in millions, from its units (no PyTorch)."""
    return sum(unit_cost(u)["macs"] for u in subnet_units(space, subnet)) / 1e6


def scale_subnet(subnet: Subnet | str, space: SpaceChoice | str, target: str) -> tuple[
        SpaceChoice, Subnet]:
    """The same architecture in a scaled copy of its hyperspace (e.g. a SEQnet at CPU scale).

    Depths, kernels, expand ratios and block types stay; each width is replaced by the width
    at the same position of the target stage's list, and the resolution by the one at the same
    position of the target's resolution list (scaled hyperspaces keep list lengths).
    """
    sp, sub = as_space(space), (subnet if isinstance(subnet, Subnet) else Subnet.decode(subnet))
    src, dst = sp.spec, as_hyperspace(target)
    if src.name == dst.name:
        return sp, sub
    if dst.base != src.name:
        raise ValueError(f"{dst.name} is not a scaled copy of {src.name} (its base is "
                         f"{dst.base!r})")
    widths = []
    for name, blocks in sub.stage_blocks().items():
        a, b = src.stage(name).widths, dst.stage(name).widths
        widths += [b[a.index(w)] for _, w, _ in blocks]
    res = dst.resolutions[src.resolutions.index(sub.resolution)]
    out = Subnet(sub.depths, sub.kernels, tuple(widths), sub.expands, res)
    tsp = SpaceChoice(dst.name, sp.blocks, sp.windows)
    out.validate(dst, tsp)
    return tsp, out


#: The ``space`` of whole-network rows that are torchvision baselines.
BASELINE_SPACE = "torchvision"


def network_units(space: str, subnet: str) -> list:
    """Units of a whole-network row: a subnet of a space, or a torchvision baseline (space
    ``torchvision``, subnet ``<name>@r<resolution>[/c<classes>/s<stem stride>]``)."""
    if space == BASELINE_SPACE:
        head, *extra = subnet.split("/")
        name, r = head.rsplit("@r", 1)
        opts = {"n_classes": 1000, "stem_stride": 2}
        for tok in extra:
            opts["n_classes" if tok[0] == "c" else "stem_stride"] = int(tok[1:])
        return baseline_units(name, int(r), **opts)
    return subnet_units(space, subnet)
