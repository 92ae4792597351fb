"""Benchmark devices (runtime + conversion recipe) and ``measure``: one latency record.

A *device* turns a PyTorch module into an FP32 and an INT8 model for one runtime and gives
back two runners with the same interface (``set_input(x_nchw)``, ``invoke()``, ``run(x)``).
Adding a device is one subclass of :class:`Device` decorated with :func:`register`.

Registered devices:

* ``ort-vnni``: legacy ONNX export, static INT8 with onnxruntime (``fmt`` option: ``qop-u8s8``
  is the SpaceEvo reference's QOperator protocol, ``qdq-s8s8`` onnxruntime's x86 default),
  CPUExecutionProvider. On a host with AVX512-VNNI this is the paper's Intel CPU setting.
* ``tflite``: Keras mirror, full-integer TFLite (int8 in/out) calibrated on the same real
  images, LiteRT interpreter with XNNPACK (the default delegate on CPU).
* ``tflite-noxnn``: the same models with XNNPACK off: the reference's Pixel 4 setting.

Record schema (one flat dict per measurement, one pandas row; the predictor chapter trains on
these). Caller ``meta`` keys come first (e.g. ``item``, ``kind``, ``op_type``, ``cin``,
``cout``, ``hw``...), then :data:`RECORD_COLUMNS`:

===================== ======= ================================================================
column                unit    meaning
===================== ======= ================================================================
device                        registered device name (``ort-vnni``, ``tflite``, ...)
runtime                       ``onnxruntime`` or ``litert``
torch_version                 torch that exported the model
onnxruntime_version           onnxruntime version (None for TFLite devices)
onnx_version                  onnx version (None for TFLite devices)
tensorflow_version            TensorFlow used for conversion (None for ORT)
litert_version                ai-edge-litert interpreter version (None for ORT)
cpu_model                     ``model name`` from /proc/cpuinfo
vnni                  bool    the CPU has avx512_vnni or avx_vnni
int8_flags                    space-joined INT8-relevant ISA flags (avx2, avx512*, *vnni...)
threads               count   intra-op threads
xnnpack               bool    XNNPACK delegate on (None for ORT)
quant_format                  INT8 recipe: ``qop-u8s8``, ``qdq-s8s8``, ``tflite-full-s8s8``
per_channel           bool    per-channel INT8 weights
input_shape                   ``1x3x224x224`` (NCHW, batch 1)
calibration_images    count   real images used to calibrate activation ranges
protocol_version              timing protocol version (latency.protocol.PROTOCOL_VERSION)
schedule                      ``interleaved`` (visits spread over the batch) or ``consecutive``
warmup, visits        count   Protocol settings: untimed runs per visit, visits per network
warmup_ms             ms      Protocol setting: least untimed time per precision per visit
runs, int8_runs       count   timed runs per visit (FP32, INT8), sized by Protocol.budget_ms
fp32_min_ms           ms      fastest FP32 run of all visits: the least disturbed one
fp32_median_of_min_ms ms      median over visits of each visit's fastest run
fp32_median_ms        ms      median over visits of each visit's median run
fp32_<stat>_a_ms      ms      the same statistics over the even visits (half a) ...
fp32_<stat>_b_ms      ms      ... and over the odd visits (half b): two independent
                              measurements, whose agreement is the record's repeatability
fp32_iqr_ms           ms      median over visits of the visit's interquartile range
fp32_rel_iqr          ratio   median over visits of IQR / median
int8_...                      the same columns for INT8
speedup               ratio   median over visits of (FP32 visit median / INT8 visit median)
speedup_iqr           ratio   IQR of the per-visit ratios
half_spread           ratio   largest |a / b - 1| of the ``min`` statistic over precisions
noisy                 bool    half_spread above Protocol.max_rel_spread
busy_cores            cores   most other CPU work seen by the idle checks before its visits
busy                  bool    busy_cores above Protocol.max_busy_cores: timed on a busy CPU
fp32_bytes            bytes   size of the FP32 model file
int8_bytes            bytes   size of the INT8 model file
int8_pearson_r        ratio   Pearson r of INT8 vs FP32 runtime outputs on check images
int8_top1_agreement   ratio   share of check images with the same argmax (NaN if not logits)
fp32_max_abs_err              max |runtime FP32 - torch| output difference (export sanity)
timestamp                     ISO 8601 UTC time the record was made
===================== ======= ================================================================
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import importlib.metadata
import importlib.util
import logging
import math
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .._io import atomic_path
from ..host import cpu_info
from .protocol import PRECISIONS, PROTOCOL_VERSION, STATS, Protocol, measure_pair

log = logging.getLogger(__name__)

VERSION_COLUMNS = ("torch_version", "onnxruntime_version", "onnx_version",
                   "tensorflow_version", "litert_version")
STAT_COLUMNS = tuple(f"{p}_{s}{h}_ms" for p in PRECISIONS for s in STATS
                     for h in ("", "_a", "_b"))
RECORD_COLUMNS = (
    "device", "runtime", *VERSION_COLUMNS, "cpu_model", "vnni", "int8_flags", "threads",
    "xnnpack", "quant_format", "per_channel", "input_shape", "calibration_images",
    "protocol_version", "schedule", "warmup", "warmup_ms", "visits", "runs", "int8_runs",
    *STAT_COLUMNS, "fp32_iqr_ms", "fp32_rel_iqr", "int8_iqr_ms", "int8_rel_iqr",
    "speedup", "speedup_iqr", "half_spread", "noisy", "busy_cores", "busy",
    "fp32_bytes", "int8_bytes", "int8_pearson_r", "int8_top1_agreement", "fp32_max_abs_err",
    "timestamp",
)


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
            import torch
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


def _copy_artifact(src: Path, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


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
            from ..export.onnx import DEFAULT_FORMAT, QUANT_FORMATS
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
        from ..export.onnx import export_onnx, quantize_onnx
        workdir = Path(workdir)
        fp32 = export_onnx(module, input_shape_nchw, workdir / f"{self.name}.fp32.onnx",
                           opset=self.opset)
        int8 = quantize_onnx(fp32, workdir / f"{self.name}.int8.{self.fmt}.onnx",
                             calibration_nchw, fmt=self.fmt, per_channel=self.per_channel)
        return CompiledPair(*self.load(fp32, int8, threads), self.fmt, self.per_channel,
                            fp32, int8, fp32.stat().st_size, int8.stat().st_size)

    def load(self, fp32_path, int8_path, threads=1):
        from ..export.onnx import OrtRunner
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
    import hashlib
    # the structure (repr) and the weights: parameter-free modules differ only in structure
    h = hashlib.sha256(repr((tuple(input_shape_nchw), module)).encode())
    h.update(calib_nhwc.tobytes())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


#: Keras' and TensorFlow's global graph state is dropped after this many conversions, or
#: sooner when the process has grown by RELEASE_GROWTH_MB since the last drop. Dropping it
#: after every conversion cost more than the conversion of a block (0.75 s of 1.3 s per
#: 32-px block here, and later conversions ran slower); never dropping it grows a worker by
#: gigabytes (seen: 6.5 GB after ~250 conversions, and the machine ran out of memory).
RELEASE_EVERY = 16
RELEASE_GROWTH_MB = 1024.0
_since_release = {"conversions": 0, "rss_mb": None}


def _rss_mb() -> float | None:
    """This process's resident memory in MB (Linux ``/proc``; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _release_keras(force: bool = False) -> bool:
    """Count one conversion; drop Keras' global state when :data:`RELEASE_EVERY` conversions
    have passed or memory grew by :data:`RELEASE_GROWTH_MB` (or ``force``). True if dropped."""
    import gc
    st = _since_release
    st["conversions"] += 1
    rss = _rss_mb()
    if st["rss_mb"] is None:
        st["rss_mb"] = rss
    grown = rss is not None and st["rss_mb"] is not None and rss - st["rss_mb"] > RELEASE_GROWTH_MB
    if not (force or grown or st["conversions"] >= RELEASE_EVERY):
        return False
    import keras
    keras.backend.clear_session()
    gc.collect()
    st["conversions"], st["rss_mb"] = 0, _rss_mb()
    return True


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
        from ..export.keras import to_keras
        from ..export.tflite import convert_tflite
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
            _release_keras()
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
        from ..export.tflite import TFLiteRunner
        return tuple(_NchwAdapter(TFLiteRunner(Path(p).read_bytes(), threads=threads,
                                               xnnpack=self.xnnpack))
                     for p in (fp32_path, int8_path))


@register
class TFLiteNoXnnDevice(TFLiteDevice):
    """LiteRT with XNNPACK off: the built-in kernels, as the reference measured on Pixel 4."""

    name = "tflite-noxnn"
    xnnpack = False


# ---------------------------------------------------------------------------------------------
# measure


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


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
    import torch
    model = copy.deepcopy(module).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"input shape {shape_str(shape)} does not fit "
                         f"{type(module).__name__}: {first}") from e
    return shape  # type: ignore[return-value]


def _check_calibration(calibration: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    calib = np.asarray(calibration)
    if calib.ndim != 4 or len(calib) == 0 or tuple(calib.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"calibration must be (N>0, {', '.join(map(str, shape[1:]))}) NCHW "
                         f"images for input shape {shape_str(shape)}; got {calib.shape}")
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    if not np.isfinite(calib).all():
        raise ValueError("calibration images contain NaN or inf")
    return calib


@functools.lru_cache(maxsize=1)
def _host() -> dict:
    return cpu_info()


def measure(device: Device | str, module, input_shape_nchw: Sequence[int],
            calibration_nchw: np.ndarray, protocol: Protocol = Protocol(),
            workdir: Path | str | None = None, meta: dict | None = None,
            check_images: int = 8) -> dict:
    """Compile ``module`` for ``device``, time FP32 vs INT8 and return one record.

    ``calibration_nchw`` are real, normalised images (N, C, H, W) float32: they calibrate the
    INT8 activation ranges, the first one is the timed input, and the first ``check_images``
    check INT8 against FP32 outputs. Models are built in a temporary folder and copied into
    ``workdir`` (if given) only when everything succeeded. Columns: see the module docstring.
    """
    dev = get_device(device) if isinstance(device, str) else device
    meta = dict(meta or {})
    clash = sorted(set(meta) & set(RECORD_COLUMNS))
    if clash:
        raise ValueError(f"meta keys {clash} collide with measured columns")
    shape = check_input_shape(module, input_shape_nchw)
    calib = _check_calibration(calibration_nchw, shape)
    dev.require()
    with tempfile.TemporaryDirectory(prefix="spaceevo-latency-") as tmp:
        pair = dev.compile(module, shape, calib, Path(tmp), threads=protocol.threads)
        check = dev.check_outputs(pair, calib[:max(1, check_images)], module)
        for runner in (pair.fp32, pair.int8):
            runner.set_input(calib[:1])
        stats = measure_pair(pair.fp32, pair.int8, protocol)
        if workdir is not None:
            for src in (pair.fp32_path, pair.int8_path):
                _copy_artifact(src, Path(workdir) / src.name)
    return make_record(dev, shape, len(calib), protocol, pair, stats, check, meta)


def make_record(dev: Device, shape: Sequence[int], n_calibration: int, protocol: Protocol,
                pair: CompiledPair, stats: dict, check: dict, meta: dict) -> dict:
    """One record of the schema above from a compiled pair, its timing and its checks."""
    host = _host()
    versions = {c: None for c in VERSION_COLUMNS} | dev.versions()
    record: dict[str, Any] = dict(meta)
    record.update(
        device=dev.name, runtime=dev.runtime, **versions,
        cpu_model=host["cpu_model"], vnni=bool(host["vnni"]),
        int8_flags=" ".join(host["int8_flags"]), threads=protocol.threads,
        xnnpack=dev.xnnpack, quant_format=pair.quant_format, per_channel=pair.per_channel,
        input_shape=shape_str(shape), calibration_images=n_calibration,
        protocol_version=PROTOCOL_VERSION, schedule=protocol.schedule,
        warmup=protocol.warmup, warmup_ms=protocol.warmup_ms, visits=protocol.visits,
        runs=int(stats["fp32_runs"]), int8_runs=int(stats["int8_runs"]),
    )
    record.update({k: stats[k] for k in RECORD_COLUMNS if k in stats})
    record.update(fp32_bytes=pair.fp32_bytes, int8_bytes=pair.int8_bytes, **check,
                  timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    missing = [c for c in RECORD_COLUMNS if c not in record]
    assert not missing, missing
    return record

