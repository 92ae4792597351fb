"""Put LSQ+ quantizers into any network of the study, where the deployed runtimes put them.

:func:`quantize_model` works on the traced graph (``torch.fx``) of a trained FP32 network,
so it applies unchanged to static subnets built from the block registry and to torchvision
baselines: no second model definition.

1. **BN folded first** (:func:`fold_bn`): every conv followed by batch norm becomes one conv
   with bias, as the runtimes execute it; quantization-aware training then trains exactly
   the weights that are deployed (training-notes section 2). Fine-tuning without BN is the
   price; it starts from a trained network at a low learning rate.
2. **One activation quantizer per tensor, at its producer's output**: the network input and
   the outputs of convs, linears, adds, muls, pools and activations. A ReLU/ReLU6 right after
   a conv or an add takes the quantizer (the runtimes fuse it into the integer kernel);
   SiLU and Hardswish are written as ``x * gate(x)`` first, and the input, the gate's
   output and the product each get one, as onnxruntime's own post-training quantizer places
   them (QLinearSigmoid / QLinearMul; Hardsigmoid has no integer kernel and stays float: part
   of the paper's finding). Shape ops (flatten, dropout) pass the quantized tensor on; the
   logits stay float.
3. **Weights**: every ``Conv2d`` / ``Linear`` becomes :class:`QConv2d` / :class:`QLinear` with
   a :class:`~.lsq.WeightQuantizer` (per channel by default: what onnxruntime's QLinearConv
   and TFLite's int8 kernels use).

The quantized network is a ``torch.fx.GraphModule``; the same builder + :func:`quantize_model`
rebuilds it to load a checkpoint. Quantizers initialise on the first training-mode forward.
"""

from __future__ import annotations

import copy
import operator
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .lsq import ActQuantizer, WeightQuantizer

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_ACT_MODULES = (nn.Hardswish, nn.SiLU, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh)
_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)
_PASS_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
_RELU_FUNCS = {F.relu, F.relu6, torch.relu}
_ACT_FUNCS = {F.hardswish, F.silu, F.hardsigmoid, torch.sigmoid, F.sigmoid}
_POOL_FUNCS = {F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, torch.mean}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_MUL_FUNCS = {operator.mul, operator.imul, torch.mul}


class QConv2d(nn.Conv2d):
    """Conv2d whose weight passes an LSQ+ weight quantizer (bias stays float: the runtimes
    store it as int32 at scale s_x * s_w, an error below half an output step)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, per_channel: bool = True) -> "QConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                conv.padding_mode)
        q.load_state_dict(conv.state_dict())
        q.weight_quantizer = WeightQuantizer(conv.out_channels, per_channel)
        return q.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


class QLinear(nn.Linear):
    """Linear whose weight passes an LSQ+ weight quantizer."""

    @classmethod
    def from_linear(cls, lin: nn.Linear, per_channel: bool = True) -> "QLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None)
        q.load_state_dict(lin.state_dict())
        q.weight_quantizer = WeightQuantizer(lin.out_features, per_channel)
        return q.train(lin.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_quantizer(self.weight), self.bias)


def trace_network(model: nn.Module) -> fx.GraphModule:
    """The ``torch.fx`` graph of a network (a graph is returned as it is), keeping what a
    subnet carries (resolution, space, subnet)."""
    if isinstance(model, fx.GraphModule):
        return model
    gm = fx.symbolic_trace(model)
    for attr in ("resolution", "space", "subnet"):  # what SubnetModel carries
        if hasattr(model, attr):
            setattr(gm, attr, getattr(model, attr))
    return gm


def _module(gm: fx.GraphModule, n: fx.Node) -> nn.Module | None:
    return gm.get_submodule(n.target) if n.op == "call_module" else None


def _set_module(gm: fx.GraphModule, target: str, new: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, new)


@torch.no_grad()
def fold_bn(model: nn.Module) -> fx.GraphModule:
    """The network with every conv -> batch norm pair folded into one conv with bias (eval
    statistics), as a GraphModule. A BN that does not directly follow a conv raises."""
    gm = trace_network(model)
    was_training = gm.training
    gm.eval()
    for n in list(gm.graph.nodes):
        bn = _module(gm, n)
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        src = n.args[0]
        conv = _module(gm, src) if isinstance(src, fx.Node) else None
        if not isinstance(conv, nn.Conv2d) or len(src.users) != 1:
            raise ValueError(f"batch norm {n.target!r} does not directly follow a conv; it "
                             "cannot be folded for INT8 deployment")
        _set_module(gm, src.target, fuse_conv_bn_eval(conv, bn))
        n.replace_all_uses_with(src)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.train(was_training)


def _kind(gm: fx.GraphModule, n: fx.Node) -> str:
    """What a node is for placement: input, conv, linear, relu, act, pool, add, mul, pass,
    output or other."""
    if n.op == "placeholder":
        return "input"
    if n.op == "output":
        return "output"
    m = _module(gm, n)
    if m is not None:
        for kinds, name in ((nn.Conv2d, "conv"), (nn.Linear, "linear"), (_RELU_MODULES, "relu"),
                            (_ACT_MODULES, "act"), (_POOL_MODULES, "pool"),
                            (_PASS_MODULES, "pass")):
            if isinstance(m, kinds):
                return name
        return "other"
    if n.op in ("call_function", "call_method"):
        t = n.target
        if n.op == "call_method":
            return {"relu": "relu", "sigmoid": "act", "mean": "pool", "add": "add",
                    "mul": "mul", "flatten": "pass", "view": "pass", "reshape": "pass",
                    "size": "pass", "contiguous": "pass"}.get(t, "other")
        if t in _RELU_FUNCS or (t is F.hardtanh and n.kwargs.get("min_val", n.args[1:2] or
                                                                 [-1.0]) == 0.0):
            return "relu"
        for funcs, name in ((_ACT_FUNCS, "act"), (_POOL_FUNCS, "pool"), (_ADD_FUNCS, "add"),
                            (_MUL_FUNCS, "mul")):
            if t in funcs:
                return name
        if t in (torch.flatten, torch.reshape, F.dropout, operator.getitem, getattr):
            return "pass"
    return "other"


_QUANTIZED_KINDS = ("input", "conv", "linear", "relu", "act", "pool", "add", "mul")


def _needs_quantizer(gm: fx.GraphModule, n: fx.Node) -> bool:
    kind = _kind(gm, n)
    if kind not in _QUANTIZED_KINDS:
        return False
    users = list(n.users)
    if not users or all(_kind(gm, u) == "output" for u in users):
        return False  # the network's output (logits) stays float
    if kind in ("conv", "linear", "add") and all(_kind(gm, u) == "relu" for u in users):
        return False  # the ReLU after it takes the quantizer (fused by the runtimes)
    return True


def _decompose_gated_activations(gm: fx.GraphModule) -> None:
    """SiLU -> x * sigmoid(x), Hardswish -> x * hardsigmoid(x): the gate's output becomes a
    tensor of its own, which then gets a quantizer, so that onnxruntime runs the gate and the
    product with integer kernels (QLinearSigmoid, QLinearMul), as its post-training
    quantizer does; Hardsigmoid has no integer kernel and stays float in both."""
    gates = {nn.SiLU: torch.sigmoid, nn.Hardswish: F.hardsigmoid}
    funcs = {F.silu: torch.sigmoid, F.hardswish: F.hardsigmoid}
    for n in list(gm.graph.nodes):
        m = _module(gm, n)
        gate = gates.get(type(m)) if m is not None else (
            funcs.get(n.target) if n.op == "call_function" else None)
        if gate is None:
            continue
        x = n.args[0]
        with gm.graph.inserting_after(n):
            g = gm.graph.call_function(gate, (x,))
        with gm.graph.inserting_after(g):
            prod = gm.graph.call_function(operator.mul, (x, g))
        n.replace_all_uses_with(prod)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()


def quantize_model(model: nn.Module, per_channel: bool = True) -> fx.GraphModule:
    """The LSQ+ fake-quantized network of a trained FP32 ``model`` (BN folded, quantizers
    placed as the module docstring says). The input model is not modified."""
    gm = fold_bn(copy.deepcopy(model))
    _decompose_gated_activations(gm)
    for n in list(gm.graph.nodes):
        m = _module(gm, n)
        if type(m) is nn.Conv2d:
            _set_module(gm, n.target, QConv2d.from_conv(m, per_channel))
        elif type(m) is nn.Linear:
            _set_module(gm, n.target, QLinear.from_linear(m, per_channel))
    count = 0
    for n in list(gm.graph.nodes):
        if not _needs_quantizer(gm, n):
            continue
        name = f"aq_{n.name}"
        gm.add_submodule(name, ActQuantizer())
        with gm.graph.inserting_after(n):
            q = gm.graph.call_module(name, (n,))
        n.replace_all_uses_with(q, delete_user_cb=lambda u: u is not q)
        count += 1
    gm.graph.lint()
    gm.recompile()
    gm.n_act_quantizers = count
    return gm


def act_quantizers(model: nn.Module) -> Iterator[tuple[str, ActQuantizer]]:
    return ((k, m) for k, m in model.named_modules() if isinstance(m, ActQuantizer))


def weight_quantizers(model: nn.Module) -> Iterator[tuple[str, WeightQuantizer]]:
    return ((k, m) for k, m in model.named_modules() if isinstance(m, WeightQuantizer))


class _FrozenAct(nn.Module):
    """An initialised activation quantizer as constants: exports as QuantizeLinear +
    DequantizeLinear with a constant scale and zero point."""

    def __init__(self, q: ActQuantizer):
        super().__init__()
        self.scale, self.zero_point = float(q.step), int(q.zero_point())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)


class _FrozenWeight(nn.Module):
    """A weight on its int8 grid with constant scales: exports as QuantizeLinear (folded into an
    int8 initializer by :func:`spaceevo_lib.quant.deploy.export_qdq`) + DequantizeLinear."""

    def __init__(self, q: WeightQuantizer, w: torch.Tensor):
        super().__init__()
        self.per_channel = q.per_channel
        scale = q.step.detach().float().reshape(-1)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", torch.zeros_like(scale, dtype=torch.int32))
        shape = (-1, *([1] * (w.dim() - 1)))
        self.register_buffer("grid", q.integer_weight(w).float() * (
            scale.view(shape) if q.per_channel else scale))

    def forward(self) -> torch.Tensor:
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(self.grid, self.scale, self.zero, 0,
                                                          -128, 127)
        return torch.fake_quantize_per_tensor_affine(self.grid, float(self.scale), 0, -128, 127)


class _FrozenConv(nn.Module):
    def __init__(self, conv: QConv2d):
        super().__init__()
        self.conv = conv
        self.w = _FrozenWeight(conv.weight_quantizer, conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv._conv_forward(x, self.w(), self.conv.bias)


class _FrozenLinear(nn.Module):
    def __init__(self, lin: QLinear):
        super().__init__()
        self.lin = lin
        self.w = _FrozenWeight(lin.weight_quantizer, lin.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w(), self.lin.bias)


@torch.no_grad()
def frozen_for_export(model: fx.GraphModule) -> fx.GraphModule:
    """A copy of a quantized network with every quantizer's learned scale and zero point as
    constants, computing exactly what the eval-mode network computes; this is what
    ``quant.deploy.export_qdq`` exports. Raises NotInitialisedError on an untrained quantizer."""
    gm = copy.deepcopy(model).eval()
    for name, m in list(gm.named_modules()):
        if isinstance(m, ActQuantizer):
            m._require_init()
            _set_module(gm, name, _FrozenAct(m))
        elif isinstance(m, QConv2d):
            m.weight_quantizer._require_init()
            _set_module(gm, name, _FrozenConv(m))
        elif isinstance(m, QLinear):
            m.weight_quantizer._require_init()
            _set_module(gm, name, _FrozenLinear(m))
    gm.recompile()
    return gm
