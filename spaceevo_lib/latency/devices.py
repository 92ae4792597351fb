"""Benchmark devices (runtime + conversion recipe), registered by name.

A *device* turns a PyTorch module into an FP32 and an INT8 model for one runtime and gives
back two runners with the same interface (``set_input(x_nchw)``, ``invoke()``, ``run(x)``).
Adding a device is one subclass of :class:`Device` decorated with :func:`register`.

Every record a device's measurement makes has the schema of :mod:`.records`; timing is
:mod:`.protocol`, the one measurement path :mod:`.jobs`. Registered devices:

* ``ort-vnni``: legacy ONNX export, static INT8 with onnxruntime (``fmt`` option: ``qop-u8s8``
  is the SpaceEvo reference's QOperator protocol, ``qdq-s8s8`` onnxruntime's x86 default),
  CPUExecutionProvider. On a host with AVX512-VNNI this is the paper's Intel CPU setting.
* ``tflite``: Keras mirror, full-integer TFLite (int8 in/out) calibrated on the same real
  images, LiteRT interpreter with XNNPACK (the default delegate on CPU).
* ``tflite-noxnn``: the same models with XNNPACK off: the reference's Pixel 4 setting.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch

from .._io import atomic_path
from ..export.keras import to_keras
from ..export.tflite import TFLiteRunner, convert_tflite
from .memory import release_keras
from .records import shape_str

log = logging.getLogger(__name__)

#: The paper's two devices and the devices of this study that stand in for them.
PAPER_DEVICE = {"ort-vnni": "ort-vnni", "tflite": "tflite", "tflite-noxnn": "tflite"}


class RuntimeUnavailable(RuntimeError):
    """A device's runtime or converter is not installed; the message says how to install it."""


@dataclass
class CompiledPair:
    """FP32 and INT8 models of one module on one device; both runners take NCHW float32."""

    fp32: Any
    int8: Any
    quant_format: str
    per_channel: bool
    fp32_path: Path
    int8_path: Path
    fp32_bytes: int
    int8_bytes: int


def _dist_version(*dists: str) -> str | None:
    for d in dists:
        try:
            return importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Device(ABC):
    """One benchmark target: a runtime plus the recipe that makes its FP32 and INT8 models."""

    name: ClassVar[str]
    runtime: ClassVar[str]
    # import name -> what to install if it is missing
    packages: ClassVar[dict[str, str]] = {}
    xnnpack: bool | None = None

    def missing(self) -> list[str]:
        return [mod for mod in self.packages if not _module_present(mod)]

    def available(self) -> bool:
        return not self.missing()

    def require(self) -> None:
        """Raise :class:`RuntimeUnavailable` naming each missing package and its install line."""
        missing = self.missing()
        if missing:
            lines = "\n".join(f"  {m}: {self.packages[m]}" for m in missing)
            raise RuntimeUnavailable(
                f"device {self.name!r} ({self.runtime}) cannot run: missing Python "
                f"module(s) {', '.join(missing)}. Install with:\n{lines}")

    @abstractmethod
    def versions(self) -> dict[str, str | None]:
        """Versions of the packages that made and ran the models, keyed by VERSION_COLUMNS."""

    @abstractmethod
    def compile(self, module, input_shape_nchw: Sequence[int], calibration_nchw: np.ndarray,
                workdir: Path, threads: int = 1) -> CompiledPair:
        """Write FP32 and INT8 models of ``module`` into ``workdir`` and load their runners."""

    @abstractmethod
    def load(self, fp32_path: Path, int8_path: Path, threads: int = 1) -> tuple[Any, Any]:
        """FP32 and INT8 runners of models that :meth:`compile` wrote (possibly in another
        process: the parallel job runner compiles in workers and times in the parent)."""

    def check_outputs(self, pair: CompiledPair, images_nchw: np.ndarray,
                      module=None) -> dict[str, float]:
        """INT8-vs-FP32 agreement (and FP32-vs-torch error if ``module`` is given).

        Returns ``int8_pearson_r`` over all output values, ``int8_top1_agreement`` (NaN unless
        the outputs are logits, shape (1, K)) and ``fp32_max_abs_err`` (NaN without module).
        """
        images = np.asarray(images_nchw, dtype=np.float32)
        f = np.stack([pair.fp32.run(images[i:i + 1]) for i in range(len(images))])
        q = np.stack([pair.int8.run(images[i:i + 1]) for i in range(len(images))])
        a, b = f.reshape(len(images), -1), q.reshape(len(images), -1)
        r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() and b.std() else math.nan
        top1 = (float(np.mean(a.argmax(1) == b.argmax(1)))
                if f.ndim == 3 and f.shape[1] == 1 else math.nan)
        err = math.nan
        if module is not None:
            m = copy.deepcopy(module).eval()
            with torch.no_grad():
                ref = m(torch.from_numpy(images)).numpy()
            err = float(np.abs(ref.reshape(a.shape) - a).max())
        return {"int8_pearson_r": r, "int8_top1_agreement": top1, "fp32_max_abs_err": err}


_REGISTRY: dict[str, type[Device]] = {}


def register(cls: type[Device]) -> type[Device]:
    """Class decorator: make a device available to :func:`get_device` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_devices() -> list[str]:
    return sorted(_REGISTRY)


def get_device(name: str, **options) -> Device:
    """A device by registered name; ``options`` go to its constructor (e.g. ``fmt=``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown device {name!r}; valid names: {', '.join(list_devices())}")
    return _REGISTRY[name](**options)


# ---------------------------------------------------------------------------------------------
# onnxruntime


@register
class OrtVnniDevice(Device):
    """onnxruntime on the x86 CPU: the paper's VNNI device when the host has VNNI."""

    name = "ort-vnni"
    runtime = "onnxruntime"
    packages = {"onnx": "pip install onnx==1.23.2",
                "onnxruntime": "pip install onnxruntime==1.31.1",
                "onnxscript": "pip install onnxscript==0.7.2"}

    def __init__(self, fmt: str | None = None, per_channel: bool = True, opset: int = 17):
        if fmt is not None and not isinstance(fmt, str):
            raise TypeError(f"fmt must be a string; got {type(fmt).__name__}")
        self.fmt, self.per_channel, self.opset = fmt, per_channel, opset
        if self.available():
            from ..export.onnx import DEFAULT_FORMAT, QUANT_FORMATS  # heavy: imports torch
            self.fmt = fmt or DEFAULT_FORMAT
            if self.fmt not in QUANT_FORMATS:
                raise ValueError(f"unknown quantization format {self.fmt!r}; "
                                 f"allowed: {sorted(QUANT_FORMATS)}")

    def versions(self) -> dict[str, str | None]:
        return {"torch_version": _dist_version("torch"),
                "onnxruntime_version": _dist_version("onnxruntime"),
                "onnx_version": _dist_version("onnx")}

    def compile(self, module, input_shape_nchw, calibration_nchw, workdir, threads=1):
        self.require()
        from ..export.onnx import export_onnx, quantize_onnx  # heavy: imports torch
        workdir = Path(workdir)
        fp32 = export_onnx(module, input_shape_nchw, workdir / f"{self.name}.fp32.onnx",
                           opset=self.opset)
        int8 = quantize_onnx(fp32, workdir / f"{self.name}.int8.{self.fmt}.onnx",
                             calibration_nchw, fmt=self.fmt, per_channel=self.per_channel)
        return CompiledPair(*self.load(fp32, int8, threads), self.fmt, self.per_channel,
                            fp32, int8, fp32.stat().st_size, int8.stat().st_size)

    def load(self, fp32_path, int8_path, threads=1):
        from ..export.runner import OrtRunner  # heavy: imports onnx
        return OrtRunner(fp32_path, threads), OrtRunner(int8_path, threads)


# ---------------------------------------------------------------------------------------------
# TFLite / LiteRT


class _NchwAdapter:
    """Lets a TFLite runner (NHWC) take NCHW inputs and give NCHW outputs like ORT's.

    The transpose happens in ``set_input``/``run`` only, never inside the timed ``invoke``.
    """

    def __init__(self, runner: Any):
        self.runner = runner

    def set_input(self, x_nchw: np.ndarray) -> None:
        self.runner.set_input(np.ascontiguousarray(np.asarray(x_nchw, np.float32)
                                                   .transpose(0, 2, 3, 1)))

    def invoke(self) -> None:
        self.runner.invoke()

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x_nchw, np.float32).transpose(0, 2, 3, 1))
        out = np.asarray(self.runner.run(x))
        return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


# The last conversion, reused by the next TFLite device that gets the same module and inputs.
_CONVERTED: dict[str, dict[str, bytes]] = {}


def _conversion_key(module, input_shape_nchw, calib_nhwc: np.ndarray) -> str:
    # the structure (repr) and the weights: parameter-free modules differ only in structure
    h = hashlib.sha256(repr((tuple(input_shape_nchw), module)).encode())
    h.update(calib_nhwc.tobytes())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@register
class TFLiteDevice(Device):
    """LiteRT interpreter on the host CPU with XNNPACK (LiteRT's default CPU path)."""

    name = "tflite"
    runtime = "litert"
    xnnpack = True
    packages = {"tensorflow": "pip install tensorflow-cpu==2.21.0",
                "ai_edge_litert": "pip install ai-edge-litert==2.3.0",
                "spaceevo_lib.export.keras": "part of spaceevo_lib: update/reinstall the project",
                "spaceevo_lib.export.tflite": "part of spaceevo_lib: update/reinstall the project"}
    # TFLite full-integer: int8 activations (asymmetric), int8 weights (per-channel for convs)
    quant_format = "tflite-full-s8s8"

    def versions(self) -> dict[str, str | None]:
        return {"torch_version": _dist_version("torch"),
                "tensorflow_version": _dist_version("tensorflow-cpu", "tensorflow"),
                "litert_version": _dist_version("ai-edge-litert")}

    def compile(self, module, input_shape_nchw, calibration_nchw, workdir, threads=1):
        self.require()
        workdir = Path(workdir)
        calib = np.ascontiguousarray(np.asarray(calibration_nchw, np.float32)
                                     .transpose(0, 2, 3, 1))
        key = _conversion_key(module, input_shape_nchw, calib)
        if key not in _CONVERTED:  # tflite and tflite-noxnn run the same converted models
            keras_model = to_keras(module, tuple(input_shape_nchw))
            _CONVERTED.clear()
            _CONVERTED[key] = {"fp32": convert_tflite(keras_model, "fp32", None),
                               "int8": convert_tflite(keras_model, "int8", calib)}
            del keras_model
            release_keras()
        blobs = _CONVERTED[key]
        paths = {}
        for prec, blob in blobs.items():
            paths[prec] = workdir / f"tflite.{prec}.tflite"  # same models for every XNNPACK mode
            with atomic_path(paths[prec]) as tmp:
                tmp.write_bytes(blob)
        return CompiledPair(*self.load(paths["fp32"], paths["int8"], threads),
                            self.quant_format, True, paths["fp32"], paths["int8"],
                            len(blobs["fp32"]), len(blobs["int8"]))

    def load(self, fp32_path, int8_path, threads=1):
        return tuple(_NchwAdapter(TFLiteRunner(Path(p).read_bytes(), threads=threads,
                                               xnnpack=self.xnnpack))
                     for p in (fp32_path, int8_path))


@register
class TFLiteNoXnnDevice(TFLiteDevice):
    """LiteRT with XNNPACK off: the built-in kernels, as the reference measured on Pixel 4."""

    name = "tflite-noxnn"
    xnnpack = False


# ---------------------------------------------------------------------------------------------
# what a run's devices are, and which inputs a module takes


def device_table(devices: Sequence[str], quant_format: str | None = None):
    """The devices of a run: runtime, INT8 recipe and the versions that will be recorded."""
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


def check_input_shape(module, input_shape_nchw: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate an NCHW batch-1 shape and that ``module`` accepts it (dry forward pass)."""
    try:
        shape = tuple(int(d) for d in input_shape_nchw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"input shape must be 4 ints (N, C, H, W); got {input_shape_nchw!r}"
                         ) from e
    if len(shape) != 4 or any(d <= 0 for d in shape):
        raise ValueError(f"impossible input shape {shape}: need 4 positive ints (N, C, H, W)")
    if shape[0] != 1:
        raise ValueError(f"input shape {shape_str(shape)}: latency is measured at batch 1")
    model = copy.deepcopy(module).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"input shape {shape_str(shape)} does not fit "
                         f"{type(module).__name__}: {first}") from e
    return shape  # type: ignore[return-value]
