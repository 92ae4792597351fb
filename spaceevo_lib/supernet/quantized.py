"""LSQ+ on elastic (weight-sharing) networks, by module swapping.

An elastic network's shapes change with the active setting, so it cannot be traced and the
per-tensor placement of :mod:`spaceevo_lib.quant.prepare` does not apply. The paper's
reference code quantizes these networks at the **inputs and weights of every convolution**
(paper-notes §3.6), and so does :func:`quantize_elastic`: each
:class:`~spaceevo_lib.supernet.elastic.DynamicConv2d` becomes a :class:`QDynamicConv2d` with
the same weights, an activation quantizer on its input and a per-tensor weight quantizer on its
active (sliced) weight, shared by every setting as in the reference. The quantizers are the
same :mod:`spaceevo_lib.quant.lsq` classes the static networks use. Deployed files are made
from extracted static subnets, quantized by :mod:`spaceevo_lib.quant.prepare`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..quant.lsq import ActQuantizer, Quantizer, WeightQuantizer
from .elastic import DynamicConv2d, DynamicLinear


class QDynamicConv2d(DynamicConv2d):
    """DynamicConv2d with LSQ+ fake quantization of its input and its active weight."""

    @classmethod
    def from_dynamic(cls, conv: DynamicConv2d) -> "QDynamicConv2d":
        q = cls(conv.max_in, conv.max_out, conv.max_kernel, conv.stride, conv.depthwise,
                conv.bias is not None)
        q.load_state_dict(conv.state_dict())
        q.input_quantizer = ActQuantizer()
        q.weight_quantizer = WeightQuantizer(1, per_channel=False)
        return q.train(conv.training)

    def _eval_weight(self) -> torch.Tensor:
        """The whole shared weight on its int8 grid, cached while weight and scale are
        unchanged: per-tensor fake quantization is elementwise, so the active slice of it is
        the fake-quantized active slice (a table samples hundreds of settings per student)."""
        key = (self.weight._version, self.weight_quantizer.scale._version,
               self.weight.data_ptr(), self.weight_quantizer.scale.data_ptr())
        if getattr(self, "_cache_key", None) != key:
            self._cache = self.weight_quantizer(self.weight).detach()
            self._cache_key = key
        return self._cache

    def active_weight_quantized(self, cin: int, cout: int, k: int) -> torch.Tensor:
        if self.training or self.weight_quantizer.per_channel:
            return self.weight_quantizer(self.active_weight(cin, cout, k))
        self.active_weight(cin, cout, k)  # (checks the shape)
        s = (self.max_kernel - k) // 2
        return self._eval_weight()[:cout, :1 if self.depthwise else cin, s:s + k, s:s + k]

    def forward(self, x: torch.Tensor, out_channels: int | None = None,
                kernel_size: int | None = None) -> torch.Tensor:  # (B, C, H, W)
        cin = x.shape[1]
        cout = cin if self.depthwise else (out_channels or self.max_out)
        k = kernel_size or self.max_kernel
        w = self.active_weight_quantized(cin, cout, k)
        b = None if self.bias is None else self.bias[:cout]
        return F.conv2d(self.input_quantizer(x), w, b, self.stride, k // 2,
                        groups=cin if self.depthwise else 1)


class QDynamicLinear(DynamicLinear):
    """DynamicLinear (a supernet's classifier) with LSQ+ fake quantization of its input and its
    active weight, as the reference quantizes every linear layer."""

    @classmethod
    def from_dynamic(cls, lin: DynamicLinear) -> "QDynamicLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None)
        q.load_state_dict(lin.state_dict())
        q.input_quantizer = ActQuantizer()
        q.weight_quantizer = WeightQuantizer(1, per_channel=False)
        return q.train(lin.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N)
        n = x.shape[-1]
        if n > self.in_features:
            raise ValueError(f"input has {n} features; this layer holds {self.in_features}")
        return F.linear(self.input_quantizer(x), self.weight_quantizer(self.weight[:, :n]),
                        self.bias)


def quantize_elastic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every DynamicConv2d and DynamicLinear swapped for its LSQ+
    version (same weights; quantizers initialise on the first training-mode forward)."""
    model = copy.deepcopy(model)
    kinds = {DynamicConv2d: QDynamicConv2d, DynamicLinear: QDynamicLinear}
    swaps = [(name, m) for name, m in model.named_modules() if type(m) in kinds]
    for name, m in swaps:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                kinds[type(m)].from_dynamic(m))
    if not swaps:
        raise ValueError("quantize_elastic: the model has no elastic conv or linear layer")
    return model


@torch.no_grad()
def initialise_quantizers(model: nn.Module, inputs_for, seed: int = 0,
                          max_settings: int = 32) -> int:
    """Min-max initialise every LSQ+ quantizer of an elastic ``model`` (a quantized supernet or
    stage student: ``sample_max``/``sample_min``/``sample_random``) before its INT8 training:
    the max setting first (widest ranges), the min one, then random settings until every
    quantizer has seen data (a conv only some settings use, e.g. a shortcut when widths
    differ, would otherwise stay uninitialised and stop the first evaluation that uses it).
    ``inputs_for(setting)`` gives the batch a setting runs on. The model runs in training mode
    (BN on batch statistics, as in every training pass); its running statistics, which
    these passes would mix across settings, are restored afterwards. Returns how many
    quantizers no setting reached."""
    qs = [m for m in model.modules() if isinstance(m, Quantizer)]
    running = {k: v.clone() for k, v in model.state_dict().items()
               if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}
    was = model.training
    model.train()
    rng = np.random.default_rng(seed)
    for i in range(max_settings):
        if all(bool(q.initialized) for q in qs):
            break
        setting = (model.sample_max() if i == 0 else model.sample_min() if i == 1
                   else model.sample_random(rng))
        model(inputs_for(setting))
    model.load_state_dict(running, strict=False)
    model.sample_max()
    model.train(was)
    return sum(not bool(q.initialized) for q in qs)
