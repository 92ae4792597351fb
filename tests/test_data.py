"""Loading and checking Imagenette and the paper's reference artifacts."""

import shutil

import numpy as np
import pytest

from spaceevo_lib.search.lut import load_lut
from spaceevo_lib.data import (CorruptDataError, MissingDataError, load_imagenette,
                               load_reference_latency, load_search_result, make_loaders)
from spaceevo_lib.data.imagenette import class_counts, pixel_stats
from spaceevo_lib.data.reference import lut_files, verify_reference
from spaceevo_lib.settings import DATA_ENV

from conftest import needs_data


def test_missing_imagenette_names_file_and_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(MissingDataError) as e:
        load_imagenette(64)
    msg = str(e.value)
    assert "imagenette-64.npz" in msg and str(tmp_path) in msg
    assert "spaceevo fetch imagenette" in msg and DATA_ENV in msg


def test_missing_reference_names_file_and_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(MissingDataError, match="(?s)stage1_0_0.csv.*fetch spaceevo-reference"):
        load_lut("onnxw", 1, 0, 0)


def _fake_npz(path, n=20, res=32):
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, x_train=rng.integers(0, 255, (n, res, res, 3), dtype=np.uint8),
        y_train=np.arange(n) % 10, x_test=rng.integers(0, 255, (n, res, res, 3), dtype=np.uint8),
        y_test=np.arange(n) % 10, classes=np.array([f"c{i}" for i in range(10)]),
        wnids=np.array([f"n{i}" for i in range(10)]),
        files_train=np.array([f"train/{i}.JPEG" for i in range(n)]),
        files_test=np.array([f"val/{i}.JPEG" for i in range(n)]))


def test_unknown_file_is_rejected_as_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    _fake_npz(tmp_path / "imagenette" / "imagenette-32.npz")
    with pytest.raises(CorruptDataError, match="(?s)sha256.*fetch imagenette.*SPACEEVO_DATA_DIR"):
        load_imagenette(32)


def test_truncated_file_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    path = tmp_path / "imagenette" / "imagenette-32.npz"
    _fake_npz(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptDataError):
        load_imagenette(32, verify=False)


@needs_data
def test_published_copy_loads_and_matches_its_readme():
    d = load_imagenette(32)
    assert d.origin == "published copy"
    assert d.x_train.shape == (9469, 32, 32, 3) and d.x_test.shape == (3925, 32, 32, 3)
    counts = class_counts(d)
    assert counts.train.tolist()[:3] == [963, 955, 993] and counts.test.sum() == 3925
    assert d.classes[0] == "tench" and d.wnids[-1] == "n03888257"
    stats = pixel_stats(d.x_train)
    assert np.allclose(stats["mean"], [117.9, 116.8, 109.7], atol=0.06)
    assert np.allclose(stats["std"], [67.3, 66.5, 72.6], atol=0.06)


@needs_data
def test_loaders_are_seeded_and_normalised():
    d = load_imagenette(32)
    a = make_loaders(d, batch_size=8, augment="crop_flip", valid_size=100, seed=1)
    b = make_loaders(d, batch_size=8, augment="crop_flip", valid_size=100, seed=1)
    import torch
    torch.manual_seed(0)
    xa, ya = next(iter(a["train"]))
    torch.manual_seed(0)
    xb, yb = next(iter(b["train"]))
    assert xa.shape == (8, 3, 32, 32) and xa.dtype == torch.float32
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(a["valid"].dataset) == 100 and len(a["train"].dataset) == 9469 - 100
    xt, _ = next(iter(a["test"]))  # test images in order, not augmented: exactly the
    # ImageNet normalisation of the stored pixels (a loader that skipped it, or scaled to
    # 0-1 only, would fail here)
    from spaceevo_lib.data.imagenette import normalize_images
    np.testing.assert_allclose(xt.numpy(), normalize_images(d.x_test[:8]), atol=1e-5)
    assert abs(float(xt.mean())) < 1 and 0.5 < float(xt.std()) < 2


@needs_data
def test_reference_artifacts_load_and_verify():
    assert verify_reference() == 346
    assert len(lut_files("onnxw")) == 132 and len(lut_files("mobilew")) == 210
    lut = load_lut("onnxw", 1, 0, 0)
    assert len(lut) == 1000 and set(lut.resolution) == {160, 192, 224}
    assert {"arch", "depth", "cin", "nsr", "latency_ms"} <= set(lut.columns)
    spaces = load_search_result()["specific_supernet_encoding_dict"]
    assert spaces["spaceevo@vnni"] == "onnxw-151122-023231"
    lat = load_reference_latency()
    assert lat.loc[0, ["fp32_ms", "int8_ms", "speedup"]].tolist() == [7.85, 3.84, 2.04]


@needs_data
def test_tampered_reference_file_is_rejected(tmp_path, monkeypatch):
    from spaceevo_lib.data.reference import reference_dir, reference_file
    src = reference_dir() / "onnx_latency.csv"
    dst = tmp_path / "spaceevo-reference" / "onnx_latency.csv"
    dst.parent.mkdir()
    shutil.copyfile(src, dst)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert reference_file("onnx_latency.csv", verify=True) == dst
    dst.write_text(dst.read_text().replace("7.85", "7.86"))
    with pytest.raises(CorruptDataError, match="expected"):
        reference_file("onnx_latency.csv", verify=True)
