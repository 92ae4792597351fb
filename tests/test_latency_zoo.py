"""measure_zoo: records land in the store one by one, are reused, and bad input writes nothing."""

import pytest

from spaceevo_lib import Run
from spaceevo_lib.data import calibration_images
from spaceevo_lib.latency import Protocol, calibration_inputs, measure_zoo
from spaceevo_lib.latency.zoo import ZooItem

from conftest import needs_data

QUICK = Protocol(visits=2, warmup=1, warmup_ms=0, runs=3, budget_ms=0, idle_check_s=0)
ITEMS = [ZooItem("operator", "conv1x1", (("channels", 8), ("hw", 8))),
         ZooItem("operator", "se", (("channels", 8), ("hw", 8)))]


@pytest.fixture
def images():
    import numpy as np
    return np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype("float32")


def test_records_are_stored_and_reused(runs, images, monkeypatch):
    run = Run("latency", "smoke")
    table = measure_zoo(ITEMS, ["ort-vnni"], images, run, QUICK, progress=False)
    assert list(table.item) == ["operator/conv1x1/c8/hw8", "operator/se/c8/hw8"]
    assert (table.fp32_median_ms > 0).all() and table.key.is_unique
    assert len(run.load("measurements")) == 2

    def boom(*a, **k):
        raise AssertionError("measured again")

    from spaceevo_lib.latency import jobs
    monkeypatch.setattr(jobs, "_compile", boom)
    again = measure_zoo(ITEMS, ["ort-vnni"], images, run, QUICK, progress=False)
    assert list(again.key) == list(table.key)  # nothing re-measured
    with pytest.raises(AssertionError, match="measured again"):  # a new protocol is measured
        measure_zoo(ITEMS, ["ort-vnni"], images, run, Protocol(runs=4), progress=False)


def test_unknown_device_stops_before_any_work(runs, images):
    run = Run("latency", "smoke")
    with pytest.raises(KeyError, match="ort-vnni"):
        measure_zoo(ITEMS, ["gpu"], images, run, QUICK, progress=False)
    assert not run.path.exists()


def test_calibration_inputs_keep_image_structure(images):
    x = calibration_inputs(images, (1, 16, 8, 8))
    assert x.shape == (4, 16, 8, 8) and abs(float(x.std()) - 1) < 1e-3
    assert calibration_inputs(images, (1, 3, 16, 16)).shape == (4, 3, 16, 16)


@needs_data
def test_calibration_images_are_real_and_normalised():
    """Undoing the ImageNet normalisation gives 8-bit pixels again (so the images are real
    and normalised exactly once); unnormalised 0-1 images would not land on the 1/255 grid."""
    import numpy as np
    from spaceevo_lib.data.imagenette import IMAGENET_MEAN, IMAGENET_STD
    x = calibration_images(6, seed=1)
    assert x.shape == (6, 3, 64, 64) and x.dtype == np.float32
    pixels = 255 * (x * np.array(IMAGENET_STD)[:, None, None]
                    + np.array(IMAGENET_MEAN)[:, None, None])
    assert pixels.min() > -0.01 and pixels.max() < 255.01
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    assert float(x.std()) > 0.5  # many distinct pixel values, not one flat image


def test_tflite_devices_share_conversions_only_for_the_same_network(images, tmp_path):
    from spaceevo_lib.latency.devices import get_device
    shape = (1, 8, 8, 8)
    calib = calibration_inputs(images, shape)
    add, gap = (ZooItem("operator", op, (("channels", 8), ("hw", 8))).build()
                for op in ("add", "gap"))
    a = get_device("tflite").compile(add, shape, calib, tmp_path)
    b = get_device("tflite-noxnn").compile(gap, shape, calib, tmp_path)
    assert a.fp32.run(calib[:1]).shape != b.fp32.run(calib[:1]).shape
