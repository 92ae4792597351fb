"""PyTorch CNN -> equivalent Keras functional model (weights copied), for TFLite/LiteRT.

The PyTorch module is the one architecture description of the study; this mirrors it into
Keras so that the *same* network (same weights, same numbers) runs on LiteRT. The module is
traced with ``torch.fx.symbolic_trace`` (eval mode, on a deep copy) and every graph node is
emitted as Keras layers/ops in NHWC:

* input NCHW ``(1, C, H, W)`` becomes ``keras.Input(shape=(H, W, C), batch_size=1)``; 4-D
  values are NHWC throughout, 2-D values ``(1, features)`` as in PyTorch;
* PyTorch's symmetric padding is an explicit ``ZeroPadding2D`` + ``'valid'`` convolution
  (TF's ``'same'`` pads bottom/right only for stride 2, so the results would differ);
* Hardswish / Hardsigmoid are written ``x * (relu6(x + 3) * 1/6)`` / ``relu6(x + 3) * 1/6``,
  the pattern Keras' own MobileNetV3 uses and the TFLite converter fuses into ``HARD_SWISH``
  (so does the reference code's ``x * relu6(x + 3) / 6``; ``keras.activations.hard_sigmoid``
  has another slope);
* max-pooling never pads with a constant (a huge negative pad value would enter the INT8
  calibration range): 'valid', TF's 'same' where it places PyTorch's windows, zero padding
  after a ReLU-like op, else a stride-1 'same' pool + strided slice; average pooling
  reproduces ``count_include_pad`` and ``ceil_mode`` divisors the same way;
* flatten / view / reshape to ``(1, -1)`` is only supported on a ``(1, C, 1, 1)`` tensor
  (after global pooling): on a spatial tensor the NCHW and NHWC element orders differ and a
  following ``Linear`` would need permuted weights, so that raises ``ExportError``.

Anything else raises ``ExportError`` naming the node, its target and what is supported.
TensorFlow/Keras is imported lazily, so importing this module is cheap; it loads triton
first, because triton loaded *after* TensorFlow segfaults (see
``load_triton_before_tensorflow``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
import operator
import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

if TYPE_CHECKING:  # pragma: no cover
    import keras


class ExportError(ValueError):
    """A layer, function or shape that the Keras exporter cannot mirror exactly."""


def load_triton_before_tensorflow() -> None:
    """Load triton (if installed) before TensorFlow: its LLVM-based ``libtriton``, which
    ``torch._dynamo`` and so torchvision, ``torch.compile`` and the dynamo ONNX exporter load,
    segfaults when it comes after TensorFlow's (torch 2.14 CUDA wheel + TF 2.21; ~0.2 s)."""
    if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401  # heavy: triton


def _keras():
    """Import Keras (TensorFlow backend) safely, with TF's C++ logging quietened."""
    load_triton_before_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras  # heavy: keras
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the Keras exporter needs the tensorflow backend (for TFLite); "
                           f"KERAS_BACKEND is {keras.backend.backend()!r}")
    return keras


@functools.cache
def _custom_layers(keras_mod) -> SimpleNamespace:
    """Tiny named layers for ops Keras has no layer for (raw ``keras.ops`` calls in a
    functional model get clashing default names such as ``add``)."""

    class Elementwise(keras_mod.layers.Layer):
        """``x <op> const`` (or ``const <op> x``), or ``x <op> y`` for two broadcast tensors."""

        def __init__(self, op: str, const: float | None = None, reverse: bool = False,
                     **kwargs):
            super().__init__(**kwargs)
            self.op, self.const, self.reverse = op, const, reverse

        def call(self, *xs):
            fn = getattr(keras_mod.ops, self.op)
            if self.const is None:
                return fn(*xs)
            return fn(self.const, xs[0]) if self.reverse else fn(xs[0], self.const)

        def get_config(self):
            return {**super().get_config(), "op": self.op, "const": self.const,
                    "reverse": self.reverse}

    class SpatialSlice(keras_mod.layers.Layer):
        """``x[:, h0::sh, w0::sw, :][:, :oh, :ow]``: picks PyTorch's max-pool windows out of a
        stride-1 'same' max-pool (a STRIDED_SLICE in TFLite)."""

        def __init__(self, start: tuple[int, int], stride: tuple[int, int],
                     size: tuple[int, int], **kwargs):
            super().__init__(**kwargs)
            self.start, self.stride, self.size = tuple(start), tuple(stride), tuple(size)

        def call(self, x):
            (h0, w0), (sh, sw), (oh, ow) = self.start, self.stride, self.size
            return x[:, h0:h0 + (oh - 1) * sh + 1:sh, w0:w0 + (ow - 1) * sw + 1:sw, :]

        def get_config(self):
            return {**super().get_config(), "start": self.start, "stride": self.stride,
                    "size": self.size}

    return SimpleNamespace(Elementwise=Elementwise, SpatialSlice=SpatialSlice)


# ----------------------------------------------------------------------------- helpers

def keras_input(x_nchw: np.ndarray | torch.Tensor) -> np.ndarray:
    """NCHW batch (numpy or torch) -> contiguous NHWC float32, the Keras/TFLite input."""
    x = x_nchw.detach().cpu().numpy() if isinstance(x_nchw, torch.Tensor) else np.asarray(x_nchw)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch; got shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def torch_output_like(y_keras: Any) -> np.ndarray:
    """Keras/TFLite output -> PyTorch layout (NHWC -> NCHW for 4-D; 2-D unchanged)."""
    y = np.asarray(y_keras.numpy() if hasattr(y_keras, "numpy") else y_keras)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if y.ndim == 4 else y


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected 2 values; got {v}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


class _Value:
    """A traced value: a Keras tensor plus what PyTorch would see (shape) and a sign hint."""

    def __init__(self, tensor: Any, nonneg: bool = False):
        self.t = tensor
        self.nonneg = nonneg  # values >= 0 (after ReLU...): lets max-pool pad with zeros

    @property
    def ndim(self) -> int:
        return len(self.t.shape)

    @property
    def torch_shape(self) -> tuple[int, ...]:
        s = tuple(int(d) for d in self.t.shape)
        return (s[0], s[3], s[1], s[2]) if len(s) == 4 else s


def _tf_same_matches(size: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                     pads: tuple[tuple[int, int], tuple[int, int]], out: tuple[int, int]) -> bool:
    """Does TF's 'same' pooling place PyTorch's windows (same count, same first offset)?"""
    return all(-(-n // st) == o and max((o - 1) * st + kk - n, 0) // 2 == pp[0]
               for n, kk, st, pp, o in zip(size, k, s, pads, out))


# ----------------------------------------------------------------------------- tracing

class _Tracer(fx.Tracer):
    """fx tracer that keeps torchvision's StochasticDepth whole (identity in eval)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m).__name__ == "StochasticDepth":
            return True
        return super().is_leaf_module(m, qualname)


SUPPORTED_MODULES = (
    "Conv2d", "BatchNorm2d", "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "Sigmoid",
    "Tanh", "Identity", "Dropout", "Dropout2d", "StochasticDepth", "AdaptiveAvgPool2d",
    "MaxPool2d", "AvgPool2d", "Linear", "Flatten")
SUPPORTED_FUNCTIONS = (
    "operator.add/iadd/sub/isub/mul/imul/truediv (tensors broadcast, or a scalar)",
    "torch.add/sub/mul/div/cat(dim=1)/flatten/reshape/mean/relu/sigmoid/tanh",
    "F.relu/relu6/hardswish/hardsigmoid/silu/sigmoid/tanh/dropout(eval)/"
    "adaptive_avg_pool2d/max_pool2d/avg_pool2d", "torchvision stochastic_depth (eval)",
    "Tensor methods flatten/view/reshape/mean/size/shape/contiguous/clone/relu/sigmoid/tanh/"
    "add/sub/mul/div")


def _unsupported(node: fx.Node, what: str, why: str = "") -> ExportError:
    return ExportError(
        f"cannot export node {node.name!r} ({node.op} {what}){': ' + why if why else ''}. "
        f"Supported modules: {', '.join(SUPPORTED_MODULES)}; functions: "
        f"{'; '.join(SUPPORTED_FUNCTIONS)}.")


class _Builder:
    """Emits Keras layers for fx nodes; ``env`` maps node names to _Value or Python values."""

    def __init__(self, gm: fx.GraphModule, keras_mod):
        self.gm = gm
        self.L = keras_mod.layers
        self.C = _custom_layers(keras_mod)
        self.env: dict[str, Any] = {}
        self.node: fx.Node | None = None
        self.used: set[str] = set()

    # -- small emitters ---------------------------------------------------------
    def err(self, what: str, why: str = "") -> ExportError:
        assert self.node is not None
        return _unsupported(self.node, what, why)

    def name(self, suffix: str = "") -> str:
        """A unique layer name from the fx node name; TF scope names must not start with '_'
        (fx names ``nn.Sequential`` children ``_0``, ``_1``...)."""
        assert self.node is not None
        base = self.node.name + suffix
        base = base if base[0].isalnum() else "n" + base
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def relu6(self, t, suffix: str = "_relu6"):
        return self.L.ReLU(max_value=6.0, name=self.name(suffix))(t)

    def hardsigmoid(self, t):
        # relu6(x + 3) * (1/6): the form TFLite's converter recognises (torch's slope 1/6)
        t = self.C.Elementwise("add", 3.0, name=self.name("_add3"))(t)
        return self.C.Elementwise("multiply", 1.0 / 6.0, name=self.name("_div6"))(self.relu6(t))

    def activation(self, kind: str, v: _Value) -> _Value:
        t, L = v.t, self.L
        if kind == "relu":
            return _Value(L.ReLU(name=self.name())(t), nonneg=True)
        if kind == "relu6":
            return _Value(self.relu6(t, ""), nonneg=True)
        if kind == "hardsigmoid":
            return _Value(self.hardsigmoid(t), nonneg=True)
        if kind == "hardswish":
            return _Value(L.Multiply(name=self.name())([t, self.hardsigmoid(t)]))
        if kind == "silu":
            return _Value(L.Activation("silu", name=self.name())(t))
        if kind == "sigmoid":
            return _Value(L.Activation("sigmoid", name=self.name())(t), nonneg=True)
        if kind == "tanh":
            return _Value(L.Activation("tanh", name=self.name())(t))
        raise AssertionError(kind)

    def pad(self, v: _Value, pads: tuple[tuple[int, int], tuple[int, int]]) -> Any:
        if all(p == 0 for pp in pads for p in pp):
            return v.t
        return self.L.ZeroPadding2D(pads, name=self.name("_pad"))(v.t)

    def as_tensor(self, a: Any, what: str) -> _Value:
        if not isinstance(a, _Value):
            raise self.err(what, f"expected a tensor argument, got {type(a).__name__}")
        return a

    # -- modules ----------------------------------------------------------------
    def conv2d(self, m: nn.Conv2d, v: _Value) -> _Value:
        if v.ndim != 4:
            raise self.err("Conv2d", f"input must be 4-D, got {v.torch_shape}")
        if m.padding_mode != "zeros":
            raise self.err("Conv2d", f"padding_mode {m.padding_mode!r} (only 'zeros')")
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride)
        dh, dw = _pair(m.dilation)
        if (dh, dw) != (1, 1) and (sh, sw) != (1, 1):
            raise self.err("Conv2d", "dilation > 1 together with stride > 1 (Keras forbids)")
        if isinstance(m.padding, str):  # 'valid' or 'same' (stride 1 only in PyTorch)
            tot_h, tot_w = (0, 0) if m.padding == "valid" else (dh * (kh - 1), dw * (kw - 1))
            pads = ((tot_h // 2, tot_h - tot_h // 2), (tot_w // 2, tot_w - tot_w // 2))
        else:
            ph, pw = _pair(m.padding)
            pads = ((ph, ph), (pw, pw))
        x = self.pad(v, pads)  # (1, H + 2ph, W + 2pw, Cin)
        w = _np(m.weight)  # (Cout, Cin / groups, kh, kw)
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        weights: list[np.ndarray]
        common = dict(kernel_size=(kh, kw), strides=(sh, sw), padding="valid",
                      dilation_rate=(dh, dw), use_bias=m.bias is not None, name=self.name())
        if g == cin and g > 1 and cout % cin == 0:  # depthwise (multiplier cout / cin)
            mult = cout // cin
            layer = self.L.DepthwiseConv2D(depth_multiplier=mult, **common)
            # torch output channel i * mult + j reads input i; Keras kernel (kh, kw, cin, mult)
            weights = [w.reshape(cin, mult, kh, kw).transpose(2, 3, 0, 1)]
        else:
            layer = self.L.Conv2D(cout, groups=g, **common)
            weights = [w.transpose(2, 3, 1, 0)]  # (kh, kw, Cin / groups, Cout)
        if m.bias is not None:
            weights.append(_np(m.bias))
        y = layer(x)  # (1, H', W', Cout)
        layer.set_weights(weights)
        return _Value(y)

    def batchnorm(self, m: nn.BatchNorm2d, v: _Value) -> _Value:
        if v.ndim != 4:
            raise self.err("BatchNorm2d", f"input must be 4-D, got {v.torch_shape}")
        if m.running_mean is None or m.running_var is None:
            raise self.err("BatchNorm2d", "track_running_stats=False uses batch statistics")
        layer = self.L.BatchNormalization(axis=-1, epsilon=float(m.eps), center=m.affine,
                                          scale=m.affine, name=self.name())
        y = layer(v.t)
        ws = [_np(m.weight), _np(m.bias)] if m.affine else []
        layer.set_weights(ws + [_np(m.running_mean), _np(m.running_var)])
        return _Value(y)

    def linear(self, m: nn.Linear, v: _Value) -> _Value:
        if v.ndim != 2:
            raise self.err("Linear", f"only (1, features) inputs are supported, got "
                           f"{v.torch_shape}")
        layer = self.L.Dense(m.out_features, use_bias=m.bias is not None, name=self.name())
        y = layer(v.t)  # (1, out_features)
        layer.set_weights([_np(m.weight).T] + ([_np(m.bias)] if m.bias is not None else []))
        return _Value(y)

    def global_pool(self, v: _Value, keepdims: bool = True) -> _Value:
        if v.ndim != 4:
            raise self.err("global average pooling", f"input must be 4-D, got {v.torch_shape}")
        y = self.L.GlobalAveragePooling2D(keepdims=keepdims, name=self.name())(v.t)
        return _Value(y, nonneg=v.nonneg)  # (1, 1, 1, C) or (1, C)

    def adaptive_avg(self, v: _Value, output_size: Any) -> _Value:
        oh, ow = _pair(output_size if output_size is not None else 1)
        _, _, h, w = v.torch_shape
        if (oh, ow) == (1, 1):
            return self.global_pool(v)
        if h % oh or w % ow:
            raise self.err("adaptive_avg_pool2d", f"output {(oh, ow)} does not divide {(h, w)}")
        y = self.L.AveragePooling2D((h // oh, w // ow), name=self.name())(v.t)
        return _Value(y, nonneg=v.nonneg)

    def pool(self, kind: str, v: _Value, kernel: Any, stride: Any, padding: Any,
             dilation: Any = 1, ceil_mode: bool = False, count_include_pad: bool = True,
             divisor_override: Any = None) -> _Value:
        """Max/avg pooling with exactly PyTorch's windows and divisors.

        Padded cells must never win a max, and count in an average only with
        ``count_include_pad`` (cells that ``ceil_mode`` adds never count). In order of
        preference: no padding -> 'valid'; TF's 'same' where it places PyTorch's windows (TF
        ignores padded cells); zero padding + 'valid' (max: after a ReLU-like op; avg: with
        ``count_include_pad``); else a stride-1 'same' pool and a strided slice (exact, s^2
        times the pooling work). No constant padding: a huge negative pad value would enter
        the INT8 calibration range (XNNPACK then refuses the graph)."""
        if v.ndim != 4:
            raise self.err(kind, f"input must be 4-D, got {v.torch_shape}")
        k = _pair(kernel)
        s = _pair(stride if stride not in (None, [], ()) else kernel)
        p = _pair(padding)
        if _pair(dilation) != (1, 1):
            raise self.err(kind, "dilation > 1")
        if divisor_override is not None:
            raise self.err(kind, "divisor_override")
        _, _, h, w = v.torch_shape
        # PyTorch's output size; with ceil_mode the last window must start inside the input
        # or the left padding
        rnd = math.ceil if ceil_mode else math.floor
        out = tuple(rnd((n + 2 * pp - kk) / st) + 1 for n, pp, kk, st in zip((h, w), p, k, s))
        if ceil_mode:
            out = tuple(o - ((o - 1) * st >= n + pp) for o, st, n, pp in zip(out, s, (h, w), p))
        extra = tuple(max((o - 1) * st + kk - (n + 2 * pp), 0)
                      for o, st, kk, n, pp in zip(out, s, k, (h, w), p))
        pads = ((p[0], p[0] + extra[0]), (p[1], p[1] + extra[1]))
        is_max = kind == "max_pool2d"
        layer = self.L.MaxPooling2D if is_max else self.L.AveragePooling2D
        nonneg = v.nonneg
        ignore_pad = is_max or not count_include_pad or p == (0, 0)
        if not any(extra) and p == (0, 0):
            y = layer(k, s, padding="valid", name=self.name())(v.t)
        elif ignore_pad and _tf_same_matches((h, w), k, s, pads, out):
            y = layer(k, s, padding="same", name=self.name())(v.t)
        elif is_max and nonneg:
            y = layer(k, s, padding="valid", name=self.name())(self.pad(v, pads))
        elif not is_max and count_include_pad and (not any(extra) or _tf_same_matches(
                (h + 2 * p[0], w + 2 * p[1]), k, s, ((0, extra[0]), (0, extra[1])), out)):
            # zeros that count; TF 'same' then drops the uncounted ceil_mode cells
            x = self.pad(v, ((p[0], p[0]), (p[1], p[1])))  # (1, H + 2p, W + 2p, C)
            y = layer(k, s, padding="same" if any(extra) else "valid", name=self.name())(x)
        else:
            # stride-1 'same' window j starts at j - (k-1)//2; PyTorch's window i at i*s - p
            start = tuple((kk - 1) // 2 - pp for kk, pp in zip(k, p))
            if not ignore_pad or not all(0 <= j0 and j0 + (o - 1) * st <= n - 1
                                         for j0, st, o, n in zip(start, s, out, (h, w))):
                raise self.err(kind, f"kernel {k}, stride {s}, padding {p}, "
                               f"ceil_mode={ceil_mode}, count_include_pad="
                               f"{count_include_pad} on a {h}x{w} input")
            y = layer(k, 1, padding="same", name=self.name("_s1"))(v.t)  # (1, H, W, C)
            y = self.C.SpatialSlice(start, s, out, name=self.name())(y)  # (1, oh, ow, C)
        return _Value(y, nonneg=nonneg)

    def flatten(self, v: _Value, start: int = 1, end: int = -1) -> _Value:
        end = end + v.ndim if end < 0 else end
        if start != 1 or end != v.ndim - 1:
            raise self.err("flatten", f"only flatten from dim 1 to the end (got {start}..{end})")
        if v.ndim == 2:
            return v
        _, c, h, w = v.torch_shape
        if h * w != 1:
            raise self.err("flatten", f"flattening a spatial tensor {v.torch_shape}: NCHW and "
                           "NHWC element orders differ; pool to (1, C, 1, 1) first")
        return _Value(self.L.Flatten(name=self.name())(v.t), nonneg=v.nonneg)  # (1, C)

    def call_module(self, node: fx.Node) -> Any:
        m = self.gm.get_submodule(str(node.target))
        kind = type(m).__name__
        args = [self.env_arg(a) for a in node.args]
        if len(args) != 1 or node.kwargs:
            raise self.err(kind, "expected exactly one tensor argument")
        v = self.as_tensor(args[0], kind)
        acts = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish",
                nn.Hardsigmoid: "hardsigmoid", nn.SiLU: "silu", nn.Sigmoid: "sigmoid",
                nn.Tanh: "tanh"}
        if type(m) in acts:
            return self.activation(acts[type(m)], v)
        if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)) or kind == "StochasticDepth":
            return v  # identity at inference (eval mode)
        if type(m) is nn.Conv2d:
            return self.conv2d(m, v)
        if type(m) is nn.BatchNorm2d:
            return self.batchnorm(m, v)
        if type(m) is nn.Linear:
            return self.linear(m, v)
        if type(m) is nn.AdaptiveAvgPool2d:
            return self.adaptive_avg(v, m.output_size)
        if type(m) is nn.MaxPool2d:
            if m.return_indices:
                raise self.err(kind, "return_indices=True")
            return self.pool("max_pool2d", v, m.kernel_size, m.stride, m.padding, m.dilation,
                             m.ceil_mode)
        if type(m) is nn.AvgPool2d:
            return self.pool("avg_pool2d", v, m.kernel_size, m.stride, m.padding, 1,
                             m.ceil_mode, m.count_include_pad, m.divisor_override)
        if type(m) is nn.Flatten:
            return self.flatten(v, m.start_dim, m.end_dim)
        raise self.err(f"module {node.target} of type {type(m).__module__}.{kind}",
                       "unsupported layer")

    # -- functions and methods --------------------------------------------------
    def binary(self, op: str, a: Any, b: Any) -> Any:
        """Elementwise add/sub/mul/div with NHWC broadcasting ((1,1,1,C) * (1,H,W,C) in SE)."""
        if not isinstance(a, _Value) and not isinstance(b, _Value):
            return {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
                    "div": operator.truediv}[op](a, b)
        for s in (a, b):
            if not isinstance(s, (_Value, int, float)):
                raise self.err(op, f"operand of type {type(s).__name__}")
        if isinstance(a, _Value) and isinstance(b, _Value) and a.ndim != b.ndim:
            raise self.err(op, f"operands of rank {a.ndim} and {b.ndim}")
        kop = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}[op]
        if isinstance(a, _Value) and isinstance(b, _Value):
            # Keras' merge layers broadcast, e.g. SE's (1, 1, 1, C) * (1, H, W, C)
            layer = {"add": self.L.Add, "sub": self.L.Subtract, "mul": self.L.Multiply}.get(op)
            y = (layer(name=self.name())([a.t, b.t]) if layer else
                 self.C.Elementwise(kop, name=self.name())(a.t, b.t))
        elif isinstance(a, _Value):
            y = self.C.Elementwise(kop, float(b), name=self.name())(a.t)
        else:
            y = self.C.Elementwise(kop, float(a), reverse=True, name=self.name())(b.t)
        nonneg = (op in ("add", "mul") and all(isinstance(s, _Value) and s.nonneg
                                               or not isinstance(s, _Value) and s >= 0
                                               for s in (a, b)))
        return _Value(y, nonneg=nonneg)

    def mean(self, v: _Value, dim: Any, keepdim: bool = False) -> _Value:
        dims = sorted(d % v.ndim for d in ((dim,) if isinstance(dim, int) else dim))
        if v.ndim != 4 or dims != [2, 3]:
            raise self.err("mean", f"only the spatial mean over dims (2, 3) of a 4-D tensor; "
                           f"got dims {dim} of {v.torch_shape}")
        return self.global_pool(v, keepdims=bool(keepdim))

    def reshape(self, v: _Value, shape: Any) -> _Value:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
            else tuple(shape)
        numel = int(np.prod(v.torch_shape))
        if len(shape) == 2 and shape[0] in (1, -1) and shape[1] in (-1, numel):
            return self.flatten(v)
        if tuple(shape) == v.torch_shape:
            return v
        raise self.err("view/reshape", f"only (1, -1) after global pooling; got {shape} for "
                       f"{v.torch_shape}")

    def cat(self, tensors: Any, dim: int = 0) -> _Value:
        vs = [self.as_tensor(t, "cat") for t in tensors]
        nd = vs[0].ndim
        if dim % nd != 1:
            raise self.err("cat", f"only along channels (dim 1); got dim {dim}")
        y = self.L.Concatenate(axis=-1, name=self.name())([v.t for v in vs])
        return _Value(y, nonneg=all(v.nonneg for v in vs))

    def call(self, node: fx.Node, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Dispatch a call_function / call_method (``fn`` is a name for methods)."""
        acts: dict[Any, str] = {
            F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish",
            F.hardsigmoid: "hardsigmoid", F.silu: "silu", torch.sigmoid: "sigmoid",
            F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
            "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
        binaries: dict[Any, str] = {
            operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add",
            operator.sub: "sub", operator.isub: "sub", torch.sub: "sub", "sub": "sub",
            operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", "mul": "mul",
            operator.truediv: "div", torch.div: "div", "div": "div"}
        name = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
        if fn in acts:  # an ``inplace`` flag changes nothing in a functional graph
            return self.activation(acts[fn], self.as_tensor(args[0], name))
        if fn in binaries:
            if kwargs.get("alpha", 1) != 1 or kwargs.get("rounding_mode") is not None:
                raise self.err(name, "alpha / rounding_mode")
            return self.binary(binaries[fn], *args[:2])
        if fn is getattr and isinstance(args[0], _Value):
            if args[1] != "shape":
                raise self.err(f"getattr {args[1]}", "only .shape of a tensor")
            return self.as_tensor(args[0], name).torch_shape
        if fn is operator.getitem:
            if isinstance(args[0], _Value):
                raise self.err("getitem", "tensor slicing/indexing")
            return args[0][args[1]]
        if fn in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            return self.flatten(self.as_tensor(args[0], name), start, end)
        if fn in ("view", "reshape", torch.reshape):
            shape = args[1:] if fn != torch.reshape else (args[1],)
            return self.reshape(self.as_tensor(args[0], name), shape or (kwargs["shape"],))
        if fn in (torch.mean, "mean"):
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim is None:
                raise self.err("mean", "mean over all dims")
            keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
            return self.mean(self.as_tensor(args[0], name), dim, keep)
        if fn is torch.cat:
            return self.cat(args[0], args[1] if len(args) > 1 else kwargs.get("dim", 0))
        if fn == "size":
            shape = self.as_tensor(args[0], name).torch_shape
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return shape if dim is None else shape[dim]
        if fn in ("contiguous", "clone", F.dropout, torch.dropout):
            if fn in (F.dropout, torch.dropout) and (
                    kwargs.get("training", args[2] if len(args) > 2 else True)):
                raise self.err(name, "dropout with training=True")
            return args[0]
        if fn is F.adaptive_avg_pool2d:
            return self.adaptive_avg(self.as_tensor(args[0], name),
                                     args[1] if len(args) > 1 else kwargs["output_size"])
        if fn in (F.max_pool2d, F.avg_pool2d):
            keys = (("kernel_size", None), ("stride", None), ("padding", 0)) + (
                (("dilation", 1), ("ceil_mode", False), ("return_indices", False))
                if fn is F.max_pool2d else
                (("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None)))
            p = {k: args[i + 1] if i + 1 < len(args) else kwargs.get(k, d)
                 for i, (k, d) in enumerate(keys)}
            v = self.as_tensor(args[0], name)
            if fn is F.max_pool2d:
                if p["return_indices"]:
                    raise self.err(name, "return_indices=True")
                return self.pool("max_pool2d", v, p["kernel_size"], p["stride"], p["padding"],
                                 p["dilation"], p["ceil_mode"])
            return self.pool("avg_pool2d", v, p["kernel_size"], p["stride"], p["padding"], 1,
                             p["ceil_mode"], p["count_include_pad"], p["divisor_override"])
        if name == "stochastic_depth":  # torchvision.ops.stochastic_depth(x, p, mode, training)
            training = args[3] if len(args) > 3 else kwargs.get("training", True)
            prob = args[1] if len(args) > 1 else kwargs.get("p", 0.0)
            if training and prob > 0:
                raise self.err(name, "stochastic depth in training mode")
            return args[0]
        raise self.err(f"{'method' if isinstance(fn, str) else 'function'} "
                       f"{getattr(fn, '__module__', '') or ''}.{name}".replace(" .", " "),
                       "unsupported operation")

    def env_arg(self, a: Any) -> Any:
        """Replace fx nodes (also inside lists/tuples) by their values."""
        if isinstance(a, fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.env_arg(x) for x in a)
        return a

    def run(self, inputs: Any) -> list[Any]:
        outputs: list[Any] = []
        placeholders = 0
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    raise self.err(str(node.target), "only one input is supported")
                self.env[node.name] = _Value(inputs)
            elif node.op == "call_module":
                self.env[node.name] = self.call_module(node)
            elif node.op == "call_function":
                self.env[node.name] = self.call(node, node.target, self.env_arg(node.args),
                                                self.env_arg(dict(node.kwargs)))
            elif node.op == "call_method":
                self.env[node.name] = self.call(node, str(node.target),
                                                self.env_arg(node.args),
                                                self.env_arg(dict(node.kwargs)))
            elif node.op == "get_attr":
                raise self.err(str(node.target),
                               "parameters/buffers used outside supported modules")
            elif node.op == "output":
                out = self.env_arg(node.args[0])
                outs = list(out) if isinstance(out, (list, tuple)) else [out]
                for o in outs:
                    self.as_tensor(o, "output")
                outputs = [o.t for o in outs]
        return outputs


def to_keras(module: nn.Module, input_shape: tuple[int, int, int, int],
             name: str | None = None) -> keras.Model:
    """Mirror ``module`` (eval mode, a deep copy) into a Keras model taking NHWC input.

    ``input_shape`` is the PyTorch NCHW shape with batch 1; the Keras model takes
    ``(1, H, W, C)`` and returns NHWC for 4-D outputs and ``(1, features)`` for 2-D ones.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or shape[0] != 1 or min(shape) <= 0:
        raise ValueError(f"input_shape must be NCHW with batch 1, e.g. (1, 3, 224, 224); "
                         f"got {input_shape}")
    keras_mod = _keras()
    m = copy.deepcopy(module).eval()
    tracer = _Tracer()
    if tracer.is_leaf_module(m, ""):  # a bare nn.Conv2d would trace into F.conv2d + weights
        m = nn.Sequential(m)
    try:
        graph = tracer.trace(m)
    except Exception as e:  # data-dependent control flow and the like
        raise ExportError(f"torch.fx cannot trace {type(module).__name__}: {e}") from e
    gm = fx.GraphModule(m, graph)
    _, c, h, w = shape
    x = keras_mod.Input(shape=(h, w, c), batch_size=1, name="input")  # (1, H, W, C)
    with torch.no_grad():
        outputs = _Builder(gm, keras_mod).run(x)
    model_name = name or type(module).__name__
    return keras_mod.Model(x, outputs[0] if len(outputs) == 1 else outputs, name=model_name)
