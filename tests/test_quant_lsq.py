"""LSQ+ quantizers: forward values equal PyTorch's fake-quant ops (what QDQ export emits),
gradients are LSQ+'s, initialisation and its flag travel with the weights, bad use is refused."""

from __future__ import annotations

import math

import pytest
import torch

from spaceevo_lib.quant import (ACT_QMAX, WEIGHT_QMAX, ActQuantizer, NotInitialisedError,
                                WeightQuantizer)


def _x(seed=0, shape=(4, 8, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 2 + 0.5


def test_activation_init_is_min_max_with_zero_inside():
    x = _x()
    q = ActQuantizer().train()
    q(x)
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    assert bool(q.initialized)
    assert q.scale.item() == pytest.approx((hi - lo) / ACT_QMAX)
    assert q.offset.item() == pytest.approx(lo)
    relu = ActQuantizer().train()
    relu(x.clamp_min(0))  # a post-ReLU tensor: zero point 0
    assert relu.zero_point().item() == 0


def test_activation_forward_equals_torch_fake_quant_with_the_snapped_zero_point():
    x = _x(1)
    q = ActQuantizer().train()
    q(x)
    with torch.no_grad():
        q.offset.add_(0.37 * q.scale)  # an offset between two zero points
    q.eval()
    zp = int(q.zero_point())
    want = torch.fake_quantize_per_tensor_affine(x, float(q.step), zp, 0, ACT_QMAX)
    assert torch.allclose(q(x), want, atol=1e-6)
    assert torch.unique(torch.round(q(x) / q.step + zp)).numel() <= ACT_QMAX + 1


def test_weight_forward_equals_torch_per_channel_fake_quant():
    w = _x(2, (6, 3, 3, 3))
    for per_channel in (True, False):
        q = WeightQuantizer(6, per_channel).train()
        out = q(w)
        m = w.abs().flatten(1).amax(1) if per_channel else w.abs().max()
        assert torch.allclose(q.step, m / WEIGHT_QMAX)
        if per_channel:
            want = torch.fake_quantize_per_channel_affine(
                w, q.step, torch.zeros(6, dtype=torch.int32), 0, -WEIGHT_QMAX, WEIGHT_QMAX)
        else:
            want = torch.fake_quantize_per_tensor_affine(w, float(q.step), 0, -WEIGHT_QMAX,
                                                         WEIGHT_QMAX)
        assert torch.allclose(out, want, atol=1e-7)


def test_activation_gradients_are_lsq_plus():
    """Inside the range: d/ds = round(u) - u, d/db = 0; above it: d/ds ~ the clip bound
    (255 - zp + b/s... = 255 when the offset sits on its zero point), d/db = 1; both times
    LSQ's gradient scale g = 1 / sqrt(N * Qp)."""
    q = ActQuantizer()
    with torch.no_grad():
        q.scale.fill_(0.1)
        q.offset.fill_(-1.0)  # zero point 10, range [-1.0, 24.5]
        q.initialized.fill_(True)
    x = torch.tensor([[0.234, 3.3333, -0.5, 100.0]])
    g = 1 / math.sqrt(4 * ACT_QMAX)
    out = q(x)
    grads_s, grads_b = [], []
    for i in range(4):
        gs, gb = torch.autograd.grad(out[0, i], (q.scale, q.offset), retain_graph=True)
        grads_s.append(gs.item() / g)
        grads_b.append(gb.item() / g)
    u = x[0, :3] / 0.1
    assert grads_s[:3] == pytest.approx((torch.round(u) - u).tolist(), abs=1e-4)
    assert grads_b[:3] == pytest.approx([0, 0, 0], abs=1e-6)
    assert grads_s[3] == pytest.approx(ACT_QMAX, rel=1e-4)
    assert grads_b[3] == pytest.approx(1.0, rel=1e-4)
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(q(xg).sum(), xg)
    assert gx.tolist() == [[1.0, 1.0, 1.0, 0.0]]  # straight through inside, zero when clipped


def test_weight_gradient_inside_is_round_minus_value_times_gradient_scale():
    q = WeightQuantizer(1, per_channel=True)
    with torch.no_grad():
        q.scale.fill_(0.05)
        q.initialized.fill_(True)
    w = torch.tensor([[0.123, -0.0777, 9.0]])
    out = q(w)
    g = 1 / math.sqrt(3 * WEIGHT_QMAX)
    gs = [torch.autograd.grad(out[0, i], q.scale, retain_graph=True)[0].item() / g
          for i in range(3)]
    u = w[0, :2] / 0.05
    assert gs[:2] == pytest.approx((torch.round(u) - u).tolist(), abs=1e-4)
    assert gs[2] == pytest.approx(WEIGHT_QMAX, rel=1e-5)


def test_state_travels_with_the_weights_and_uninitialised_use_is_refused():
    q = ActQuantizer().train()
    q(_x(3))
    fresh = ActQuantizer()
    fresh.load_state_dict(q.state_dict())
    assert bool(fresh.initialized) and fresh.scale.item() == q.scale.item()
    with pytest.raises(NotInitialisedError, match="training mode"):
        ActQuantizer().eval()(_x())
    with pytest.raises(NotInitialisedError, match="never initialised"):
        WeightQuantizer(4).eval()(_x(0, (4, 2, 1, 1)))


def test_a_zero_or_negative_scale_stays_finite():
    q = ActQuantizer()
    with torch.no_grad():
        q.scale.fill_(0.0)
        q.initialized.fill_(True)
    assert torch.isfinite(q(_x())).all()
    w = WeightQuantizer(6)
    with torch.no_grad():
        w.scale.fill_(-0.02)  # |s| is used
        w.initialized.fill_(True)
    assert torch.allclose(w(torch.full((6, 2, 1, 1), -5.0)), torch.tensor(-0.02 * WEIGHT_QMAX))


def test_values_on_the_end_levels_count_as_inside():
    """LSQ's range is inclusive: a value rounding exactly to level 0 or 255 is not clipped, so
    its gradient passes straight through and its scale gradient is round(u) - u."""
    q = ActQuantizer()
    with torch.no_grad():
        q.scale.fill_(0.1)
        q.offset.fill_(-1.0)  # zero point 10: levels 0 and 255 are -1.0 and 24.5
        q.initialized.fill_(True)
    x = torch.tensor([[-0.98, 24.47, 24.56]], requires_grad=True)  # u = -9.8, 244.7, 245.6
    out = q(x)
    (gx,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    assert gx.tolist() == [[1.0, 1.0, 0.0]]
    g = 1 / math.sqrt(3 * ACT_QMAX)
    gs = [torch.autograd.grad(out[0, i], q.scale, retain_graph=True)[0].item() / g
          for i in range(2)]
    assert gs == pytest.approx([-10 + 9.8, 245 - 244.7], abs=1e-4)


def test_training_gradients_equal_the_lsq_plus_formula_on_a_large_tensor():
    """The fused kernels against LSQ+ written out elementwise (inside: d/dx = 1,
    d/ds = round(u) - u; clipped at the bottom / top: d/ds = -zp - b/s / 255 - zp - b/s,
    d/db = 1), times the gradient scale."""
    x = _x(5, (8, 16, 9, 9)) * 3
    q = ActQuantizer().train()
    q(x)
    with torch.no_grad():
        q.scale.mul_(0.5)  # clip a share of the values at both ends, with an offset
        q.offset.mul_(0.5).add_(0.3 * q.scale)  # between two zero points
    xg = x.clone().requires_grad_(True)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    gx, gs, gb = torch.autograd.grad(q(xg), (xg, q.scale, q.offset), gy)
    s, b = q.step, q.offset.detach()
    zp = q.zero_point()
    u = x / s
    t = torch.round(u) + zp
    inside, low, high = (t >= 0) & (t <= ACT_QMAX), t < 0, t > ACT_QMAX
    assert low.any() and high.any()
    g = 1 / math.sqrt(x[0].numel() * ACT_QMAX)
    want_s = (gy * torch.where(inside, torch.round(u) - u,
                               torch.where(low, -zp, ACT_QMAX - zp) - b / s)).sum() * g
    want_b = (gy * (~inside)).sum() * g
    assert torch.equal(gx, gy * inside)
    assert gs.item() == pytest.approx(want_s.item(), rel=1e-4)
    assert gb.item() == pytest.approx(want_b.item(), rel=1e-4)


def test_the_fast_evaluation_fake_quant_equals_the_exported_op_bit_for_bit():
    """Without gradients an activation quantizer skips the op's backward mask (4x faster on
    CPU); its values stay those of the op ONNX exports, ties and clamping included."""
    from spaceevo_lib.quant.lsq import fake_quantize_values
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        s = float(torch.rand((), generator=g) * 0.2 + 1e-3)
        s = float(torch.tensor(s, dtype=torch.float32))
        zp = int(torch.randint(0, 256, (), generator=g))
        ties = (torch.randint(-300, 300, (4096,), generator=g).float() + 0.5 - zp) * s
        huge = torch.tensor([1e9, -1e9, 3e7, -3e7, 2.0 ** 24, -(2.0 ** 24)]) * s
        x = torch.cat([torch.randn(1 << 16, generator=g) * 4, ties, huge])
        op = torch.fake_quantize_per_tensor_affine(x, torch.tensor(s), torch.tensor(
            zp, dtype=torch.int32), 0, 255)
        assert torch.equal(fake_quantize_values(x, s, zp, 0, 255), op)
    q = ActQuantizer().train()
    q(torch.randn(8, 4, 5, 5) * 3 + 1)
    q.eval()
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last) * 3
    with torch.no_grad():
        fast = q(x)
    assert torch.equal(fast, q(x).detach())  # with gradients on: the exported op
