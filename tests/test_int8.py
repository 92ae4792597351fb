"""The chapter "Training in INT8": the teacher's structure, the verdict rules (on made-up
tables, before any result), deployed files' metadata and evaluation from the file alone."""

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from spaceevo_lib.export.metadata import Preprocessing, read_preprocessing, write_onnx_metadata
from spaceevo_lib.quant.deploy import evaluate_file
from spaceevo_lib.chapters import int8
from spaceevo_lib.train.networks import teacher_network
from spaceevo_lib.train.data import load_training_data


def test_teacher_is_a_training_scale_subnet_with_the_hyperspace_strides():
    t = teacher_network()
    hs = t.space.spec
    table = int8.stage_table(t)
    assert list(table.stride) == [hs.stage(s).stride for s in table.stage]
    assert table.set_index("stage").block[["stage1", "stage4"]].tolist() == ["FusedMBSERes",
                                                                            "MBv3Res"]
    assert all(w == max(hs.stage(s).widths) for s, w in zip(table.stage, table.width))
    with torch.no_grad():
        assert t.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, hs.n_classes)


def _results(lsq_top1=80.2, fq_top1=80.0, lsq_ms=1.05, ptq_ms=1.0, teacher=81.0):
    rows = [("teacher", "fp32", teacher, np.nan), ("teacher", "int8-fakequant", fq_top1, np.nan),
            ("teacher", "int8-ort-lsq-qdq", lsq_top1, lsq_ms),
            ("teacher", "int8-ort-ptq", 79.0, ptq_ms)]
    return pd.DataFrame(rows, columns=["network", "model", "top1", "int8_median_of_min_ms"])


@pytest.mark.parametrize("kw, rule, holds", [
    ({}, "fake-quant", True), ({"lsq_top1": 80.6}, "fake-quant", False),
    ({}, "as fast", True), ({"lsq_ms": 1.11}, "as fast", False),
    ({}, "teacher", True), ({"teacher": 79.9}, "teacher", False)])
def test_verdict_rules_and_thresholds(kw, rule, holds):
    v = int8.verdicts(_results(**kw))
    row = v[v.rule.str.contains(rule)]
    assert len(row) == 1 and bool(row.holds.iloc[0]) is holds
    assert int8.THRESHOLDS == {"lsq_file_top1_points": 0.5, "lsq_latency_ratio": 1.10,
                               "teacher_top1": 80.0}


def test_a_noisy_latency_leaves_the_speed_rule_undecided():
    r = _results(lsq_ms=1.0).assign(noisy=[None, None, True, False])
    v = int8.verdicts(r)
    assert v[v.rule.str.contains("as fast")].holds.iloc[0] is None
    v = int8.verdicts(r.assign(noisy=[None, None, False, False]))
    assert bool(v[v.rule.str.contains("as fast")].holds.iloc[0]) is True


def test_results_join_each_latency_to_its_own_network():
    """Both networks' files are timed in one measurement; their rows share model names."""
    acc = pd.DataFrame([(n, m, t) for n, t in (("teacher", 80.0), ("mnv3", 60.0))
                        for m in ("fp32", "int8-ort-ptq")], columns=["network", "model", "top1"])
    lat = pd.DataFrame({"network": ["teacher", "mnv3"], "route": ["ort-ptq", "ort-ptq"],
                        "device": "ort-vnni", "int8_median_of_min_ms": [0.5, 0.3],
                        "fp32_median_of_min_ms": [0.9, 0.3], "speedup": [1.8, 1.0],
                        "half_spread": 0.01, "noisy": False, "busy": False})
    r = int8.results_table(acc, lat).set_index(["network", "model"])
    assert len(r) == 4
    assert r.int8_median_of_min_ms[("mnv3", "int8-ort-ptq")] == 0.3
    assert r.int8_median_of_min_ms[("teacher", "int8-ort-ptq")] == 0.5
    assert np.isnan(r.int8_median_of_min_ms[("teacher", "fp32")])


def test_preprocessing_round_trips_and_applies():
    pre = Preprocessing("NCHW", (4, 4), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), classes=("a", "b"))
    assert Preprocessing.from_json(pre.to_json()) == pre
    x = np.full((2, 4, 4, 3), 255, np.uint8)
    y = pre.apply(x)
    assert y.shape == (2, 3, 4, 4) and np.allclose(y, 2.0)
    assert pre.with_layout("NHWC").apply(x).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="takes 4x4"):
        pre.apply(np.zeros((1, 5, 5, 3), np.uint8))


def test_a_file_without_metadata_is_refused(tmp_path):
    from spaceevo_lib.export.onnx import export_onnx
    p = export_onnx(torch.nn.Conv2d(3, 2, 1), (1, 3, 4, 4), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="carries no 'preprocessing' metadata"):
        read_preprocessing(p)


def test_evaluate_file_reads_the_preprocessing_from_the_file(tmp_path):
    """A tiny 'classifier' whose logits are the per-channel means of its input: the file's
    metadata decides the normalisation, and plain onnxruntime can read it back."""
    from spaceevo_lib.export.onnx import export_onnx

    class MeanRGB(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    pre = Preprocessing("NCHW", (4, 4), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), classes=("r", "g", "b"))
    p = write_onnx_metadata(export_onnx(MeanRGB(), (1, 3, 4, 4), tmp_path / "m.onnx"), pre)
    meta = ort.InferenceSession(str(p)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["preprocessing"])["classes"] == ["r", "g", "b"]
    x = np.zeros((3, 4, 4, 3), np.uint8)
    for i in range(3):
        x[i, ..., i] = 200  # image i is pure colour i
    r = evaluate_file(p, x, np.array([0, 1, 2]))
    assert r["top1"] == 100.0 and r["images"] == 3


def test_imagenet_data_for_the_paper_profile(tmp_path, monkeypatch):
    """The paper profile's data path, on a tiny generated ImageFolder: loaders, raw uint8 test
    images resized and centre-cropped as the files' metadata says, calibration images."""
    from test_data_imagenet import _tiny_folder

    from spaceevo_lib.settings import DATA_ENV
    from spaceevo_lib.train.config import TrainConfig
    _tiny_folder(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    cfg = TrainConfig(epochs=1, warmup_epochs=0.0, batch_size=2, valid_size=2)
    d = load_training_data(32, cfg, calibration_images=3, dataset="imagenet")
    assert d.x_test.shape == (6, 32, 32, 3) and d.x_test.dtype == np.uint8
    assert d.calibration.shape == (3, 3, 32, 32) and d.n_classes == 2
    assert d.preprocessing.resize == round(32 / 0.875)
    assert len(d.loaders["valid"].dataset) == 2 and len(d.loaders["train"].dataset) == 4
    x, y = next(iter(d.loaders["train"]))
    assert tuple(x.shape) == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="dataset must be"):
        load_training_data(32, cfg, dataset="cifar")
