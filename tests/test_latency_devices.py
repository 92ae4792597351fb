"""Latency devices: ONNX/onnxruntime and TFLite/LiteRT FP32 vs INT8, records and protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spaceevo_lib.data import MissingDataError, load_imagenette
from spaceevo_lib.data.imagenette import normalize_images, subset
from spaceevo_lib.latency import (RECORD_COLUMNS, Job, Protocol, RuntimeUnavailable, get_device,
                                  job_builder, list_devices, run_jobs)
from spaceevo_lib.latency import devices as D
from spaceevo_lib.latency import memory
from spaceevo_lib.latency.devices import OrtVnniDevice
from spaceevo_lib.store import Run

QUICK = Protocol(warmup=2, warmup_ms=0, runs=5, visits=2, budget_ms=0)
SHAPE = (1, 3, 32, 32)
DEVICES = ("ort-vnni", "tflite", "tflite-noxnn")


class Tiny(nn.Module):
    """conv-bn-relu, depthwise conv, 1x1 conv, global average pool, linear."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
                                nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.pw(self.dw(self.stem(x)))), 1))


@job_builder("test-latency-tiny")
def build_tiny(classes: int = 10) -> Tiny:
    """Tiny with seeded random weights: a job's module, rebuilt wherever it is compiled."""
    return Tiny(classes)


def _tiny_job(device: str, shape=SHAPE, **meta) -> Job:
    return Job.make(device, build_tiny, {}, shape, meta)


def _nothing_written(run: Run) -> bool:
    return not run.path.exists() or not any(run.path.rglob("*"))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    try:
        data = load_imagenette(32)
    except MissingDataError as e:
        pytest.skip(f"Imagenette 32 px missing: {str(e).splitlines()[0]}")
    # the files are in class order: take seeded random subsets to get all ten classes
    x_train, y_train = subset(data.x_train, data.y_train, 1024, seed=0)
    x_check, _ = subset(data.x_test, data.y_test, 32, seed=1)
    return {"calib": normalize_images(x_train[-64:]), "check": normalize_images(x_check),
            "x_train": normalize_images(x_train), "y_train": y_train}


@pytest.fixture(scope="module")
def tiny(images) -> Tiny:
    """A briefly trained Tiny: real, separated logits make top-1 agreement meaningful."""
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(images["x_train"]), torch.from_numpy(images["y_train"])
    model.train()
    for _ in range(8):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[perm[i:i + 64]]), y[perm[i:i + 64]]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(images["check"])).argmax(1).unique()
    assert len(predicted) >= 4, "the check images must not all get one class"
    return model


@pytest.fixture(scope="module")
def records(images, tmp_path_factory) -> dict[str, dict]:
    """One record per available device, through the one measurement path (models kept)."""
    out = {}
    for name in DEVICES:
        if not get_device(name).available():
            continue
        run = Run("latency", "smoke", tmp_path_factory.mktemp(name))
        job = _tiny_job(name, item="tiny", kind="net", op_type="conv-dw-pw", width=32)
        rec = run_jobs([job], images["calib"], run, "t", QUICK, keep_models=True,
                       progress=False).to_dict("records")[0]
        rec["_workdir"] = run.path / "t-models" / job.key
        out[name] = rec
    return out


@pytest.mark.parametrize("name", DEVICES)
def test_record_has_schema_and_positive_latencies(records, name):
    if name not in records:
        pytest.skip(f"{name} unavailable here")
    rec = records[name]
    assert set(RECORD_COLUMNS) <= set(rec)
    assert rec["item"] == "tiny" and rec["width"] == 32  # caller's meta kept
    assert rec["device"] == name and rec["input_shape"] == "1x3x32x32"
    assert rec["fp32_median_ms"] > 0 and rec["int8_median_ms"] > 0 and rec["speedup"] > 0
    assert rec["fp32_bytes"] > 0 and rec["int8_bytes"] > 0
    assert (rec["warmup"], rec["runs"], rec["visits"], rec["threads"]) == (2, 5, 2, 1)
    assert rec["protocol_version"] == 2 and isinstance(rec["noisy"], bool)
    assert rec["fp32_min_a_ms"] > 0 and rec["fp32_min_b_ms"] > 0
    # the idle check is recorded, whatever this machine was doing (kernel threads such as
    # kdamond can be busy); its flagging is tested on synthetic load in test_latency_protocol
    assert isinstance(rec["busy"], bool) and rec["busy_cores"] >= 0
    assert isinstance(rec["vnni"], bool) and rec["cpu_model"]
    if rec["runtime"] == "onnxruntime":
        assert rec["onnxruntime_version"] and rec["litert_version"] is None
        assert rec["quant_format"] == "qop-u8s8"
    else:
        assert rec["litert_version"] and rec["tensorflow_version"]
        assert rec["xnnpack"] is (name == "tflite")
    assert rec["fp32_max_abs_err"] < 1e-3  # the FP32 export computes what torch computes
    artifacts = sorted(p.name for p in rec["_workdir"].iterdir() if p.name != "compiled.json")
    assert len(artifacts) == 2 and not any(".part" in a for a in artifacts)


@pytest.mark.parametrize("name,options", [("ort-vnni", {"fmt": "qop-u8s8"}),
                                          ("ort-vnni", {"fmt": "qdq-s8s8"}),
                                          ("tflite", {}), ("tflite-noxnn", {})])
def test_int8_outputs_follow_fp32_on_real_images(tiny, images, tmp_path, name, options):
    dev = get_device(name, **options)
    if not dev.available():
        pytest.skip(f"{name} unavailable: {dev.missing()}")
    pair = dev.compile(tiny, SHAPE, images["calib"], tmp_path)
    check = dev.check_outputs(pair, images["check"], tiny)
    assert check["int8_pearson_r"] > 0.95, check
    assert check["int8_top1_agreement"] >= 0.8, check
    assert check["fp32_max_abs_err"] < 1e-3, check
    if name == "ort-vnni":
        assert pair.quant_format == options["fmt"]


def test_spatial_mean_is_exported_as_global_average_pool(tmp_path):
    from spaceevo_lib.export.onnx import export_onnx
    from spaceevo_lib.export.runner import graph_ops

    class MeanHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    ops = graph_ops(export_onnx(MeanHead(), SHAPE, tmp_path / "m.onnx", opset=18))
    assert "ReduceMean" not in ops and ops.get("GlobalAveragePool") == 1


def test_unknown_device_and_format_name_the_valid_ones():
    with pytest.raises(KeyError, match="ort-vnni.*tflite"):
        get_device("pixel4")
    assert {"ort-vnni", "tflite", "tflite-noxnn"} <= set(list_devices())
    with pytest.raises(ValueError, match="qdq-s8s8.*qop-u8s8"):
        get_device("ort-vnni", fmt="qop-u16")


@pytest.mark.parametrize("shape,pattern", [((1, 3, 0, 32), "impossible input shape"),
                                           ((1, 3, 32), "impossible input shape"),
                                           ((1, 4, 32, 32), "1x4x32x32 does not fit"),
                                           ((2, 3, 32, 32), "batch 1")])
def test_impossible_shapes_raise_value_error_and_write_nothing(tmp_path, shape, pattern):
    run = Run("latency", "smoke", tmp_path / "runs")
    calib = np.zeros((2, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match=pattern):
        run_jobs([_tiny_job("ort-vnni", shape)], calib, run, "t", QUICK, progress=False)
    assert _nothing_written(run)


def test_images_must_be_nchw_rgb(tmp_path):
    run = Run("latency", "smoke", tmp_path / "runs")
    with pytest.raises(ValueError, match="images"):
        run_jobs([_tiny_job("ort-vnni")], np.zeros((4, 16, 16, 3), np.float32), run, "t",
                 QUICK, progress=False)
    assert _nothing_written(run)


def test_missing_runtime_names_package_and_install(tmp_path, monkeypatch):
    class Ghost(OrtVnniDevice):
        name = "ghost"
        packages = {"no_such_runtime_xyz": "pip install no-such-runtime-xyz"}

    monkeypatch.setitem(D._REGISTRY, "ghost", Ghost)
    run = Run("latency", "smoke", tmp_path / "runs")
    with pytest.raises(RuntimeUnavailable, match="(?s)no_such_runtime_xyz.*pip install"):
        run_jobs([_tiny_job("ghost")], np.zeros((2, *SHAPE[1:]), np.float32), run, "t", QUICK,
                 progress=False)
    assert _nothing_written(run) and not Ghost().available()


def test_keras_state_is_dropped_every_few_conversions_or_when_memory_grows(monkeypatch):
    """Dropping Keras' global state after every conversion cost more than a block's
    conversion; it is dropped every RELEASE_EVERY conversions, or sooner when the process grew
    by RELEASE_GROWTH_MB."""
    import sys
    import types

    cleared = []
    monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(
        backend=types.SimpleNamespace(clear_session=lambda: cleared.append(1))))
    rss = [1000.0]
    monkeypatch.setattr(memory, "_rss_mb", lambda: rss[0])
    monkeypatch.setattr(memory, "_since_release", {"conversions": 0, "rss_mb": None})
    dropped = [memory.release_keras() for _ in range(memory.RELEASE_EVERY)]
    assert dropped == [False] * (memory.RELEASE_EVERY - 1) + [True] and len(cleared) == 1
    assert not memory.release_keras()
    rss[0] += memory.RELEASE_GROWTH_MB + 1  # a large conversion
    assert memory.release_keras() and len(cleared) == 2
    assert memory.release_keras(force=True) and len(cleared) == 3
