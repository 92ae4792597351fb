"""The block registry: one description per block code, every role resolves, and the roles agree
with the hyperspace configuration."""

import pytest
import torch

from spaceevo_lib.nn import registry
from spaceevo_lib.nn.registry import BLOCK_TYPES, FAMILIES, block_type, candidate_codes
from spaceevo_lib.space.hyperspace import as_hyperspace, list_hyperspaces


def _all_specs():
    for name in list_hyperspaces():
        hs = as_hyperspace(name)
        for spec in (*hs.blocks, hs.first_conv, hs.stage0):
            yield name, spec


def test_every_hyperspace_block_has_one_registry_entry_that_agrees_with_the_config():
    for name, spec in _all_specs():
        bt = block_type(spec.code)
        assert bt.code == spec.code
        assert bt.se == spec.se, (name, spec.code)
        if bt.fixed:  # a fixed block is never a candidate (ResNet is both on onnxw)
            assert spec.index == -1, (name, spec.code)


def test_every_family_resolves_every_role():
    for family, roles in FAMILIES.items():
        assert set(roles) == {"static", "elastic", "cost"}
        for path in roles.values():
            assert callable(registry._resolve(path)), path
    assert {b.family for b in BLOCK_TYPES.values()} == set(FAMILIES)


def test_candidate_codes_exclude_the_fixed_blocks():
    assert "FirstConv" not in candidate_codes() and "MBv2" not in candidate_codes()
    assert len(candidate_codes()) == 9


def test_unknown_code_names_the_known_ones():
    with pytest.raises(KeyError, match="known: .*FusedMBRes"):
        block_type("MBv9")


@pytest.mark.parametrize("code", sorted(BLOCK_TYPES))
def test_static_cost_and_elastic_roles_describe_the_same_block(code):
    """The predictor's analytic MACs equal the static module's, and the elastic block's active
    sub-block extracts into the static one (same output)."""
    from spaceevo_lib.predictor.units import Unit, unit_cost
    from spaceevo_lib.nn.flops import count_macs
    from spaceevo_lib.space.hyperspace import BlockSpec

    bt = block_type(code)
    cin, cout, k, stride, e = 16, 24, 5, 2, 3.0
    static = bt.static(cin, cout, k, stride, e).eval()
    macs = unit_cost(Unit(code, bt.act, cin, cout, k, e, stride, 8))["macs"]
    assert macs == pytest.approx(count_macs(static, (1, cin, 8, 8)), rel=1e-9)

    expands = () if bt.family in ("stem", "mbv1dual") else (1.0, 3.0)
    e = e if expands else None
    spec = BlockSpec(index=0, name=code, code=code, kernels=(3, 5), expands=expands,
                     activation=bt.act, se=bt.se)
    el = bt.elastic(spec, (8, 16), (16, 24), stride).eval()
    el.set_active(k, cout, e)
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(el(x), el.get_active_module(cin).eval()(x))
