"""Deployed INT8 files of a trained network, each carrying its preprocessing, and their
accuracy and latency measured **from the same files**.

Three INT8 routes (training-notes sections 2 and 3), each beside its FP32 partner file, so that
the latency devices time the pair as they time every network of the study:

* ``ort-lsq-qdq``: the LSQ+ network's learned scales and zero points in a QDQ file
  (:func:`export_qdq`); onnxruntime fuses it into QLinearConv & co;
* ``ort-ptq``: onnxruntime static post-training quantization of the FP32 export, calibrated on
  real training images (the paper's deployment recipe, QOperator U8S8);
* ``tflite-ptq``: TFLite full-integer post-training quantization through the Keras mirror.

Every file holds its preprocessing (:mod:`spaceevo_lib.export.metadata`, the deployed-file
format); :func:`evaluate_file` reads it back to feed the runtime, so the file is all a user
needs.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._io import atomic_path, file_hash
from ..export.metadata import (Preprocessing, read_preprocessing, write_onnx_metadata,
                               write_tflite_metadata)
from ..export.tflite import TFLiteRunner
from ..latency.devices import get_device
from ..latency.jobs import Job, time_jobs
from .prepare import frozen_for_export

ROUTES = ("ort-lsq-qdq", "ort-ptq", "tflite-ptq")
#: The latency device that runs each route's files.
ROUTE_DEVICE = {"ort-lsq-qdq": "ort-vnni", "ort-ptq": "ort-vnni", "tflite-ptq": "tflite"}


# ---------------------------------------------------------------------------- deployment


def export_qdq(qmodel, input_shape_nchw: Sequence[int], path: Path | str,
               metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """The deployed INT8 file of an LSQ+ network (:func:`spaceevo_lib.quant.quantize_model`)
    with its **learned** scales and zero points: QDQ format, int8 weights per channel, int32
    biases, uint8 activations; onnxruntime's optimizer fuses it into QLinearConv & co.
    ``metadata`` (e.g. preprocessing) is stored as the file's metadata_props."""
    import onnx  # heavy: onnx

    from ..export.onnx import export_onnx  # heavy: imports torch
    from ..export.qdq import rewrite_learned_qdq  # heavy: imports onnx
    path = Path(path)
    frozen = frozen_for_export(qmodel)
    with atomic_path(path) as tmp:
        export_onnx(frozen, input_shape_nchw, tmp, opset=opset)
        proto = onnx.load(str(tmp))
        rewrite_learned_qdq(proto)
        for k, v in (metadata or {}).items():
            proto.metadata_props.add(key=str(k), value=str(v))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path




@dataclass(frozen=True)
class Deployed:
    """One route's INT8 file and its FP32 partner (paths inside the run folder)."""

    route: str
    device: str
    fp32_path: Path
    int8_path: Path
    quant_format: str
    per_channel: bool


def deploy(route: str, fp32_model, qat_model, calibration_nchw: np.ndarray,
           pre: Preprocessing, out_dir: Path | str, name: str) -> Deployed:
    """Write ``route``'s INT8 file (and its FP32 partner) for a trained network into
    ``out_dir`` as ``<name>.<route>.int8.<ext>``, with ``pre`` in their metadata.

    ``fp32_model``: the trained FP32 network (BN not folded); ``qat_model``: its LSQ+ version
    (only ``ort-lsq-qdq`` uses it); ``calibration_nchw``: normalised training images for the
    post-training routes."""
    if route not in ROUTES:
        raise ValueError(f"unknown deployment route {route!r}; allowed: {', '.join(ROUTES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (1, 3, *pre.size)
    dev = get_device(ROUTE_DEVICE[route])
    if route == "ort-lsq-qdq":
        from ..export.onnx import export_onnx  # heavy: imports torch
        fp32 = export_onnx(fp32_model, shape, out / f"{name}.fp32.onnx")
        int8 = export_qdq(qat_model, shape, out / f"{name}.{route}.int8.onnx")
        pre_onnx = pre.with_layout("NCHW")
        for p in (fp32, int8):
            write_onnx_metadata(p, pre_onnx)
        return Deployed(route, dev.name, fp32, int8, "qdq-u8s8-learned", True)
    with tempfile.TemporaryDirectory(prefix="spaceevo-deploy-") as tmp:
        pair = dev.compile(fp32_model, shape, calibration_nchw, Path(tmp))
        ext = pair.int8_path.suffix
        fp32 = out / f"{name}.fp32{ext}"
        int8 = out / f"{name}.{route}.int8{ext}"
        for src, dst in ((pair.fp32_path, fp32), (pair.int8_path, int8)):
            with atomic_path(dst) as t:
                shutil.copyfile(src, t)
        del pair
    if ext == ".onnx":
        for p in (fp32, int8):
            write_onnx_metadata(p, pre.with_layout("NCHW"))
        fmt = dev.fmt
    else:
        for p in (fp32, int8):
            write_tflite_metadata(p, pre.with_layout("NHWC"))
        fmt = dev.quant_format
    return Deployed(route, dev.name, fp32, int8, fmt, True)


def copy_deployed(route: str, name: str, source: Path | str, out_dir: Path | str) -> Deployed:
    """The pair :func:`deploy` wrote for ``name`` on ``route`` in ``source``, copied into
    ``out_dir`` unchanged (a later chapter reusing an earlier one's files keeps its artifacts
    in its own run folder). FileNotFoundError names the missing file."""
    dev = get_device(ROUTE_DEVICE[route])
    ext = ".onnx" if dev.name == "ort-vnni" else ".tflite"
    out = []
    for file in (f"{name}.fp32{ext}", f"{name}.{route}.int8{ext}"):
        src = Path(source) / file
        if not src.is_file():
            raise FileNotFoundError(f"no deployed file {src}: run the chapter that deploys "
                                    f"{name} first")
        with atomic_path(Path(out_dir) / file) as t:
            shutil.copyfile(src, t)
        out.append(Path(out_dir) / file)
    fmt = ("qdq-u8s8-learned" if route == "ort-lsq-qdq" else
           dev.fmt if ext == ".onnx" else dev.quant_format)
    return Deployed(route, dev.name, out[0], out[1], fmt, True)


# ---------------------------------------------------------------------------- evaluation


def _runner(path: Path, threads: int):
    if path.suffix == ".onnx":
        from ..export.runner import OrtRunner  # heavy: imports onnx
        return OrtRunner(path, threads)
    return TFLiteRunner(path.read_bytes(), threads=threads, xnnpack=True)


def predict_file(path: Path | str, images_nhwc_uint8: np.ndarray, threads: int = 1
                 ) -> np.ndarray:
    """Logits of a deployed file for raw images, preprocessed as its metadata says, one
    image at a time (the files have a fixed batch of 1)."""
    path = Path(path)
    pre = read_preprocessing(path)
    runner = _runner(path, threads)
    x = pre.apply(images_nhwc_uint8)
    return np.concatenate([np.asarray(runner.run(x[i:i + 1])).reshape(1, -1)
                           for i in range(len(x))])


def evaluate_file(path: Path | str, images_nhwc_uint8: np.ndarray, labels: np.ndarray,
                  threads: int = 1) -> dict:
    """Top-1 and top-5 (%) of a deployed file on labelled raw images, with its runtime."""
    logits = predict_file(path, images_nhwc_uint8, threads)
    y = np.asarray(labels)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return {"top1": float(np.mean(top5[:, 0] == y) * 100),
            "top5": float(np.mean((top5 == y[:, None]).any(1)) * 100), "images": int(len(y))}


def time_deployed(files: Sequence[Deployed], images_nchw: np.ndarray, protocol, seed: int = 0,
                  progress: bool = False):
    """Latency records of deployed FP32/INT8 pairs, timed together by the study's visit
    protocol (:func:`spaceevo_lib.latency.jobs.time_jobs`), on the files themselves."""
    jobs, infos = [], []
    for d in files:
        pre = read_preprocessing(d.int8_path)
        jobs.append(Job(d.device, time_deployed, (), (1, 3, *pre.size),
                        (("route", d.route), ("artifact", d.int8_path.name)), (),
                        f"{d.int8_path.stem}"))
        infos.append({"fp32_path": str(d.fp32_path), "int8_path": str(d.int8_path),
                      "fp32_bytes": d.fp32_path.stat().st_size,
                      "int8_bytes": d.int8_path.stat().st_size,
                      "quant_format": d.quant_format, "per_channel": d.per_channel,
                      "calibration_images": 0,
                      "check": dict.fromkeys(("int8_pearson_r", "int8_top1_agreement",
                                              "fp32_max_abs_err"), float("nan"))})
    records, _ = time_jobs(jobs, infos, images_nchw, protocol, seed, progress)
    return records


def timed_files(files: Sequence[Deployed], images_nchw: np.ndarray, protocol, seed: int = 0,
                run=None, name: str = "deployed_latency", progress: bool = False):
    """:func:`time_deployed` as a table, one row per file pair. With ``run``, the table is
    stored there under ``name`` and reused while every file's content (sha256), the protocol
    and the seed are unchanged and the CPU was idle while it was timed: a rebuild re-times
    nothing but a timing that another process disturbed."""
    files = list(files)

    def measure() -> pd.DataFrame:
        return pd.DataFrame(time_deployed(files, images_nchw, protocol, seed, progress))

    if run is None:
        return measure()
    key = {"files": [[Path(p).name, file_hash(p)] for d in files
                     for p in (d.fp32_path, d.int8_path)],
           "protocol": protocol.as_dict(), "seed": seed}
    return run.cached(name, measure, key=key,
                      reuse=lambda t: "busy" not in t or not t["busy"].fillna(False).any())
