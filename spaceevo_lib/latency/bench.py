"""Time a zoo of items on several devices, checkpointing every record into the store.

``measure_zoo`` is what the latency chapter calls. Each (item, device) record is appended to a
Parquet table in the chapter's run folder as soon as it is measured, so an interrupted run
resumes where it stopped, and a rerun with unchanged items, devices and protocol measures
nothing again (the record's ``key`` column says what it was made from).
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from .. import __version__
from .._io import stable_hash
from .devices import get_device, measure
from .protocol import Protocol
from .zoo import ZooItem

log = logging.getLogger(__name__)


def calibration_inputs(images_nchw: np.ndarray, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Real-image inputs of ``shape`` (1, C, H, W) for calibration and timing.

    RGB inputs are the images resized to H x W. Inputs with other channel counts (single
    operators and blocks inside a network) are the resized images passed through a fixed random
    1x1 projection 3 -> C, scaled to unit variance: feature maps with the spatial statistics of
    real photographs rather than Gaussian noise.
    """
    import torch
    import torch.nn.functional as F
    _, c, h, w = shape
    x = torch.from_numpy(np.ascontiguousarray(images_nchw, dtype=np.float32))
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if c != 3:
        g = torch.Generator().manual_seed(seed)
        proj = torch.randn(c, 3, generator=g) / np.sqrt(3.0)
        x = torch.einsum("oc,nchw->nohw", proj, x)
        x = x / x.std().clamp_min(1e-6)
    return x.numpy().astype(np.float32)


def record_key(item: ZooItem, device: str, options: dict, protocol: Protocol) -> str:
    """What a record depends on: the item, the device and its options, the protocol, and the
    library version. Unchanged keys are reused; anything else is measured again."""
    return stable_hash({"item": item.item, "spec": item.params, "device": device,
                        "options": options, "protocol": protocol.as_dict(),
                        "spaceevo_lib": __version__})[:16]


def measure_zoo(items: Iterable[ZooItem], devices: Sequence[str], images_nchw: np.ndarray,
                run, protocol: Protocol = Protocol(), device_options: dict | None = None,
                table: str = "measurements", seed: int = 0, progress: bool = True):
    """Measure every item on every device; returns the table rows of these items and devices.

    ``images_nchw``: normalised real images (N, 3, H, W) used to calibrate INT8 and as the
    timed input. ``run``: the chapter's :class:`spaceevo_lib.store.Run`; the table is saved
    there after every record. ``device_options``: per-device keyword options, e.g.
    ``{"ort-vnni": {"fmt": "qop-u8s8"}}``.
    """
    import pandas as pd
    import torch
    from tqdm import tqdm

    from ..nn import recalibrate_bn
    items = list(items)
    device_options = device_options or {}
    devs = {name: get_device(name, **device_options.get(name, {})) for name in devices}
    for d in devs.values():
        d.require()  # a missing runtime stops here, before any work
    try:
        done = run.load(table)
    except FileNotFoundError:
        done = pd.DataFrame()
    have = set(done["key"]) if "key" in done else set()
    wanted = []
    todo = []
    for item in items:
        for name in devices:
            key = record_key(item, name, device_options.get(name, {}), protocol)
            wanted.append(key)
            if key not in have:
                todo.append((item, name, key))
    rows = done.to_dict("records") if len(done) else []
    bar = tqdm(todo, desc="latency", unit="record", disable=not progress or not todo)
    current, module, calib = None, None, None
    for item, name, key in bar:
        bar.set_postfix_str(f"{item.item} @ {name}")
        if item is not current:
            current, module = item, item.build(seed)
            calib = calibration_inputs(images_nchw, item.input_shape, seed)
            recalibrate_bn(module, [torch.from_numpy(calib)])  # realistic activation scales
        meta = {"key": key, "item": item.item, "kind": item.kind, "op_type": item.op_type,
                **{f"p_{k}": v for k, v in item.params.items()}}
        rows.append(measure(devs[name], module, item.input_shape, calib, protocol, meta=meta))
        run.save(pd.DataFrame(rows), table)  # checkpoint: nothing measured is ever lost
    out = pd.DataFrame(rows)
    return out[out["key"].isin(wanted)].reset_index(drop=True)


def calibration_images(n: int, seed: int = 0, resolution: int = 64) -> np.ndarray:
    """``n`` real Imagenette test images (N, 3, H, W), normalised as the models expect.

    The test split is used because nothing is trained on it; a seeded draw keeps classes mixed.
    """
    from ..data import load_imagenette
    from ..data.imagenette import IMAGENET_MEAN, IMAGENET_STD
    data = load_imagenette(resolution)
    idx = np.sort(np.random.default_rng(seed).choice(len(data.x_test), size=n, replace=False))
    x = data.x_test[idx].astype(np.float32) / 255.0  # (N, H, W, 3)
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, H, W)


def device_table(devices: Sequence[str], quant_format: str | None = None):
    """The devices of a run: runtime, INT8 recipe and the versions that will be recorded."""
    import pandas as pd
    rows = []
    for name in devices:
        dev = get_device(name, **({"fmt": quant_format} if name == "ort-vnni" and quant_format
                                  else {}))
        versions = {k: v for k, v in dev.versions().items() if v}
        rows.append({"device": name, "runtime": dev.runtime,
                     "xnnpack": "n/a" if dev.xnnpack is None else ("on" if dev.xnnpack else "off"),
                     "int8 recipe": getattr(dev, "fmt", "tflite full-integer int8"),
                     "versions": ", ".join(f"{k.removesuffix('_version')} {v}"
                                           for k, v in versions.items())})
    return pd.DataFrame(rows)
