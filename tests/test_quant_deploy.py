"""Quantizer placement on any network, and the deployed QDQ file with the learned scales:
onnxruntime fuses it into integer kernels and computes what the fake-quant network computes."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from spaceevo_lib.export.runner import graph_ops, optimized_ops
from spaceevo_lib.host import cpu_info
from spaceevo_lib.nn.models import create_model
from spaceevo_lib.quant import NotInitialisedError
from spaceevo_lib.quant.deploy import export_qdq
from spaceevo_lib.quant.prepare import (ActQuantizer, QConv2d, act_quantizers, fold_bn,
                                        quantize_model)
from spaceevo_lib.nn.subnet import build_subnet
from spaceevo_lib.space.encoding import SpaceChoice, max_subnet, published_spaces

from conftest import needs_data


def _real_images(n=8):
    """Normalised Imagenette test images (what the deployed files see)."""
    from spaceevo_lib.data import load_imagenette, normalize_images
    return torch.from_numpy(normalize_images(load_imagenette(32).x_test[:n]))


def _subnet(name="spaceevo@vnni"):
    """The max subnet of a published space at the training scale, with BN that is not the
    identity (random affine and statistics), in eval mode."""
    sp = published_spaces()[name]
    hs = f"{sp.hyperspace}-train"
    space = SpaceChoice(hs, sp.blocks, sp.windows)
    torch.manual_seed(0)
    m = build_subnet(space, max_subnet(hs, space))
    _randomise_bn(m)
    return m.eval()


def _randomise_bn(m: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.weight.data = 0.5 + torch.rand(c, generator=g)
            bn.bias.data = 0.1 * torch.randn(c, generator=g)
            bn.running_mean = 0.1 * torch.randn(c, generator=g)
            bn.running_var = 0.5 + torch.rand(c, generator=g)
        if isinstance(bn, nn.Linear):
            bn.reset_parameters()


def _calibrated(model, x):
    q = quantize_model(model).train()
    with torch.no_grad():
        q(x)
    return q.eval()


def test_bn_folding_keeps_the_function():
    m, x = _subnet(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fold_bn(m)(x), m(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(b, nn.BatchNorm2d) for b in fold_bn(m).modules())


def test_one_quantizer_per_tensor_at_the_producer():
    q = quantize_model(_subnet())
    nodes = list(q.graph.nodes)
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.op == "call_module" and isinstance(q.get_submodule(n.target), ActQuantizer):
            src = n.args[0]
            # never two quantizers on one tensor, never a quantizer right before a ReLU
            assert not (src.op == "call_module" and isinstance(q.get_submodule(src.target),
                                                               ActQuantizer))
            assert all(not (u.op == "call_module" and isinstance(q.get_submodule(u.target),
                                                                 nn.ReLU)) for u in n.users)
    # every conv reads a quantized tensor: directly, or through a pass-through shortcut
    for n in nodes:
        if n.op == "call_module" and isinstance(q.get_submodule(n.target), QConv2d):
            src = n.args[0]
            while src.op == "call_module" and isinstance(q.get_submodule(src.target),
                                                         (nn.Identity, nn.Dropout)):
                src = src.args[0]
            assert src.op == "call_module" and isinstance(q.get_submodule(src.target),
                                                          ActQuantizer), n.name
    assert "output" in by_name  # the logits stay float: the output node reads a linear
    assert not isinstance(q.get_submodule(by_name["output"].args[0].target), ActQuantizer)


def test_export_before_training_names_the_missing_step(tmp_path):
    with pytest.raises(NotInitialisedError, match="training mode"):
        export_qdq(quantize_model(_subnet()), (1, 3, 32, 32), tmp_path / "q.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


@needs_data
@pytest.mark.parametrize("which", ["subnet", "mobilenet_v3_small"])
def test_qdq_file_fuses_into_integer_kernels_and_equals_the_fake_quant_network(tmp_path,
                                                                               which):
    if which == "subnet":
        model = _subnet()
    else:
        torch.manual_seed(0)
        model = create_model("mobilenet_v3_small", n_classes=10, stem_stride=1)
        _randomise_bn(model)
        model.eval()
    x = _real_images(8)  # calibrated and compared on real images
    q = _calibrated(model, x)
    path = export_qdq(q, (1, 3, 32, 32), tmp_path / "q.onnx",
                      metadata={"resolution": "32", "layout": "NCHW"})
    proto = onnx.load(str(path))
    assert {p.key: p.value for p in proto.metadata_props} == {"resolution": "32",
                                                              "layout": "NCHW"}
    convs = graph_ops(path)["Conv"]  # the linear layers after the pool are 1x1 convs too
    ops = optimized_ops(path)
    # every conv and linear layer runs in int8, but for the logits layer: its output is the
    # float network output (no quantizer), so it stays one small float conv
    assert ops.get("QLinearConv", 0) == convs - 1 and ops.get("Conv", 0) == 1
    assert ops.get("QLinearAdd", 0) > 0
    assert not {"Gemm", "FusedGemm", "MatMul"} & set(ops)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = q(x).numpy()
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0]
                          for i in range(len(x))])
    if not cpu_info()["vnni"]:
        # without VNNI, onnxruntime's uint8 x int8 kernels add pairs of products in int16
        # and saturate (its documentation; training-notes): the file then differs from the
        # fake-quant network by more than rounding, a property of the host, not of the export
        pytest.skip("QDQ = fake-quant needs VNNI (this CPU has none: U8S8 saturates)")
    # rounding ties (PyTorch multiplies by 1/s, onnxruntime divides by s) move single values
    # one step, and a step early in the network moves the logits a little: the outputs agree
    # within a few percent of their largest value, and within 2 % on average
    err = np.abs(got - want)
    assert err.max() <= 0.03 * np.abs(want).max()
    assert err.mean() <= 0.02 * np.abs(want).mean()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.875


def test_quantized_network_state_reloads_into_a_rebuilt_one():
    m, x = _subnet(), torch.randn(4, 3, 32, 32)
    q = _calibrated(m, x)
    fresh = quantize_model(_subnet())
    fresh.load_state_dict(q.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), q(x))
    assert sum(1 for _ in act_quantizers(q)) == q.n_act_quantizers
