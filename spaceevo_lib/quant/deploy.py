"""Deployed INT8 files of a trained network, each carrying its preprocessing, and their
accuracy and latency measured **from the same files**.

Three INT8 routes (training-notes sections 2 and 3), each beside its FP32 partner file, so that
the latency devices time the pair as they time every network of the study:

* ``ort-lsq-qdq``: the LSQ+ network's learned scales and zero points in a QDQ file
  (:func:`spaceevo_lib.export.onnx.export_qdq`); onnxruntime fuses it into QLinearConv & co;
* ``ort-ptq``: onnxruntime static post-training quantization of the FP32 export, calibrated on
  real training images (the paper's deployment recipe, QOperator U8S8);
* ``tflite-ptq``: TFLite full-integer post-training quantization through the Keras mirror.

Every file holds a JSON ``preprocessing`` entry (ONNX ``metadata_props``, TFLite model
metadata): input layout, size, pixel scale, mean, std, class names. :func:`evaluate_file`
reads it back to feed the runtime, so the file is all a user needs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_path

METADATA_KEY = "preprocessing"
ROUTES = ("ort-lsq-qdq", "ort-ptq", "tflite-ptq")
#: The latency device that runs each route's files.
ROUTE_DEVICE = {"ort-lsq-qdq": "ort-vnni", "ort-ptq": "ort-vnni", "tflite-ptq": "tflite"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB uint8 images become the file's input: (``resize`` the shorter side and
    centre-crop to ``size`` where given), then ``(x * pixel_scale - mean) / std`` per channel,
    in ``layout`` (NCHW for ONNX, NHWC for TFLite), batch 1."""

    layout: str
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_scale: float = 1 / 255
    color: str = "RGB"
    classes: tuple[str, ...] = ()
    resize: int | None = None  # shorter side resized to this, then centre crop (None: as is)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> "Preprocessing":
        d = json.loads(s)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def apply(self, images_nhwc_uint8: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> float32 inputs in the file's layout."""
        x = np.asarray(images_nhwc_uint8, np.float32) * np.float32(self.pixel_scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if tuple(x.shape[1:3]) != tuple(self.size):
            raise ValueError(f"images are {x.shape[1]}x{x.shape[2]}; the file takes "
                             f"{self.size[0]}x{self.size[1]}")
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x)

    def with_layout(self, layout: str) -> "Preprocessing":
        return Preprocessing(**{**asdict(self), "layout": layout})


# ---------------------------------------------------------------------------- metadata


def _flatbuffer_utils():
    """TensorFlow's TFLite flatbuffer helpers (TensorFlow imported quietly, after triton:
    toolchain-notes)."""
    import os

    from ..export.keras import load_triton_before_tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_triton_before_tensorflow()
    from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils


def write_onnx_metadata(path: Path, pre: Preprocessing) -> Path:
    import onnx
    proto = onnx.load(str(path))
    for p in [p for p in proto.metadata_props if p.key == METADATA_KEY]:
        proto.metadata_props.remove(p)
    proto.metadata_props.add(key=METADATA_KEY, value=pre.to_json())
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def write_tflite_metadata(path: Path, pre: Preprocessing) -> Path:
    """Add a ``preprocessing`` metadata entry (a buffer holding the JSON) to a TFLite file."""
    fb = _flatbuffer_utils()
    model = fb.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    buf = fb.schema_fb.BufferT()
    buf.data = np.frombuffer(pre.to_json().encode(), dtype=np.uint8)
    model.buffers.append(buf)
    meta = fb.schema_fb.MetadataT()
    meta.name, meta.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()
                      and m.name != METADATA_KEY] + [meta]
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(fb.convert_object_to_bytearray(model)))
    return path


def read_preprocessing(path: Path | str) -> Preprocessing:
    """The preprocessing stored in a deployed ONNX or TFLite file (ValueError if none)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
                 .metadata_props}
        if METADATA_KEY in props:
            return Preprocessing.from_json(props[METADATA_KEY])
    elif path.suffix == ".tflite":
        fb = _flatbuffer_utils()
        model = fb.convert_bytearray_to_object(bytearray(path.read_bytes()))
        for m in model.metadata or []:
            name = m.name.decode() if isinstance(m.name, bytes) else m.name
            if name == METADATA_KEY:
                return Preprocessing.from_json(bytes(model.buffers[m.buffer].data).decode())
    raise ValueError(f"{path.name} carries no {METADATA_KEY!r} metadata: it was not written by "
                     "spaceevo_lib.quant.deploy")


# ---------------------------------------------------------------------------- deployment


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
    from ..latency.devices import get_device
    if route not in ROUTES:
        raise ValueError(f"unknown deployment route {route!r}; allowed: {', '.join(ROUTES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = (1, 3, *pre.size)
    dev = get_device(ROUTE_DEVICE[route])
    if route == "ort-lsq-qdq":
        from ..export.onnx import export_onnx, export_qdq
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


# ---------------------------------------------------------------------------- evaluation


def _runner(path: Path, threads: int):
    if path.suffix == ".onnx":
        from ..export.onnx import OrtRunner
        return OrtRunner(path, threads)
    from ..export.tflite import TFLiteRunner
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
    from ..latency.jobs import Job, time_jobs
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
