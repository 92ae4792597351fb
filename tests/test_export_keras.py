"""PyTorch -> Keras -> TFLite: the mirrored network computes what the PyTorch one computes.

All comparisons run on real Imagenette images, normalised (x/255 - 0.5)/0.25, and measure
max |torch - keras| / max |torch| (the "relative" difference below).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spaceevo_lib.data import DataError, load_imagenette
from spaceevo_lib.export.keras import ExportError, keras_input, to_keras, torch_output_like

TOL = 1e-4


def _images(resolution: int, n: int, split: str = "train") -> torch.Tensor:
    try:
        d = load_imagenette(resolution)
    except DataError as e:
        pytest.skip(f"no Imagenette {resolution} px ({type(e).__name__}): {e}")
    x = getattr(d, f"x_{split}")[:n].astype(np.float32)  # (N, H, W, 3) uint8 -> float
    return torch.from_numpy(((x / 255 - 0.5) / 0.25).transpose(0, 3, 1, 2).copy())  # NCHW


@pytest.fixture(scope="module")
def x32() -> torch.Tensor:
    return _images(32, 4)  # (4, 3, 32, 32)


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return _images(64, 8)  # (8, 3, 64, 64)


def rel_diff(ref: np.ndarray, got: np.ndarray) -> float:
    assert ref.shape == got.shape, (ref.shape, got.shape)
    return float(np.abs(ref - got).max() / np.abs(ref).max())


def keras_vs_torch(module: nn.Module, x: torch.Tensor) -> float:
    """Relative difference between ``module`` and its Keras mirror, one image at a time."""
    module.eval()
    km = to_keras(module, (1, *x.shape[1:]))
    with torch.no_grad():
        ref = module(x).numpy()
    got = np.concatenate([torch_output_like(km(keras_input(x[i:i + 1])))
                          for i in range(len(x))])
    return rel_diff(ref, got)


def randomize_bn(module: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Non-trivial BN: random affine parameters and running stats of real images (a train-mode
    pass with cumulative averaging), so a wrong mean/var/eps/gamma mapping shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
            m.momentum = None
    module.train()
    with torch.no_grad():
        module(x)
    return module.eval()


# ----------------------------------------------------------------------------- small modules

def cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1,
        act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3), act or nn.ReLU(inplace=True))


class SE(nn.Module):
    """SpaceEvo/MobileNetV3-style squeeze-and-excitation: convs on pooled features."""

    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(F.relu(self.fc1(self.pool(x)))))  # (1, C, 1, 1)
        return x * s


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(cbr(c, c), nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.body(x))


class Functional(nn.Module):
    """Activations and pooling as functions and methods rather than modules."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, 2, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        z = self.b(F.hardswish(self.a(x)))  # (1, 8, H/2, W/2)
        y = torch.cat([F.silu(z), F.relu6(z - 1.0)], dim=1)  # (1, 16, H/2, W/2)
        y = torch.add(F.hardsigmoid(y), torch.mul(y, 0.5)) / 2 + torch.sigmoid(y) * 3
        y = y / (1.0 + torch.sigmoid(y)) - y.relu() + (2.0 - y)  # tensor / tensor, scalar - y
        y = y * F.relu6(y + 3.0) / 6.0  # the SpaceEvo reference's Hswish
        y = y.mean((2, 3), keepdim=True)  # (1, 16, 1, 1)
        return self.fc(y.view(y.size(0), -1))


class Head(nn.Module):
    def __init__(self, flat: str):
        super().__init__()
        self.body, self.flat = cbr(3, 16, s=2), flat
        self.pool, self.flatten = nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.pool(self.body(x))  # (N, 16, 1, 1)
        if self.flat == "torch.flatten":
            y = torch.flatten(y, 1)
        elif self.flat == "method":
            y = y.flatten(1)
        elif self.flat == "module":
            y = self.flatten(y)
        elif self.flat == "reshape":
            y = y.reshape(y.shape[0], -1)
        else:
            y = self.body(x).mean([2, 3])
        return self.fc(y)  # (N, 10)


SMALL = {
    "conv3x3_s1_bn_relu": lambda: cbr(3, 16),
    "conv3x3_s2_bn_relu": lambda: cbr(3, 16, s=2),
    "dw_k3_s2": lambda: nn.Sequential(cbr(3, 16), cbr(16, 16, 3, 2, groups=16)),
    "dw_k5_s2": lambda: nn.Sequential(cbr(3, 16), cbr(16, 16, 5, 2, groups=16)),
    "dw_k7_s2": lambda: nn.Sequential(cbr(3, 16), cbr(16, 16, 7, 2, groups=16)),
    "dw_multiplier2": lambda: nn.Conv2d(3, 6, 3, 2, 1, groups=3),
    "grouped_conv": lambda: nn.Sequential(cbr(3, 16), nn.Conv2d(16, 24, 3, 1, 1, groups=4)),
    "conv1x1_nobias": lambda: nn.Conv2d(3, 16, 1, bias=False),
    "conv_asym_pad_dilated": lambda: nn.Conv2d(3, 8, (3, 5), padding=(2, 4), dilation=2),
    "conv_same": lambda: nn.Conv2d(3, 8, 4, padding="same"),
    "relu6": lambda: cbr(3, 8, act=nn.ReLU6()),
    "hardswish": lambda: cbr(3, 8, act=nn.Hardswish()),
    "hardsigmoid": lambda: cbr(3, 8, act=nn.Hardsigmoid()),
    "silu": lambda: cbr(3, 8, act=nn.SiLU()),
    "sigmoid": lambda: cbr(3, 8, act=nn.Sigmoid()),
    "identity_dropout": lambda: nn.Sequential(cbr(3, 8), nn.Identity(), nn.Dropout(0.5)),
    "se_block": lambda: nn.Sequential(cbr(3, 16, act=nn.Hardswish()), SE(16)),
    "residual_add": lambda: nn.Sequential(cbr(3, 8), Residual(8)),
    "gap_flatten_linear": lambda: Head("torch.flatten"),
    "gap_method_flatten": lambda: Head("method"),
    "gap_module_flatten": lambda: Head("module"),
    "gap_reshape": lambda: Head("reshape"),
    "mean_linear": lambda: Head("mean"),
    "functional": Functional,
    # signed input, even size: TF 'same' would shift the windows -> stride-1 pool + slice
    "maxpool_signed": lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(3, 2, 1)),
    "maxpool_after_relu": lambda: nn.Sequential(cbr(3, 8), nn.MaxPool2d(3, 2, 1)),
    "maxpool_odd_same": lambda: nn.Sequential(nn.Conv2d(3, 8, 3, 2, 0), nn.MaxPool2d(3, 2, 1)),
    "maxpool_ceil": lambda: nn.Sequential(cbr(3, 8), nn.MaxPool2d(2, 2, ceil_mode=True),
                                          nn.MaxPool2d(3, 2, ceil_mode=True)),
    "avgpool": lambda: nn.Sequential(cbr(3, 8), nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(2)),
    # the reference's stride-2 shortcut on an odd map: partial windows divide by their cells
    "avgpool_ceil_odd": lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, 2), nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", list(SMALL))
def test_small_module_matches_torch(name, x32):
    torch.manual_seed(0)
    module = randomize_bn(SMALL[name](), x32)
    assert keras_vs_torch(module, x32) < TOL


def test_caller_module_untouched(x32):
    torch.manual_seed(0)
    module = nn.Sequential(cbr(3, 8), nn.Conv2d(8, 4, 1)).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    km = to_keras(module, (1, 3, 32, 32), name="tiny")
    assert module.training and km.name == "tiny"
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert tuple(km.inputs[0].shape) == (1, 32, 32, 3) and tuple(km.outputs[0].shape) == (
        1, 32, 32, 4)


# ----------------------------------------------------------------------------- torchvision

TORCHVISION = ["mobilenet_v3_small", "mobilenet_v2", "resnet18", "efficientnet_b0",
               "mobilenet_v3_large", "resnet50"]


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-vCPU runner, two spinning threads run 3-5x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("arch", TORCHVISION)
def test_torchvision_matches_torch(arch, x64, one_torch_thread):
    import torchvision.models as tvm
    torch.manual_seed(0)
    module = randomize_bn(getattr(tvm, arch)(weights=None), x64)  # BN stats of 8 images
    xs = x64[:4]
    with torch.no_grad():
        spread = module(xs).numpy().std(0).mean()
    assert spread > 1e-3  # images give different logits: the comparison is not vacuous
    assert keras_vs_torch(module, xs) < TOL


# ----------------------------------------------------------------------------- errors

class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.rnn = nn.Conv2d(3, 4, 3), nn.LSTM(4, 4)

    def forward(self, x):
        return self.rnn(self.conv(x).mean((2, 3)))[0]  # (1, 4) as an unbatched sequence


@pytest.mark.parametrize("module, needle", [
    (WithLSTM(), "LSTM"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2)), "Upsample"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 2)), "spatial"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
     "track_running_stats"),
])
def test_unsupported_raises_export_error(module, needle):
    with pytest.raises(ExportError, match=needle) as e:
        to_keras(module, (1, 3, 32, 32))
    assert "Supported modules" in str(e.value)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="batch 1"):
        to_keras(nn.Conv2d(3, 4, 3), (2, 3, 32, 32))


# ----------------------------------------------------------------------------- TFLite

class SmallNet(nn.Module):
    """A tiny MobileNetV3-like classifier: stem, depthwise + SE, 1x1, head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            cbr(3, 16, s=2, act=nn.Hardswish()), cbr(16, 16, 3, 1, groups=16), SE(16),
            cbr(16, 32, 1), cbr(32, 32, 5, 2, groups=32, act=nn.Hardswish()), cbr(32, 48, 1))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def tflite_setup():
    from spaceevo_lib.export.tflite import TFLiteRunner, convert_tflite
    calib = _images(32, 32, "train")  # (32, 3, 32, 32)
    evals = _images(32, 16, "test")  # (16, 3, 32, 32), not seen in calibration
    torch.manual_seed(0)
    module = randomize_bn(SmallNet(), calib)
    km = to_keras(module, (1, 3, 32, 32))
    with torch.no_grad():
        ref = module(evals).numpy()  # (16, 10)
    t0 = time.perf_counter()
    fp32 = convert_tflite(km, "fp32")
    int8 = convert_tflite(km, "int8", keras_input(calib))
    seconds = time.perf_counter() - t0
    return dict(km=km, ref=ref, evals=evals, fp32=fp32, int8=int8, seconds=seconds,
                runner=TFLiteRunner, convert=convert_tflite)


def _run_all(runner, x: torch.Tensor) -> np.ndarray:
    return np.concatenate([torch_output_like(runner.run(keras_input(x[i:i + 1])))
                           for i in range(len(x))])


def test_tflite_fp32_matches_torch(tflite_setup):
    s = tflite_setup
    r = s["runner"](s["fp32"], threads=1)
    assert rel_diff(s["ref"], _run_all(r, s["evals"])) < TOL
    assert "HARD_SWISH" in r.ops  # the x * relu6(x + 3) / 6 pattern was fused


def test_tflite_int8_close_to_float(tflite_setup):
    s = tflite_setup
    r = s["runner"](s["int8"], threads=1)
    assert r.input_details["dtype"] == np.int8 and r.output_details["dtype"] == np.int8
    got = _run_all(r, s["evals"])
    pearson = np.corrcoef(s["ref"].ravel(), got.ravel())[0, 1]
    agree = (s["ref"].argmax(1) == got.argmax(1)).mean()
    assert pearson > 0.95 and agree >= 0.75, (pearson, agree)


def test_tflite_int8_xnnpack_off_and_on_agree(tflite_setup):
    s = tflite_setup
    on, off = (s["runner"](s["int8"], threads=1, xnnpack=x) for x in (True, False))
    assert "DELEGATE" in on.ops and "DELEGATE" not in off.ops
    y_on, y_off = _run_all(on, s["evals"]), _run_all(off, s["evals"])
    step = off.output_details["quantization"][0]
    assert np.abs(y_on - y_off).max() <= 2 * step + 1e-7  # at most a rounding step or two
    off.set_input(keras_input(s["evals"][:1]))
    off.invoke()  # timing path: invoke alone on the input already set
    assert np.array_equal(off.output(), y_off[:1])


def test_tflite_int8_needs_calibration(tflite_setup):
    with pytest.raises(ValueError, match="calibration"):
        tflite_setup["convert"](tflite_setup["km"], "int8")
    with pytest.raises(ValueError, match="precision"):
        tflite_setup["convert"](tflite_setup["km"], "fp16")


def test_tflite_import_is_lazy():
    code = ("import sys, spaceevo_lib.export.tflite, spaceevo_lib.export.keras; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_graphdef_conversion_equals_from_keras_model(tflite_setup):
    """The fast path (one frozen GraphDef, TF1 converter) gives the operators and outputs of
    TensorFlow's documented from_keras_model route, for both precisions."""
    import tensorflow as tf
    s = tflite_setup
    calib = keras_input(_images(32, 32, "train"))
    slow = {}
    for prec in ("fp32", "int8"):
        c = tf.lite.TFLiteConverter.from_keras_model(s["km"])
        if prec == "int8":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = lambda: ([img[None]] for img in calib)
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int8
        slow[prec] = c.convert()
    for prec in ("fp32", "int8"):
        a, b = s["runner"](s[prec], threads=1), s["runner"](slow[prec], threads=1)
        assert a.ops == b.ops
        assert np.array_equal(_run_all(a, s["evals"]), _run_all(b, s["evals"]))


def test_graphdef_taken_before_tensorflows_rewrapping_is_the_public_one(tflite_setup):
    """The GraphDef taken from the freezing step before TensorFlow wraps it back into a
    function (the fast path) gives byte-identical flatbuffers to the public
    ``convert_variables_to_constants_v2``, for both precisions."""
    from spaceevo_lib.export import tflite as T
    s = tflite_setup
    fast = T._frozen_graph(s["km"])
    public = T._frozen_graph(s["km"], public=True)
    assert fast[1:] == public[1:]
    calib = keras_input(_images(32, 32, "train"))
    try:
        T._FROZEN[s["km"]] = public
        by_public = (T.convert_tflite(s["km"], "fp32"), T.convert_tflite(s["km"], "int8", calib))
    finally:
        T._FROZEN[s["km"]] = fast
    assert by_public == (s["fp32"], s["int8"])
