"""The latency chapter's zoo as measurement jobs, and the real images every job is fed.

``measure_zoo`` turns (item, device) pairs into :class:`~spaceevo_lib.latency.jobs.Job` s and
measures them through the one measurement path, :func:`~spaceevo_lib.latency.jobs.run_jobs`:
records are checkpointed in the chapter's run folder, an interrupted run resumes where it
stopped, and a rerun with unchanged items, devices and protocol measures nothing again (the
record's ``key`` column says what it was made from).
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from .devices import get_device
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


def zoo_jobs(items: Iterable[ZooItem], devices: Sequence[str], protocol: Protocol = Protocol(),
             device_options: dict | None = None) -> list:
    """One measurement :class:`~spaceevo_lib.latency.jobs.Job` per (item, device)."""
    from .jobs import Job
    from .zoo import build_item
    device_options = device_options or {}
    jobs = []
    for item in items:
        meta = {"item": item.item, "kind": item.kind, "op_type": item.op_type,
                **{f"p_{k}": v for k, v in item.params.items()}}
        for name in devices:
            jobs.append(Job.make(name, build_item, {"kind": item.kind, "op_type": item.op_type,
                                                    "spec": item.spec},
                                 item.input_shape, meta, device_options.get(name, {}),
                                 protocol))
    return jobs


def measure_zoo(items: Iterable[ZooItem], devices: Sequence[str], images_nchw: np.ndarray,
                run, protocol: Protocol = Protocol(), device_options: dict | None = None,
                table: str = "measurements", seed: int = 0, workers: int = 0,
                progress: bool = True):
    """Measure every item on every device; returns the table rows of these items and devices.

    ``images_nchw``: normalised real images (N, 3, H, W) used to calibrate INT8 and as the
    timed input. ``run``: the chapter's :class:`spaceevo_lib.store.Run`. ``device_options``:
    per-device keyword options, e.g. ``{"ort-vnni": {"fmt": "qop-u8s8"}}``. The measurement
    path is :func:`~spaceevo_lib.latency.jobs.run_jobs` (``workers`` convert in parallel, the
    timing runs on an idle CPU, records are checkpointed and reused).
    """
    from .jobs import run_jobs
    items = list(items)
    for name in devices:  # unknown devices and missing runtimes stop here, before any work
        get_device(name, **(device_options or {}).get(name, {})).require()
    jobs = zoo_jobs(items, devices, protocol, device_options)
    return run_jobs(jobs, images_nchw, run, table, protocol, workers, seed, progress=progress)


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
