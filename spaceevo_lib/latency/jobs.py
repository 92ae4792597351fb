"""Many latency measurements at once: compile in parallel worker processes, time serially.

On a 2-core machine the runtime converters (the TFLite converter above all) cost far more than
the timing itself, and they parallelise; the timing must not, or the other core's load would
leak into the numbers. :func:`run_jobs` therefore works in two phases:

1. **compile**: every job not measured yet is built (seeded PyTorch module, BN statistics from
   real-image inputs), converted to FP32 and INT8 for its device and checked (INT8 vs FP32
   outputs), in ``workers`` spawned processes (0: in this process). Compiled models go to
   ``<run>/<table>-models/<key>/`` with a ``compiled.json`` marker, so an interrupted compile
   phase resumes without redoing finished jobs.
2. **time**: in this process, one job after the other on a quiet machine, with the latency
   chapter's :class:`~spaceevo_lib.latency.protocol.Protocol`. Each record (schema in
   :mod:`spaceevo_lib.latency.devices`) is appended to the run's table as soon as it exists;
   the job's models are deleted after timing unless ``keep_models``.

A :class:`Job` names its module by a builder function and keyword arguments (both picklable),
never by a live module, so workers can rebuild it.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .. import __version__
from .._io import atomic_path, stable_hash, write_json
from .devices import CompiledPair, get_device, make_record
from .protocol import Protocol, measure_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One (module, device) measurement. ``build(**spec)`` returns the PyTorch module."""

    device: str
    build: Callable[..., Any]
    spec: tuple[tuple[str, Any], ...]
    input_shape: tuple[int, int, int, int]
    meta: tuple[tuple[str, Any], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()  # device options, e.g. (("fmt", "qdq-s8s8"),)
    key: str = field(default="")

    @classmethod
    def make(cls, device: str, build: Callable[..., Any], spec: Mapping[str, Any],
             input_shape, meta: Mapping[str, Any] | None = None,
             options: Mapping[str, Any] | None = None,
             protocol: Protocol = Protocol()) -> Job:
        """A job whose key covers what the record depends on (see :meth:`key_for`)."""
        spec_t = tuple(sorted(spec.items()))
        opts = tuple(sorted((options or {}).items()))
        shape = tuple(int(d) for d in input_shape)
        key = cls.key_for(device, build, spec_t, shape, opts, protocol)
        return cls(device, build, spec_t, shape, tuple((meta or {}).items()), opts, key)

    @staticmethod
    def key_for(device, build, spec, shape, options, protocol: Protocol) -> str:
        """The module (builder + spec + shape), the device and its options, the protocol and
        the library version: unchanged keys are reused, anything else is measured again."""
        return stable_hash({"device": device, "build": f"{build.__module__}.{build.__qualname__}",
                            "spec": [list(kv) for kv in spec], "shape": list(shape),
                            "options": [list(kv) for kv in options],
                            "protocol": protocol.as_dict(), "spaceevo_lib": __version__})[:16]


def _prepare(job: Job, images: np.ndarray, seed: int):
    """The job's module (seeded, BN statistics from its inputs) and its calibration inputs."""
    import torch

    from ..nn import recalibrate_bn
    from .bench import calibration_inputs
    torch.manual_seed(seed)
    module = job.build(**dict(job.spec)).eval()
    calib = calibration_inputs(images, job.input_shape, seed)
    with torch.no_grad():
        recalibrate_bn(module, [torch.from_numpy(calib)])
    return module, calib


def _init_worker() -> None:
    import torch

    from ..export.keras import load_triton_before_tensorflow
    load_triton_before_tensorflow()  # TensorFlow after triton, or it crashes (toolchain notes)
    torch.set_num_threads(1)
    logging.getLogger("spaceevo_lib").setLevel(logging.WARNING)


def _compile(job: Job, images: np.ndarray, threads: int, seed: int, outdir: str,
             check_images: int) -> dict:
    """Compile one job into ``outdir/<key>``; returns (and writes) its ``compiled.json``."""
    dest = Path(outdir) / job.key
    marker = dest / "compiled.json"
    if marker.exists():
        return json.loads(marker.read_text())
    module, calib = _prepare(job, images, seed)
    dev = get_device(job.device, **dict(job.options))
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spaceevo-job-") as tmp:
        pair = dev.compile(module, job.input_shape, calib, Path(tmp), threads=threads)
        check = dev.check_outputs(pair, calib[:max(1, check_images)], module)
        paths = {}
        for prec, src in (("fp32", pair.fp32_path), ("int8", pair.int8_path)):
            paths[prec] = dest / src.name
            with atomic_path(paths[prec]) as out:
                shutil.copyfile(src, out)
    info = {"fp32_path": str(paths["fp32"]), "int8_path": str(paths["int8"]),
            "fp32_bytes": pair.fp32_bytes, "int8_bytes": pair.int8_bytes,
            "quant_format": pair.quant_format, "per_channel": pair.per_channel,
            "calibration_images": int(len(calib)), "check": check}
    write_json(marker, info)
    return info


def _done(run, table: str) -> tuple[list[dict], set[str]]:
    """The records already in ``run``'s ``table`` and their keys (empty if none yet)."""
    try:
        done = run.load(table)
    except FileNotFoundError:
        return [], set()
    return done.to_dict("records"), set(done["key"]) if "key" in done else set()


def run_jobs(jobs: Iterable[Job], images_nchw: np.ndarray, run, table: str,
             protocol: Protocol = Protocol(), workers: int = 0, seed: int = 0,
             check_images: int = 4, keep_models: bool = False, progress: bool = True,
             reference: Job | None = None):
    """Measure every job not in ``run``'s ``table`` yet; returns the rows of these jobs.

    ``images_nchw``: normalised real images (N, 3, H, W) from which every job's calibration and
    timed inputs are made (:func:`~spaceevo_lib.latency.bench.calibration_inputs`).
    ``workers``: processes for the compile phase (0 = compile in this process).
    ``reference``: a fixed job (same device) timed briefly before and after every job; its
    fastest runs go into ``ref_fp32_min_ms`` / ``ref_int8_min_ms``, so that slow phases of a
    shared machine can be divided out later (see :func:`drift_normalized`).
    """
    import pandas as pd
    from tqdm import tqdm

    jobs = list(jobs)
    seen: set[str] = set()
    for j in jobs:
        if j.key in seen:
            raise ValueError(f"two jobs share the key {j.key}; deduplicate them first")
        seen.add(j.key)
        get_device(j.device, **dict(j.options)).require()  # a missing runtime stops here
    rows, have = _done(run, table)
    todo = [j for j in jobs if j.key not in have]
    outdir = run.path / f"{table}-models"
    images = np.ascontiguousarray(images_nchw, dtype=np.float32)
    if todo:
        extra = [reference] if reference is not None and reference.key not in seen else []
        infos = _compile_all(todo + extra, images, protocol.threads, seed, outdir,
                             check_images, workers, progress)
        ref = _load_reference(reference, infos, images, protocol, seed)
        bar = tqdm(todo, desc=f"{table}: timing", unit="job", disable=not progress)
        for job in bar:
            rows.append(_time(job, infos[job.key], images, protocol, seed, ref))
            run.save(pd.DataFrame(rows), table)  # checkpoint: nothing measured is ever lost
            if not keep_models:
                shutil.rmtree(outdir / job.key, ignore_errors=True)
        if not keep_models:
            shutil.rmtree(outdir, ignore_errors=True)
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    return out[out["key"].isin(seen)].reset_index(drop=True)


_POOL: dict[int, ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The compile workers, started once per process and reused (starting one costs seconds:
    it imports PyTorch and TensorFlow). Idle workers take no CPU, so timing stays quiet."""
    if workers not in _POOL:
        shutdown_workers()
        ctx = multiprocessing.get_context("spawn")  # fork after torch/TF import is unsafe
        _POOL[workers] = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
    return _POOL[workers]


@atexit.register
def shutdown_workers() -> None:
    """Stop the compile workers (also done at interpreter exit)."""
    for pool in _POOL.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()


def _compile_all(todo: list[Job], images, threads, seed, outdir: Path, check_images: int,
                 workers: int, progress: bool) -> dict[str, dict]:
    from tqdm import tqdm
    outdir.mkdir(parents=True, exist_ok=True)
    infos: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc="compile", unit="job", disable=not progress)
    if workers <= 0:
        for job in todo:
            infos[job.key] = _compile(job, images, threads, seed, str(outdir), check_images)
            bar.update()
    else:
        pool = worker_pool(workers)
        futures = {pool.submit(_compile, job, images, threads, seed, str(outdir),
                               check_images): job for job in todo}
        for fut in as_completed(futures):
            infos[futures[fut].key] = fut.result()
            bar.update()
    bar.close()
    return infos


def retime_jobs(jobs: Iterable[Job], images_nchw: np.ndarray, run, table: str,
                models_table: str, protocol: Protocol = Protocol(), seed: int = 0,
                progress: bool = True, reference: Job | None = None):
    """Time jobs a second time into ``table``: the test-retest of the protocol on this machine.

    Models kept by ``run_jobs(..., table=models_table, keep_models=True)`` are reused (missing
    ones are compiled again, identically: same seed); they are deleted afterwards.
    """
    import pandas as pd
    from tqdm import tqdm
    jobs = list(jobs)
    rows, have = _done(run, table)
    outdir = run.path / f"{models_table}-models"
    images = np.ascontiguousarray(images_nchw, dtype=np.float32)
    ref = None
    if reference is not None:
        info = _compile(reference, images, protocol.threads, seed, str(outdir), 4)
        ref = _load_reference(reference, {reference.key: info}, images, protocol, seed)
    for job in tqdm([j for j in jobs if j.key not in have], desc=f"{table}: timing", unit="job",
                    disable=not progress):
        info = _compile(job, images, protocol.threads, seed, str(outdir), 4)
        rows.append(_time(job, info, images, protocol, seed, ref))
        run.save(pd.DataFrame(rows), table)
    shutil.rmtree(outdir, ignore_errors=True)
    keys = {j.key for j in jobs}
    out = pd.DataFrame(rows)
    return out[out["key"].isin(keys)].reset_index(drop=True) if len(out) else out


#: How the reference job is timed around each job: briefly, its fastest runs are what counts.
REFERENCE_PROTOCOL = Protocol(warmup=2, runs=200, rounds=2, budget_ms=5.0, min_runs=5,
                              retries=0, max_rel_iqr=10.0)


def _load_reference(reference: Job | None, infos: dict, images, protocol: Protocol, seed: int):
    if reference is None:
        return None
    from .bench import calibration_inputs
    info = infos[reference.key]
    dev = get_device(reference.device, **dict(reference.options))
    pair = dev.load(Path(info["fp32_path"]), Path(info["int8_path"]), protocol.threads)
    x = calibration_inputs(images, reference.input_shape, seed)[:1]
    for r in pair:
        r.set_input(x)
    return reference.key, pair


def _reference_times(ref) -> dict:
    s = measure_pair(*ref[1], REFERENCE_PROTOCOL)
    return {"fp32": s["fp32_min_ms"], "int8": s["int8_min_ms"]}


def drift_normalized(df, nominal: Mapping[str, float] | None = None):
    """``<p>_norm_ms`` = ``<p>_min_ms`` x nominal / ``ref_<p>_min_ms``: latencies at the
    reference job's nominal speed (default: its median over ``df``), i.e. with the machine's
    slow and fast phases divided out. Returns the frame and the nominal values used."""
    out = df.copy()
    nominal = dict(nominal or {p: float(np.median(df[f"ref_{p}_min_ms"])) for p in
                               ("fp32", "int8")})
    for p in ("fp32", "int8"):
        out[f"{p}_norm_ms"] = out[f"{p}_min_ms"] * nominal[p] / out[f"ref_{p}_min_ms"]
    return out, nominal


def _time(job: Job, info: dict, images: np.ndarray, protocol: Protocol, seed: int,
          ref=None) -> dict:
    from .bench import calibration_inputs
    dev = get_device(job.device, **dict(job.options))
    fp32, int8 = dev.load(Path(info["fp32_path"]), Path(info["int8_path"]), protocol.threads)
    x = calibration_inputs(images, job.input_shape, seed)[:1]
    for r in (fp32, int8):
        r.set_input(x)
    before = _reference_times(ref) if ref is not None else None
    stats = measure_pair(fp32, int8, protocol)
    after = _reference_times(ref) if ref is not None else None
    pair = CompiledPair(fp32, int8, info["quant_format"], info["per_channel"],
                        Path(info["fp32_path"]), Path(info["int8_path"]), info["fp32_bytes"],
                        info["int8_bytes"])
    meta = {"key": job.key, **dict(job.meta)}
    if ref is not None:
        meta.update(ref_key=ref[0], **{f"ref_{p}_min_ms": 0.5 * (before[p] + after[p])
                                       for p in ("fp32", "int8")})
    return make_record(dev, job.input_shape, info["calibration_images"], protocol, pair, stats,
                       info["check"], meta)
