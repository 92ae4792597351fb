"""The latency record: one flat dict per measurement, one pandas row.

The predictor chapter trains on these records. Caller ``meta`` keys come first (e.g.
``item``, ``kind``, ``op_type``, ``cin``, ``cout``, ``hw``...), then :data:`RECORD_COLUMNS`:

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

import datetime as _dt
import functools
from typing import Any, Sequence

import pandas as pd

from ..host import cpu_info
from .protocol import PRECISIONS, PROTOCOL_VERSION, STATS, Protocol

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


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


@functools.lru_cache(maxsize=1)
def _host() -> dict:
    return cpu_info()


def make_record(dev, shape: Sequence[int], n_calibration: int, protocol: Protocol,
                pair, stats: dict, check: dict, meta: dict) -> dict:
    """One record of the schema above from a device, its compiled pair
    (:class:`~.devices.CompiledPair`), its timing and its checks."""
    clash = sorted(set(meta) & set(RECORD_COLUMNS))
    if clash:
        raise ValueError(f"meta keys {clash} collide with measured columns")
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


def recorded_values(df: pd.DataFrame, column: str) -> str:
    """The distinct values of one setup column of the records (runtime version, CPU model) as
    the book prints them: one host and one set of runtimes give one value."""
    vals = df[column].dropna().astype(str).unique() if column in df else []
    return ", ".join(vals) if len(vals) else "not recorded"
