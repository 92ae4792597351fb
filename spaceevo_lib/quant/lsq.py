"""LSQ+ fake quantization (Bhalgat et al. 2020, arXiv 2004.09576), as deployed runtimes
read it back.

* :class:`ActQuantizer`: asymmetric unsigned 8 bit (0..255), a learnable scale ``s`` and
  offset ``b``. The offset is used **snapped to an integer zero point**
  ``zp = clamp(round(-b / s), 0, 255)``, so that the trained fake-quant network equals what a
  QuantizeLinear / DequantizeLinear pair computes in onnxruntime (a continuous offset cannot be
  exported; training-notes section 2).
* :class:`WeightQuantizer`: symmetric int8 in [-127, 127], one scale per output channel (what
  onnxruntime's QLinearConv fusion and TFLite's int8 kernels use) or one per tensor (the
  paper's reference code).

Both use the straight-through estimator for rounding and LSQ's gradient scale
``g = 1 / sqrt(N * Qp)`` (``N`` elements per sample for activations, per scale for weights).
Training runs PyTorch's fused learnable fake-quant kernels (the ones behind
``torch.ao.quantization._LearnableFakeQuantize``: one pass forward, one backward, about half
the time of the same formula in elementwise autograd ops); the offset reaches them as the
float zero point ``-b / s``, so autograd adds its path through ``s`` and ``b``. "Inside the
range" includes both end levels, as in LSQ's definition. Both quantizers take their absolute
scale clamped to at least :data:`EPS` (a scale of 0 gives inf/NaN) and initialise from the
first quantized forward in training mode: min-max for activations, max-abs for weights,
averaged across processes under torch.distributed. The ``initialized`` flag is a buffer, so
it travels with the weights in a checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EPS = 1e-8
ACT_QMAX = 255  # uint8 activations: 0..255 (TFLite int8 is the same grid shifted by 128)
WEIGHT_QMAX = 127  # int8 weights: -127..127 (symmetric, zero point 0)


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, gradient times ``g`` backward (LSQ's step-size gradient scale)."""
    return x * g + (x - x * g).detach()


def _mean_across_processes(t: torch.Tensor) -> torch.Tensor:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def fake_quantize_values(x: torch.Tensor, scale: float, zero_point: int, qmin: int,
                         qmax: int) -> torch.Tensor:
    """``torch.fake_quantize_per_tensor_affine``'s values, bit for bit (its kernel's order:
    ``(clamp(round(x * (1 / s)) + zp) - zp) * s``, float32 reciprocal, ties to even), without
    the mask it computes for the backward even under ``no_grad``: about 4x faster on CPU,
    where that op took 63 % of an INT8 subnet evaluation. For evaluation only (no gradient,
    not exported)."""
    inv = float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(scale,
                                                                      dtype=torch.float32))
    # clamp(q + zp, qmin, qmax) - zp == clamp(q, qmin - zp, qmax - zp) for the integer-valued
    # float q (exact below 2**24; beyond, both ends clamp): two passes fewer over the tensor.
    return x.mul(inv).round_().clamp_(qmin - zero_point, qmax - zero_point).mul_(scale)


class NotInitialisedError(RuntimeError):
    """A quantizer was evaluated or exported before any training-mode forward set its range."""


class Quantizer(nn.Module):
    """What every LSQ+ quantizer shares: a learned step, and a flag set by the first
    training-mode forward pass (which initialises its range)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _require_init(self) -> None:
        if not bool(self.initialized):
            raise NotInitialisedError(
                f"{type(self).__name__} was never initialised: run at least one forward pass in "
                "training mode (model.train()) on real data before evaluating or exporting")

    @property
    def step(self) -> torch.Tensor:
        """The scale actually used: |s| clamped to at least EPS."""
        return self.scale.detach().abs().clamp_min(EPS)


class ActQuantizer(Quantizer):
    """LSQ+ activation quantizer (one per tensor): learnable scale and offset, 0..255."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.offset = nn.Parameter(torch.zeros(()))

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        """Min-max range of ``x`` (widened to contain 0, so that 0.0 is exact, as the
        runtimes require for zero padding)."""
        lo, hi = x.min().clamp_max(0.0), x.max().clamp_min(0.0)
        s = ((hi - lo) / ACT_QMAX).clamp_min(EPS)
        both = _mean_across_processes(torch.stack([s, lo]).float())
        self.scale.copy_(both[0])
        self.offset.copy_(both[1])
        self.initialized.fill_(True)

    def zero_point(self) -> torch.Tensor:
        """The integer zero point the offset is snapped to (0..255)."""
        return torch.clamp(torch.round(-self.offset.detach() / self.step), 0, ACT_QMAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.initialized):
            self.initialise(x)
        self._require_init()
        if not self.training:
            if torch.is_grad_enabled() or torch.jit.is_tracing():
                # the op ONNX exports as QuantizeLinear + DequantizeLinear
                return torch.fake_quantize_per_tensor_affine(
                    x, self.step.float(), self.zero_point().to(torch.int32), 0, ACT_QMAX)
            return fake_quantize_values(x, float(self.step), int(self.zero_point()), 0,
                                        ACT_QMAX)
        g = 1.0 / math.sqrt(max(1, x[0].numel()) * ACT_QMAX)
        s = grad_scale(self.scale.abs().clamp_min(EPS), g)
        zp = torch.clamp(-grad_scale(self.offset, g) / s, 0, ACT_QMAX)  # rounded in the kernel
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, s.reshape(1), zp.reshape(1), 0, ACT_QMAX, 1.0)

    def extra_repr(self) -> str:
        return "uint8, asymmetric, learned scale and offset"


class WeightQuantizer(Quantizer):
    """LSQ+ weight quantizer: symmetric int8 (-127..127), per output channel or per tensor."""

    def __init__(self, channels: int, per_channel: bool = True) -> None:
        super().__init__()
        self.per_channel = per_channel
        self.scale = nn.Parameter(torch.ones(channels if per_channel else ()))

    @torch.no_grad()
    def initialise(self, w: torch.Tensor) -> None:
        """max|w| / 127 per scale (the reference code's tuple-repetition quirk, which starts
        from half the maximum, is not reproduced)."""
        a = w.detach().abs()
        m = a.flatten(1).amax(1) if self.per_channel else a.max()
        self.scale.copy_(_mean_across_processes((m / WEIGHT_QMAX).clamp_min(EPS).float()))
        self.initialized.fill_(True)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.initialized):
            self.initialise(w)
        self._require_init()
        if not self.training:
            return self.fake_quantized(w)
        per_scale = w[0].numel() if self.per_channel else w.numel()
        g = 1.0 / math.sqrt(per_scale * WEIGHT_QMAX)
        s = grad_scale(self.scale.abs().clamp_min(EPS), g).reshape(-1)
        zp = torch.zeros_like(s)
        if self.per_channel:
            return torch._fake_quantize_learnable_per_channel_affine(
                w, s, zp, 0, -WEIGHT_QMAX, WEIGHT_QMAX, 1.0)
        return torch._fake_quantize_learnable_per_tensor_affine(
            w, s, zp, -WEIGHT_QMAX, WEIGHT_QMAX, 1.0)

    def integer_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The int8 values (-127..127) the runtimes store."""
        s = self.step.view(-1, *([1] * (w.dim() - 1))) if self.per_channel else self.step
        return torch.clamp(torch.round(w.detach() / s), -WEIGHT_QMAX, WEIGHT_QMAX).to(torch.int8)

    def fake_quantized(self, w: torch.Tensor) -> torch.Tensor:
        """Eval form: the weight on its int8 grid, through the fake-quant op that ONNX exports
        as QuantizeLinear + DequantizeLinear (the values are already on the grid, so the
        exported range -128..127 changes nothing)."""
        q = self.integer_weight(w).to(w.dtype)
        if self.per_channel:
            s = self.step.float()
            return torch.fake_quantize_per_channel_affine(
                q * s.view(-1, *([1] * (w.dim() - 1))), s,
                torch.zeros_like(s, dtype=torch.int32), 0, -128, 127)
        return torch.fake_quantize_per_tensor_affine(q * self.step, self.step.float(),
                                                     torch.zeros((), dtype=torch.int32),
                                                     -128, 127)

    def extra_repr(self) -> str:
        return f"int8, symmetric, {'per channel' if self.per_channel else 'per tensor'}"
