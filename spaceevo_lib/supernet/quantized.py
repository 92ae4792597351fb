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

import torch
import torch.nn.functional as F
from torch import nn

from ..quant.lsq import ActQuantizer, WeightQuantizer
from .elastic import DynamicConv2d


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


def quantize_elastic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every DynamicConv2d swapped for a QDynamicConv2d (same
    weights; quantizers initialise on the first training-mode forward)."""
    model = copy.deepcopy(model)
    swaps = [(name, m) for name, m in model.named_modules() if type(m) is DynamicConv2d]
    for name, m in swaps:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                QDynamicConv2d.from_dynamic(m))
    if not swaps:
        raise ValueError("quantize_elastic: the model has no DynamicConv2d to quantize")
    return model
