"""The one measurement path: compile in parallel worker processes, then time on an idle CPU.

Every latency of the book (the latency chapter's operators, blocks and models, the predictor
chapter's blocks and subnets, the deployed files of the training chapters) is a :class:`Job`
measured by :func:`run_jobs`, in two phases:

1. **compile**: every job not measured yet is built (seeded PyTorch module, BN statistics from
   real-image inputs), converted to FP32 and INT8 for its device and checked (INT8 vs FP32
   outputs), in ``workers`` spawned processes (0: in this process). Compiled models go to
   ``<run>/<table>-models/<key>/`` with a ``compiled.json`` marker, so an interrupted compile
   phase resumes without redoing finished jobs.
2. **time**: in this process, after every converter has finished, groups of
   ``protocol.group`` networks are loaded and timed by interleaved visits
   (:mod:`spaceevo_lib.latency.protocol`), with an idle check before every round of visits.
   Each group's records (schema in :mod:`spaceevo_lib.latency.devices`) are appended to the
   run's table, and every visit to ``<table>-visits``, as soon as the group is done.

A :class:`Job` names its module by a builder function and keyword arguments (both picklable),
never by a live module, so workers can rebuild it. Builders are registered under a stable name
(:func:`job_builder`) and the key hashes that name, not the function's module path, so moving
code between modules keeps every stored measurement. One key per job covers everything its
record depends on; a rerun measures only what is new, and a table from another protocol version
is refused with a message rather than mixed in.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import shutil
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .._io import atomic_path, stable_hash, write_json
from .._version import __version__
from ..export.keras import load_triton_before_tensorflow
from ..nn.bn import recalibrate_bn
from .devices import CompiledPair, check_input_shape, get_device
from .protocol import Protocol, check_protocol_version, summarize_visits, time_networks
from .records import make_record

log = logging.getLogger(__name__)


#: Registered module builders by name (see :func:`job_builder`).
BUILDERS: dict[str, Callable[..., Any]] = {}


def job_builder(name: str):
    """Register a module builder under ``name``: job keys hash this name, so a builder moved to
    another module (or renamed) keeps the keys of everything measured with it."""
    def register(fn):
        if BUILDERS.get(name, fn) is not fn:
            raise ValueError(f"job builder name {name!r} is taken by {BUILDERS[name]!r}")
        BUILDERS[name] = fn
        fn.job_builder_name = name
        return fn
    return register


def builder_name(build: Callable[..., Any]) -> str:
    """The registered name of ``build``; an unregistered builder is refused (its key would
    change whenever the code moves)."""
    name = getattr(build, "job_builder_name", None)
    if name is None:
        raise ValueError(f"{build!r} is not a registered job builder: decorate it with "
                         f"@job_builder('<stable name>')")
    return name


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
        """The module (registered builder name + spec + shape), the device and its options, the
        protocol and the library version: unchanged keys are reused, anything else is measured
        again."""
        return stable_hash({"device": device, "build": builder_name(build),
                            "spec": [list(kv) for kv in spec], "shape": list(shape),
                            "options": [list(kv) for kv in options],
                            "protocol": protocol.as_dict(), "spaceevo_lib": __version__})[:16]


def calibration_inputs(images_nchw: np.ndarray, shape, seed: int = 0) -> np.ndarray:
    """Real-image inputs of ``shape`` (1, C, H, W) for calibration and timing.

    RGB inputs are the images resized to H x W. Inputs with other channel counts (single
    operators and blocks inside a network) are the resized images passed through a fixed random
    1x1 projection 3 -> C, scaled to unit variance: feature maps with the spatial statistics of
    real photographs rather than Gaussian noise.
    """
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


def check_images(images_nchw) -> np.ndarray:
    """The real images every job's inputs are made from: (N > 0, 3, H, W), finite, as float32
    (a ValueError names what is wrong, before any work)."""
    x = np.asarray(images_nchw)
    if x.ndim != 4 or len(x) == 0 or x.shape[1] != 3:
        raise ValueError(f"images must be normalised RGB images (N > 0, 3, H, W) NCHW; got "
                         f"shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    return x


def _prepare(job: Job, images: np.ndarray, seed: int):
    """The job's module (seeded, BN statistics from its inputs) and its calibration inputs."""
    torch.manual_seed(seed)
    module = job.build(**dict(job.spec)).eval()
    check_input_shape(module, job.input_shape)  # a ValueError before anything is written
    calib = calibration_inputs(images, job.input_shape, seed)
    with torch.no_grad():
        recalibrate_bn(module, [torch.from_numpy(calib)])
    return module, calib


def _init_worker() -> None:
    # the parent's Ctrl-C or kernel shutdown reaches the whole process group: the parent stops
    # the pool itself, so an idle worker must not die with a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    load_triton_before_tensorflow()  # TensorFlow after triton, or it crashes (toolchain notes)
    torch.set_num_threads(1)
    logging.getLogger("spaceevo_lib").setLevel(logging.WARNING)


def _compile(job: Job, images: np.ndarray, threads: int, seed: int, outdir: str,
             n_check: int) -> dict:
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
        check = dev.check_outputs(pair, calib[:max(1, n_check)], module)
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


def load_records(run, table: str) -> list[dict]:
    """The records already in ``run``'s ``table`` (empty if none yet); a table made under
    another protocol version raises :class:`~.protocol.ProtocolMismatch`."""
    try:
        done = run.load(table)
    except FileNotFoundError:
        return []
    check_protocol_version(done, f"table {table!r} ({run.file(table, 'parquet')})")
    return done.to_dict("records")


def run_jobs(jobs: Iterable[Job], images_nchw: np.ndarray, run, table: str,
             protocol: Protocol = Protocol(), workers: int = 0, seed: int = 0,
             n_check: int = 4, keep_models: bool = False, progress: bool = True):
    """Measure every job not in ``run``'s ``table`` yet; returns the rows of these jobs.

    ``images_nchw``: normalised real images (N, 3, H, W) from which every job's calibration and
    timed inputs are made (:func:`calibration_inputs`).
    ``workers``: processes for the compile phase (0 = compile in this process). The timing
    phase starts only when every conversion has finished. ``n_check`` images check INT8
    against FP32 outputs per job. A module that does not take its job's input shape, or
    images that are not (N, 3, H, W), stop with a ValueError before anything is written.
    """
    jobs = list(jobs)
    seen: set[str] = set()
    for j in jobs:
        if j.key in seen:
            raise ValueError(f"two jobs share the key {j.key}; deduplicate them first")
        seen.add(j.key)
        get_device(j.device, **dict(j.options)).require()  # a missing runtime stops here
    images = check_images(images_nchw)
    rows = load_records(run, table)
    have = {r["key"] for r in rows}
    todo = [j for j in jobs if j.key not in have]
    outdir = run.path / f"{table}-models"
    if todo:
        try:
            infos = _compile_all(todo, images, protocol.threads, seed, outdir, n_check,
                                 workers, progress)
        except BaseException:
            if outdir.is_dir() and not any(outdir.iterdir()):
                outdir.rmdir()  # a job refused before anything compiled leaves nothing behind
            raise
        visits = _load_visits(run, table)
        for start, group in _groups(todo, infos, protocol):
            recs, vis = time_jobs(group, [infos[j.key] for j in group], images, protocol,
                                  seed + start, progress)
            rows += recs
            visits.append(vis)
            run.save(pd.concat(visits, ignore_index=True), f"{table}-visits")
            run.save(pd.DataFrame(rows), table)  # checkpoint: nothing measured is ever lost
            if not keep_models:
                for j in group:
                    shutil.rmtree(outdir / j.key, ignore_errors=True)
        if not keep_models:
            shutil.rmtree(outdir, ignore_errors=True)
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    return out[out["key"].isin(seen)].reset_index(drop=True)


def _groups(todo: list[Job], infos: dict, protocol: Protocol):
    """Consecutive groups of at most ``protocol.group`` jobs whose model files add up to at most
    ``protocol.group_mb`` (loaded runtimes hold a few times their files in memory)."""
    group: list[Job] = []
    start, size = 0, 0.0
    for i, job in enumerate(todo):
        mb = (infos[job.key]["fp32_bytes"] + infos[job.key]["int8_bytes"]) / 2**20
        if group and (len(group) >= protocol.group or size + mb > protocol.group_mb):
            yield start, group
            group, start, size = [], i, 0.0
        group.append(job)
        size += mb
    if group:
        yield start, group


def _load_visits(run, table: str) -> list:
    try:
        return [run.load(f"{table}-visits")]
    except FileNotFoundError:
        return []


def time_jobs(jobs: list[Job], infos: list[dict], images: np.ndarray,
              protocol: Protocol = Protocol(), seed: int = 0, progress: bool = False):
    """Load compiled jobs and time them together by visits; returns (records, visits table).

    The visits table has the job ``key`` instead of the network index.
    """
    pairs, compiled = [], []
    for job, info in zip(jobs, infos):
        dev = get_device(job.device, **dict(job.options))
        fp32, int8 = dev.load(Path(info["fp32_path"]), Path(info["int8_path"]), protocol.threads)
        x = calibration_inputs(images, job.input_shape, seed)[:1]
        for r in (fp32, int8):
            r.set_input(x)
        pairs.append((fp32, int8))
        compiled.append((dev, CompiledPair(fp32, int8, info["quant_format"], info["per_channel"],
                                           Path(info["fp32_path"]), Path(info["int8_path"]),
                                           info["fp32_bytes"], info["int8_bytes"])))
    visits, checks = time_networks(pairs, protocol, seed, progress)
    stats = summarize_visits(visits, checks, protocol)
    records = []
    for (job, info, (dev, pair)), st in zip(zip(jobs, infos, compiled),
                                            stats.to_dict("records")):
        records.append(make_record(dev, job.input_shape, info["calibration_images"], protocol,
                                   pair, st, info["check"], {"key": job.key, **dict(job.meta)}))
    keys = np.array([j.key for j in jobs])
    visits.insert(0, "key", keys[visits.pop("network").to_numpy()])
    return records, visits


def load_compiled(run, table: str, keys, device: str) -> tuple[list[Job], list[dict]]:
    """Jobs (stand-ins with the device and input shape) and compile infos of networks kept by
    ``run_jobs(..., keep_models=True)`` in ``run``'s ``table``, to time them again."""
    done = {r["key"]: r for r in load_records(run, table)}
    jobs, infos = [], []
    for key in keys:
        marker = run.path / f"{table}-models" / key / "compiled.json"
        if key not in done or not marker.exists():
            raise FileNotFoundError(f"network {key} of table {table!r} has no kept models "
                                    f"(measure it with keep_models=True)")
        shape = tuple(int(d) for d in str(done[key]["input_shape"]).split("x"))
        jobs.append(Job(device, load_compiled, (), shape, (), (), key))
        infos.append(json.loads(marker.read_text()))
    return jobs, infos


def drop_models(run, table: str) -> None:
    """Delete the compiled models kept for ``table``."""
    shutil.rmtree(run.path / f"{table}-models", ignore_errors=True)


_POOL: dict[int, ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The compile workers, started once per process and reused (starting one costs seconds:
    it imports PyTorch and TensorFlow). Idle workers take no CPU (the idle check before every
    round of visits would show it), so timing stays quiet."""
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


def _compile_all(todo: list[Job], images, threads, seed, outdir: Path, n_check: int,
                 workers: int, progress: bool) -> dict[str, dict]:
    outdir.mkdir(parents=True, exist_ok=True)
    infos: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc="compile", unit="job", disable=not progress)
    if workers <= 0:
        for job in todo:
            infos[job.key] = _compile(job, images, threads, seed, str(outdir), n_check)
            bar.update()
    else:
        # converters leak (TensorFlow's MLIR state: ~25 MB per network even after Keras'
        # clear_session), so the workers are replaced after RECYCLE_AFTER jobs each
        for start in range(0, len(todo), RECYCLE_AFTER * workers):
            if start:
                shutdown_workers()
            pool = worker_pool(workers)
            chunk = todo[start:start + RECYCLE_AFTER * workers]
            futures = {pool.submit(_compile, job, images, threads, seed, str(outdir),
                                   n_check): job for job in chunk}
            for fut in as_completed(futures):
                infos[futures[fut].key] = fut.result()
                bar.update()
    bar.close()
    return infos


#: Jobs each compile worker converts before it is replaced by a fresh process.
RECYCLE_AFTER = 40
