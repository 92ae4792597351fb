"""The deployed-file format: every INT8 (and FP32 partner) file the study deploys carries its
preprocessing as a JSON ``preprocessing`` entry (ONNX ``metadata_props``, TFLite model
metadata): input layout, size, pixel scale, mean, std, class names. A reader needs nothing but
the file (:func:`read_preprocessing`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_path

METADATA_KEY = "preprocessing"


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
    from .keras import load_triton_before_tensorflow  # heavy: imports torch
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_triton_before_tensorflow()
    from tensorflow.lite.tools import flatbuffer_utils  # heavy: tensorflow
    return flatbuffer_utils


def write_onnx_metadata(path: Path, pre: Preprocessing) -> Path:
    import onnx  # heavy: onnx
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
        import onnx  # heavy: onnx
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
                     "spaceevo_lib (quant.deploy)")
