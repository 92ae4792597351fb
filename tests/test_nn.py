"""Static blocks and single operators: shapes, structure and the reference's rounding."""

import pytest
import torch

from spaceevo_lib.nn import (create_block, create_operator, list_blocks, list_operators,
                             make_divisible, operator_input_shape)
from spaceevo_lib.nn.blocks import SqueezeExcite


def test_make_divisible_matches_the_reference_rule():
    assert [make_divisible(v) for v in (3, 8, 12, 20, 36, 100, 0.5 * 48)] == \
        [8, 8, 16, 24, 40, 104, 24]
    assert make_divisible(4 * 61) == 248  # nearest multiple of 8, never below 0.9 v


@pytest.mark.parametrize("code", list_blocks())
@pytest.mark.parametrize("cin, cout, stride", [(16, 16, 1), (16, 24, 2)])
def test_blocks_keep_their_contract(code, cin, cout, stride):
    m = create_block(code, cin, cout, 5, stride, 3).eval()
    y = m(torch.randn(2, cin, 16, 16))
    assert y.shape == (2, cout, 16 // stride, 16 // stride)
    has_se = any(isinstance(x, SqueezeExcite) for x in m.modules())
    assert has_se == ("SE" in code or code.startswith("MBv3")), code


def test_k3_blocks_stack_3x3_depthwise_convs():
    m = create_block("MBv2K3Res", 16, 16, 7, 1, 3)
    dw = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.groups > 1]
    assert [c.kernel_size for c in dw] == [(3, 3)] * 3
    m = create_block("MBv2Res", 16, 16, 7, 1, 3)
    assert [c.kernel_size for c in m.modules()
            if isinstance(c, torch.nn.Conv2d) and c.groups > 1] == [(7, 7)]


def test_mbv2_with_expand_one_skips_the_expansion_conv():
    m = create_block("MBv2Res", 32, 32, 3, 1, 1.0)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 2  # depthwise + project, identity shortcut


@pytest.mark.parametrize("name", list_operators())
def test_operators_run_on_their_input_shape(name):
    shape = operator_input_shape(name, 16, 8)
    op = create_operator(name, 16).eval()
    torch.manual_seed(0)
    x1, x2 = torch.randn(*shape), torch.randn(*shape)
    with torch.no_grad():
        y1, y2 = op(x1), op(x2)
    assert y1.shape[0] == 1 and y1.numel() > 0 and torch.isfinite(y1).all()
    assert not torch.equal(y1, y2)  # it computes from its input (not a constant)
    with torch.no_grad():
        assert torch.equal(op(x1), y1)  # eval mode: deterministic


def test_bad_names_and_sizes_are_rejected():
    with pytest.raises(KeyError, match="unknown block 'MBv9'"):
        create_block("MBv9", 8, 8, 3, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        create_block("MBv2Res", 0, 8, 3, 1, 3)
    with pytest.raises(KeyError, match="unknown operator"):
        create_operator("conv9x9", 8)
    with pytest.raises(ValueError, match="hw must be >= 1"):
        operator_input_shape("conv1x1", 8, 0)


def test_bn_recalibration_gives_random_models_sane_outputs():
    from spaceevo_lib.nn import create_model, recalibrate_bn
    m = create_model("mobilenet_v3_small")
    momentum = next(b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)).momentum
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        before = m(x).std()
        recalibrate_bn(m, [x])
        after = m(x).std()
    assert before < 1e-6 < after and not m.training
    bn = next(b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))
    assert bn.momentum == momentum
