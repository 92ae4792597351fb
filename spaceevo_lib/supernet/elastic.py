"""Elastic (weight-sharing) operators and blocks of the SpaceEvo supernet (paper-notes §2.5).

OFA-style sharing, as in the reference ``dynamic_op.py``:

* a conv holds the weights of its largest (cout, cin, k); the active cin is the input's
  channel count, cout comes from the active setting, and a smaller kernel is the **centre
  crop** of the largest one (no kernel transform matrix);
* batch norm uses its first C features, and in train mode updates the running-statistics
  slices of those features only;
* hidden widths and SE mids are computed at run time from the actual cin by the block
  registry's ``BlockType.hidden`` / ``se_mid``, the same functions the static blocks use;
* K3 blocks (mobilew idx 5, 6) stack 1-3 plain 3x3 depthwise convs for k = 3/5/7: the first
  (``dwconv0``) is shared by all k, the 2nd and 3rd exist only for the larger k.

Every elastic block can hand back its active sub-block as the matching *static* block
(:func:`spaceevo_lib.nn.subnet.make_block`) with the sliced weights copied, so the static
block computes exactly what the elastic one does. Copying pairs the block's active dynamic ops
(:meth:`ElasticBlock.active_ops`) one-to-one with the static block's ``Conv2d`` /
``BatchNorm2d`` / ``Linear`` modules in registration order, and slices each weight to the
static module's shape; a structural mismatch raises instead of copying silently.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaceevo_lib.nn.blocks import act_layer
from spaceevo_lib.nn.registry import K3_STACK, BlockType, block_type
from spaceevo_lib.nn.subnet import make_block
from spaceevo_lib.space.hyperspace import BlockSpec

# ----------------------------------------------------------------------------- operators


class DynamicConv2d(nn.Module):
    """Conv with the weights of the largest setting; first-N channel slicing, centre crop.

    ``depthwise``: one filter per channel; the active channel count is the input's.
    """

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 depthwise: bool = False, bias: bool = False):
        super().__init__()
        if depthwise and max_in != max_out:
            raise ValueError(f"depthwise conv needs max_in == max_out; got {max_in}, {max_out}")
        if max_kernel % 2 != 1:
            raise ValueError(f"kernel sizes must be odd (symmetric padding); got {max_kernel}")
        self.max_in, self.max_out, self.max_kernel = max_in, max_out, max_kernel
        self.stride, self.depthwise = stride, depthwise
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in,
                                               max_kernel, max_kernel))
        self.bias = nn.Parameter(torch.empty(max_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's default init over the largest weight."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def active_weight(self, cin: int, cout: int, k: int) -> torch.Tensor:
        """First ``cout`` filters over the first ``cin`` inputs, centre ``k x k`` crop."""
        if cin > self.max_in or cout > self.max_out or k > self.max_kernel or k % 2 != 1:
            raise ValueError(
                f"active conv ({cin}->{cout}, k{k}) exceeds the shared weights "
                f"({self.max_in}->{self.max_out}, k{self.max_kernel}) or has an even kernel")
        s = (self.max_kernel - k) // 2
        return self.weight[:cout, :1 if self.depthwise else cin, s:s + k, s:s + k]

    def forward(self, x: torch.Tensor, out_channels: int | None = None,
                kernel_size: int | None = None) -> torch.Tensor:  # (B, C, H, W)
        cin = x.shape[1]
        cout = cin if self.depthwise else (out_channels or self.max_out)
        k = kernel_size or self.max_kernel
        w = self.active_weight(cin, cout, k)
        b = None if self.bias is None else self.bias[:cout]
        return F.conv2d(x, w, b, self.stride, k // 2, groups=cin if self.depthwise else 1)

    @torch.no_grad()
    def copy_to(self, conv: nn.Conv2d) -> None:
        """Copy the slice matching ``conv``'s shape into it."""
        dw = conv.groups > 1
        if (dw != self.depthwise or (dw and conv.groups != conv.in_channels)
                or conv.stride != (self.stride, self.stride)
                or (conv.bias is None) != (self.bias is None)):
            raise RuntimeError(f"static {conv} does not match elastic {self}")
        conv.weight.copy_(self.active_weight(conv.in_channels, conv.out_channels,
                                             conv.kernel_size[0]))
        if self.bias is not None:
            conv.bias.copy_(self.bias[:conv.out_channels])

    def extra_repr(self) -> str:
        flags = (", depthwise" if self.depthwise else "") + (", bias" if self.bias is not None
                                                              else "")
        return f"max {self.max_in}->{self.max_out}, k{self.max_kernel}, stride {self.stride}{flags}"


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C features (C = input channels), paper-notes §2.5.

    A ``BatchNorm2d`` subclass, so code that resets or re-estimates BN statistics
    (``spaceevo_lib.nn.recalibrate_bn``) treats it like any BN. In train mode the running
    statistics of the first C features are updated (the slices are views of the buffers).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        c = x.shape[1]
        if c > self.num_features:
            raise ValueError(f"input has {c} channels; this BN holds {self.num_features}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x, self.running_mean[:c] if track else None,
            self.running_var[:c] if track else None,
            self.weight[:c] if self.affine else None, self.bias[:c] if self.affine else None,
            use_batch, factor, self.eps)

    @torch.no_grad()
    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        """Copy the first ``bn.num_features`` entries (affine and running statistics)."""
        c = bn.num_features
        if c > self.num_features or bn.affine != self.affine:
            raise RuntimeError(f"static {bn} does not match elastic {self}")
        if self.affine:
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
        bn.running_mean.copy_(self.running_mean[:c])
        bn.running_var.copy_(self.running_var[:c])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        bn.eps, bn.momentum = self.eps, self.momentum


class DynamicLinear(nn.Linear):
    """Linear over the first N input features (N = the input's last dimension)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N)
        n = x.shape[-1]
        if n > self.in_features:
            raise ValueError(f"input has {n} features; this layer holds {self.in_features}")
        return F.linear(x, self.weight[:, :n], self.bias)

    @torch.no_grad()
    def copy_to(self, lin: nn.Linear) -> None:
        if (lin.out_features != self.out_features or lin.in_features > self.in_features
                or (lin.bias is None) != (self.bias is None)):
            raise RuntimeError(f"static {lin} does not match elastic {self}")
        lin.weight.copy_(self.weight[:, :lin.in_features])
        if self.bias is not None:
            lin.bias.copy_(self.bias)


class DynamicConvBNAct(nn.Module):
    """Elastic ``ConvBNAct``: DynamicConv2d, DynamicBatchNorm2d, activation."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 act: str = "relu", depthwise: bool = False):
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, max_kernel, stride, depthwise)
        self.bn = DynamicBatchNorm2d(max_out)
        self.act = act_layer(act)

    def forward(self, x: torch.Tensor, out_channels: int | None = None,
                kernel_size: int | None = None) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, out_channels, kernel_size)))

    def ops(self) -> list[nn.Module]:
        return [self.conv, self.bn]


class DynamicK3Depthwise(nn.Module):
    """1-3 stacked 3x3 depthwise convs (k = 3, 5, 7), the first strided, then BN + act.

    ``dwconv0`` is shared by all k; ``dwconv1``/``dwconv2`` run only for k = 5/7 (§2.5).
    """

    def __init__(self, max_channels: int, max_kernel: int, stride: int, act: str):
        super().__init__()
        self.convs = nn.ModuleList(
            DynamicConv2d(max_channels, max_channels, 3, stride if i == 0 else 1, depthwise=True)
            for i in range(K3_STACK[max_kernel]))
        self.bn = DynamicBatchNorm2d(max_channels)
        self.act = act_layer(act)

    def forward(self, x: torch.Tensor, out_channels: int | None = None,
                kernel_size: int | None = None) -> torch.Tensor:
        for conv in self.convs[:K3_STACK[kernel_size or 3]]:
            x = conv(x)
        return self.act(self.bn(x))

    def ops(self, kernel_size: int) -> list[nn.Module]:
        return [*self.convs[:K3_STACK[kernel_size]], self.bn]


class DynamicSE(nn.Module):
    """Elastic ``SqueezeExcite``: GAP, 1x1 (bias) -> ReLU -> 1x1 (bias) -> HardSigmoid, with
    the first ``mid`` reduce filters; ``mid`` is given by the block, computed as the static
    block does (make_divisible(hidden // 4) or make_divisible(cin // 4))."""

    def __init__(self, max_channels: int, max_mid: int):
        super().__init__()
        self.reduce = DynamicConv2d(max_channels, max_mid, 1, bias=True)
        self.expand = DynamicConv2d(max_mid, max_channels, 1, bias=True)

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:  # (B, C, H, W)
        s = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s, mid)), x.shape[1]))
        return x * s

    def ops(self) -> list[nn.Module]:
        return [self.reduce, self.expand]


class DynamicShortcut(nn.Module):
    """The forced residual's 1x1 conv (stride) + BN, used when stride 2 or cin != cout."""

    def __init__(self, max_in: int, max_out: int, stride: int):
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, 1, stride)
        self.bn = DynamicBatchNorm2d(max_out)

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.bn(self.conv(x, out_channels))

    def ops(self) -> list[nn.Module]:
        return [self.conv, self.bn]


class ChannelProjection(nn.Module):
    """The parameter-free shortcut of a stride-1 block inside a stage whose width differs from
    its input's: the first ``out_channels`` channels kept, or zero channels appended (He et
    al.'s option A). Extracted, it is the static block's fixed 1x1 conv
    (:func:`spaceevo_lib.nn.blocks.channel_projection`), so deployed files keep the paper's
    graph.

    Why not the paper's learned 1x1 conv + BN here: the max and min subnets (half of every
    sandwich) never change width inside a stage, so the rest of the network learns a residual
    stream that passes through unchanged, while a projection, used only by the middle of the
    space, hands the next block a re-normalised, mixed stream; the supernet chapter measures
    what that costs (width drawn per block collapsing to chance)."""

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:  # (B, C, H, W)
        c = x.shape[1]
        if out_channels <= c:
            return x[:, :out_channels]
        return F.pad(x, (0, 0, 0, 0, 0, out_channels - c))  # (B, out_channels, H, W)

    def ops(self) -> list[nn.Module]:
        return [self]

    @torch.no_grad()
    def copy_to(self, conv: nn.Conv2d) -> None:
        """Write the projection's fixed 0/1 weight into the static 1x1 conv."""
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 \
                or conv.bias is not None:
            raise RuntimeError(f"static {conv} is not a channel projection")
        conv.weight.zero_()
        idx = torch.arange(min(conv.in_channels, conv.out_channels))
        conv.weight[idx, idx] = 1.0


_STATIC_OF = ((DynamicConv2d, nn.Conv2d), (DynamicBatchNorm2d, nn.BatchNorm2d),
              (DynamicLinear, nn.Linear), (ChannelProjection, nn.Conv2d))


@torch.no_grad()
def copy_weights(ops: Sequence[nn.Module], targets: nn.Module | Iterable[nn.Module]) -> None:
    """Copy elastic ``ops`` into the Conv2d/BatchNorm2d/Linear modules of ``targets``, paired
    in order; raise if the two structures differ."""
    targets = [targets] if isinstance(targets, nn.Module) else list(targets)
    leaves = [m for t in targets for m in t.modules()
              if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    if len(leaves) != len(ops):
        raise RuntimeError(f"elastic block has {len(ops)} active ops, static block has "
                           f"{len(leaves)} conv/BN/linear layers")
    for op, leaf in zip(ops, leaves):
        if not any(isinstance(op, d) and isinstance(leaf, s) for d, s in _STATIC_OF):
            raise RuntimeError(f"cannot copy {type(op).__name__} into {type(leaf).__name__}")
        op.copy_to(leaf)


# ----------------------------------------------------------------------------- blocks


class ElasticBlock(nn.Module):
    """One elastic block: weights for every (cin, k, w, e) it may take (paper-notes §2.1).

    ``cins`` are the input widths the block can receive (previous stage's or its own stage's
    active widths), ``widths`` its output widths (the stage's active window), ``stride`` its
    fixed stride. Subclasses allocate the largest shapes any combination needs.
    """

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__()
        self.bt, self.spec, self.code, self.act = bt, spec, spec.code, spec.activation
        self.cins, self.widths = tuple(sorted(set(cins))), tuple(widths)
        self.kernels, self.expands = spec.kernels, spec.expand_choices
        self.stride = stride
        if fixed_shortcut and stride != 1:
            raise ValueError(f"{spec.code} block: a fixed channel shortcut needs stride 1; "
                             f"got {stride}")
        self.fixed_shortcut = fixed_shortcut
        self.max_cin, self.max_cout, self.max_k = max(self.cins), max(widths), max(self.kernels)
        self.active_k, self.active_w, self.active_e = self.max_k, self.max_cout, self.expands[-1]

    def set_active(self, k: int, w_out: int, e: float | None) -> None:
        """Choose the kernel, output width and expand ratio (None for blocks without one)."""
        for what, v, allowed in (("kernel", k, self.kernels), ("width", w_out, self.widths),
                                 ("expand", e, self.expands)):
            if v not in allowed:
                raise ValueError(f"{self.code} block: {what} {v} not in {allowed}")
        self.active_k, self.active_w, self.active_e = k, w_out, e

    def _check_cin(self, cin: int) -> None:
        if cin not in self.cins:
            raise ValueError(f"{self.code} block: input width {cin} not in {self.cins}")

    def _needs_shortcut(self, cin: int) -> bool:
        return not (self.stride == 1 and cin == self.active_w)

    def _may_need_shortcut(self) -> bool:
        return any(not (self.stride == 1 and c == w) for c in self.cins for w in self.widths)

    def _make_shortcut(self) -> nn.Module | None:
        """The shortcut module for a shape change, if any setting changes the shape: the
        parameter-free :class:`ChannelProjection` (``fixed_shortcut``) or the learned 1x1 conv
        (stride) + BN."""
        if not self._may_need_shortcut():
            return None
        if self.fixed_shortcut:
            return ChannelProjection()
        return DynamicShortcut(self.max_cin, self.max_cout, self.stride)

    def active_ops(self, cin: int) -> list[nn.Module]:
        """Dynamic ops the active block uses, in the static block's layer order."""
        raise NotImplementedError

    def last_bn(self) -> DynamicBatchNorm2d | None:
        """The BN before the residual add (None: the block has no add)."""
        return None

    def copy_active_to(self, module: nn.Module, cin: int) -> nn.Module:
        """Copy the active weights (input width ``cin``) into the static ``module``."""
        self._check_cin(cin)
        copy_weights(self.active_ops(cin), module)
        return module

    def get_active_module(self, cin: int) -> nn.Module:
        """The active block as a static ``nn.blocks`` block with the sliced weights copied."""
        m = make_block(self.spec, cin, self.active_w, self.active_k, self.stride,
                       self.active_e, fixed_shortcut=self.fixed_shortcut)
        return self.copy_active_to(m, cin).train(self.training)

    def extra_repr(self) -> str:
        return (f"{self.code}, cin {self.cins}, widths {self.widths}, k {self.kernels}, "
                f"e {self.expands}, stride {self.stride}")


class ElasticConvBNActBlock(ElasticBlock):
    """The stem (FirstConv): k x k conv (stride) + BN + act, elastic in output width."""

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__(bt, spec, cins, widths, stride, fixed_shortcut)
        self.conv = DynamicConvBNAct(self.max_cin, self.max_cout, self.max_k, stride, self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.active_w, self.active_k)

    def active_ops(self, cin: int) -> list[nn.Module]:
        return self.conv.ops()


class ElasticMB(ElasticBlock):
    """MBv2Res / MBv3Res / MBv2K3Res / MBv3K3Res and the plain MBv2 (mobilew stage0).

    hidden = make_divisible(e*cin), the expand conv skipped when hidden == cin; SE mid =
    make_divisible(hidden // 4); forced residual except for the plain MBv2, which adds the
    input only when stride 1 and cin == cout (paper-notes §2.2, §2.4).
    """

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__(bt, spec, cins, widths, stride, fixed_shortcut)
        se, k3 = bt.se, bt.k3
        self.se_on, self.k3, self.forced = se, k3, bt.forced_residual
        pairs = [(c, bt.hidden(c, 0, e)) for e in self.expands for c in self.cins]
        hiddens = [h for _, h in pairs]
        max_hidden = max(hiddens)
        self.expand = (DynamicConvBNAct(self.max_cin, max_hidden, 1, 1, self.act)
                       if any(h != c for c, h in pairs) else None)
        if k3:
            self.dw = DynamicK3Depthwise(max_hidden, self.max_k, stride, self.act)
        else:
            self.dw = DynamicConvBNAct(max_hidden, max_hidden, self.max_k, stride, self.act,
                                       depthwise=True)
        self.se = (DynamicSE(max_hidden, max(bt.se_mid(c, h) for c, h in pairs))
                   if se else None)
        self.project = DynamicConvBNAct(max_hidden, self.max_cout, 1, 1, "none")
        self.shortcut = self._make_shortcut() if self.forced else None

    def _hidden(self, cin: int) -> int:
        return self.bt.hidden(cin, self.active_w, self.active_e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W)
        cin = x.shape[1]
        hidden = self._hidden(cin)
        h = x if hidden == cin else self.expand(x, hidden)  # (B, hidden, H, W)
        h = self.dw(h, None, self.active_k)  # (B, hidden, H/s, W/s)
        if self.se is not None:
            h = self.se(h, self.bt.se_mid(cin, hidden))
        h = self.project(h, self.active_w)  # (B, cout, H/s, W/s)
        if not self._needs_shortcut(cin):
            return h + x
        if self.forced:
            return h + self.shortcut(x, self.active_w)
        return h

    def last_bn(self) -> DynamicBatchNorm2d | None:
        return self.project.bn if self.forced else None

    def active_ops(self, cin: int) -> list[nn.Module]:
        hidden = self._hidden(cin)
        ops = [] if hidden == cin else self.expand.ops()
        ops += self.dw.ops(self.active_k) if self.k3 else self.dw.ops()
        if self.se is not None:
            ops += self.se.ops()
        ops += self.project.ops()
        if self.forced and self._needs_shortcut(cin):
            ops += self.shortcut.ops()
        return ops


class ElasticMBv1Dual(ElasticBlock):
    """DW k (stride) -> PW cin->cout -> DW k -> PW cout->cout, BN + act each; forced residual."""

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__(bt, spec, cins, widths, stride, fixed_shortcut)
        ci, co, k, a = self.max_cin, self.max_cout, self.max_k, self.act
        self.dw1 = DynamicConvBNAct(ci, ci, k, stride, a, depthwise=True)
        self.pw1 = DynamicConvBNAct(ci, co, 1, 1, a)
        self.dw2 = DynamicConvBNAct(co, co, k, 1, a, depthwise=True)
        self.pw2 = DynamicConvBNAct(co, co, 1, 1, a)
        self.shortcut = self._make_shortcut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, w = self.active_k, self.active_w
        h = self.pw2(self.dw2(self.pw1(self.dw1(x, None, k), w), None, k), w)
        return h + (self.shortcut(x, w) if self._needs_shortcut(x.shape[1]) else x)

    def last_bn(self) -> DynamicBatchNorm2d | None:
        return self.pw2.bn

    def active_ops(self, cin: int) -> list[nn.Module]:
        ops = self.dw1.ops() + self.pw1.ops() + self.dw2.ops() + self.pw2.ops()
        return ops + (self.shortcut.ops() if self._needs_shortcut(cin) else [])


class ElasticResNet(ElasticBlock):
    """ResNet / ResNetSE bottleneck: hidden = make_divisible(e*cout); 1x1 -> k x k (stride)
    [-> SE, mid make_divisible(cin // 4)] -> 1x1; add the shortcut; activation."""

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__(bt, spec, cins, widths, stride, fixed_shortcut)
        se = bt.se
        max_hidden = max(bt.hidden(0, w, e) for e in self.expands for w in self.widths)
        self.conv1 = DynamicConvBNAct(self.max_cin, max_hidden, 1, 1, self.act)
        self.conv2 = DynamicConvBNAct(max_hidden, max_hidden, self.max_k, stride, self.act)
        self.se = (DynamicSE(max_hidden, max(bt.se_mid(c, max_hidden) for c in self.cins))
                   if se else None)
        self.conv3 = DynamicConvBNAct(max_hidden, self.max_cout, 1, 1, "none")
        self.shortcut = self._make_shortcut()
        self.post_act = act_layer(self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, w = x.shape[1], self.active_w
        hidden = self.bt.hidden(cin, w, self.active_e)
        h = self.conv2(self.conv1(x, hidden), hidden, self.active_k)  # (B, hidden, H/s, W/s)
        if self.se is not None:
            h = self.se(h, self.bt.se_mid(cin, hidden))
        h = self.conv3(h, w)
        return self.post_act(h + (self.shortcut(x, w) if self._needs_shortcut(cin) else x))

    def last_bn(self) -> DynamicBatchNorm2d | None:
        return self.conv3.bn

    def active_ops(self, cin: int) -> list[nn.Module]:
        ops = self.conv1.ops() + self.conv2.ops()
        if self.se is not None:
            ops += self.se.ops()
        ops += self.conv3.ops()
        return ops + (self.shortcut.ops() if self._needs_shortcut(cin) else [])


class ElasticFused(ElasticBlock):
    """FusedMBRes / FusedMBSERes: k x k conv cin -> make_divisible(e*cin) (stride) [-> SE, mid
    make_divisible(cin // 4)] -> 1x1 project; forced residual."""

    def __init__(self, bt: BlockType, spec: BlockSpec, cins: Sequence[int],
                 widths: Sequence[int], stride: int, fixed_shortcut: bool = False):
        super().__init__(bt, spec, cins, widths, stride, fixed_shortcut)
        se = bt.se
        max_hidden = max(bt.hidden(c, 0, e) for e in self.expands for c in self.cins)
        self.fused = DynamicConvBNAct(self.max_cin, max_hidden, self.max_k, stride, self.act)
        self.se = (DynamicSE(max_hidden, max(bt.se_mid(c, max_hidden) for c in self.cins))
                   if se else None)
        self.project = DynamicConvBNAct(max_hidden, self.max_cout, 1, 1, "none")
        self.shortcut = self._make_shortcut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, w = x.shape[1], self.active_w
        hidden = self.bt.hidden(cin, w, self.active_e)
        h = self.fused(x, hidden, self.active_k)
        if self.se is not None:
            h = self.se(h, self.bt.se_mid(cin, hidden))
        h = self.project(h, w)
        return h + (self.shortcut(x, w) if self._needs_shortcut(cin) else x)

    def last_bn(self) -> DynamicBatchNorm2d | None:
        return self.project.bn

    def active_ops(self, cin: int) -> list[nn.Module]:
        ops = self.fused.ops() + (self.se.ops() if self.se is not None else [])
        ops += self.project.ops()
        return ops + (self.shortcut.ops() if self._needs_shortcut(cin) else [])


def elastic_block(spec: BlockSpec, cins: Sequence[int], widths: Sequence[int],
                  stride: int, fixed_shortcut: bool = False) -> ElasticBlock:
    """The elastic block for a block code (candidate blocks and the fixed stem/stage0), as the
    block registry maps it; ``fixed_shortcut``: a width change at stride 1 through the
    parameter-free :class:`ChannelProjection`."""
    return block_type(spec.code).elastic(spec, cins, widths, stride,
                                         fixed_shortcut=fixed_shortcut)


class ElasticHead(nn.Module):
    """final_expand (1x1, elastic in cin), GAP, feature_mix (1x1 + BN + act), dropout,
    logits; the fixed head of paper-notes §2.2/2.3 (widths not elastic)."""

    def __init__(self, cins: Sequence[int], expand_width: int, expand_act: str, mix_width: int,
                 mix_act: str, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.cins = tuple(sorted(set(cins)))
        self.final_expand = DynamicConvBNAct(max(self.cins), expand_width, 1, 1, expand_act)
        self.feature_mix = DynamicConvBNAct(expand_width, mix_width, 1, 1, mix_act)
        self.dropout = nn.Dropout(dropout)
        self.logits = DynamicLinear(mix_width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.final_expand(x)  # (B, 1280, H, W)
        h = self.feature_mix(F.adaptive_avg_pool2d(h, 1))  # (B, 1920, 1, 1)
        return self.logits(self.dropout(torch.flatten(h, 1)))  # (B, n_classes)

    def active_ops(self, cin: int) -> list[nn.Module]:
        if cin not in self.cins:
            raise ValueError(f"head: input width {cin} not in {self.cins}")
        return self.final_expand.ops() + self.feature_mix.ops() + [self.logits]
