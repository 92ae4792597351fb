"""Block-wise distillation as resumable parallel jobs: every stage student, every table.

One *job* per (hyperspace, stage, block): train the FP32 student, fine-tune it with LSQ+
against the INT8 teacher, sample its tables. Jobs are independent and run in ``workers``
processes (forked, so the feature banks are shared, one thread each: on 2 cores two small
single-threaded trainings beat one two-threaded one). Every job resumes: its two trainings
checkpoint every epoch (bit-exact resume, :class:`~spaceevo_lib.train.engine.Trainer`), its
tables are written atomically, and a finished job leaves ``done.json`` and is not redone.
Everything a job reads (the teacher's feature banks, the settings, this host's predictors)
comes in one :class:`JobContext`, handed to every job explicitly.

Caching: a job folder is keyed by every setting that changes a student, the job version and the
teacher's checkpoints (:func:`job_folder_name`); inside it, a job's ``done.json`` marks it
finished.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .._io import atomic_path, stable_hash, write_json
from ..space.hyperspace import as_hyperspace
from ..supernet.quantized import quantize_elastic
from ..supernet.warmstart import STUDENT_FILE, STUDENT_FORMAT
from ..train.config import TrainConfig
from .students import StageStudent, held_out_nsr, initialise_quantizers, train_student
from .tables import sample_table, write_table


@dataclass(frozen=True)
class JobSettings:
    """What every job does (one per chapter run)."""

    fp32: TrainConfig
    int8: TrainConfig
    samples: int  # rows per table
    recal_images: int  # held-out images that re-estimate BN before each NSR
    eval_images: int  # held-out images the NSR is measured on
    n_random: int = 2  # random settings per sandwich
    profile: str = "default"  # whose predictors price the rows (part of the job folder's key)
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobContext:
    """Everything a job reads: where the jobs write (``out``), the FP32 and INT8 teacher's
    feature banks, the settings, and the INT8 latency predictor of each hyperspace (pricing
    the table rows)."""

    out: Path
    bank_fp32: object  # teacher.FeatureBank (or StreamedFeatureBank)
    bank_int8: object
    settings: JobSettings
    predictors: dict  # hyperspace -> predictor.LatencyPredictor


def jobs_of(hyperspaces) -> list[tuple[str, int, int]]:
    """Every (hyperspace, stage, block), largest first (most table windows, then the wider
    later stages), so that the workers' last jobs are short and they finish together."""
    jobs = [(hs, s, b) for hs in hyperspaces for s in range(1, 7)
            for b in range(len(as_hyperspace(hs).blocks))]
    return sorted(jobs, key=lambda j: (-as_hyperspace(j[0]).window_counts[j[1] - 1], -j[1]))


def run_job(job: tuple[str, int, int], ctx: JobContext) -> dict:
    """Train one stage student (FP32, then LSQ+) and write its tables; returns its record.
    Its checkpoints exist only while it trains (a killed run resumes from them); a finished
    student leaves its record, curves and tables."""
    hs_name, stage, block = job
    out = ctx.out
    folder = job_folder(out, job)
    done = folder / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    torch.set_num_threads(1)
    st = ctx.settings
    bank32, bank8 = ctx.bank_fp32, ctx.bank_int8
    t0 = time.perf_counter()
    torch.manual_seed(st.seed * 1000 + stage * 10 + block)
    student = StageStudent(hs_name, stage, block, *bank32.channels(stage),
                           bank32.resolutions).start_at_teacher_mean(bank32)
    folder.mkdir(parents=True, exist_ok=True)
    h32 = train_student(student, bank32, st.fp32, folder / "fp32.pt", st.recal_images,
                        st.eval_images, st.n_random, "fp32")
    save_stage_weights(student, folder / STUDENT_FILE)  # what a supernet can start from
    q = quantize_elastic(student)
    initialise_quantizers(q, bank8, st.seed)
    # the quantization step alone, before LSQ+ trains on: the FP32 student's weights with
    # min-max ranges against the INT8 teacher (the LSQ+ phase also trains one epoch more, so
    # its NSR mixes the cost of INT8 with the gain of training)
    ptq = {k: held_out_nsr(q, bank8, getattr(q, f"sample_{k}")(), st.recal_images,
                           st.eval_images) for k in ("max", "min")}
    q.train()
    h8 = train_student(q, bank8, st.int8, folder / "int8.pt", st.recal_images, st.eval_images,
                       st.n_random, "int8")
    t_train = time.perf_counter() - t0
    hs = as_hyperspace(hs_name)
    pred = ctx.predictors[hs_name]
    n_rows = 0
    for w in range(hs.window_counts[stage - 1]):
        rng = np.random.default_rng([st.seed, stage, block, w])
        df = sample_table(q, bank8, w, st.samples, pred, rng, st.recal_images, st.eval_images)
        write_table(df, out / "tables" / hs_name / f"stage{stage}_{block}_{w}.csv")
        n_rows += len(df)
    # the max/min NSR after BN re-calibration at the end of each phase (the evaluator's last
    # epoch): FP32 student against the FP32 teacher, LSQ+ student against the INT8 teacher
    nsr32, nsr8 = h32.iloc[-1], h8.iloc[-1]
    history = pd.concat([h32, h8], ignore_index=True).assign(
        hyperspace=hs_name, stage=stage, block=block, code=hs.block(block).code)
    history.to_parquet(folder / "history.parquet")
    rec = {"hyperspace": hs_name, "stage": stage, "block": block,
           "code": hs.block(block).code, "activation": hs.block(block).activation,
           "se": bool(hs.block(block).se),
           "fp32_nsr_max": float(nsr32.valid_nsr_max), "fp32_nsr_min": float(nsr32.valid_nsr_min),
           "ptq_nsr_max": ptq["max"], "ptq_nsr_min": ptq["min"],
           "int8_nsr_max": float(nsr8.valid_nsr_max), "int8_nsr_min": float(nsr8.valid_nsr_min),
           "train_seconds": t_train, "seconds": time.perf_counter() - t0, "rows": n_rows,
           "stage_weights_bytes": (folder / STUDENT_FILE).stat().st_size}
    write_json(done, rec)
    for ck in ("fp32.pt", "int8.pt"):  # resume points only: up to 0.5 GB per large student
        (folder / ck).unlink(missing_ok=True)
    return rec


def run_jobs(jobs, ctx: JobContext, workers: int = 2, progress: bool = True,
             poll_seconds: float = 30.0) -> pd.DataFrame:
    """Every job (skipping finished ones), in ``workers`` forked processes (0: this one); the
    workers get ``ctx`` once, through the pool's initializer (forked: the banks are shared,
    not copied).

    Under torchrun (``world`` processes, e.g. one per GPU or core), rank r runs jobs r,
    r + world, ... in its own process and then waits until
    every job's record exists (a file poll, not a collective: the shares take hours and
    finish at different times), so that every rank returns all the records."""
    rank, world = _rank_and_world()
    mine = list(jobs)[rank::world]
    missing = sorted({j[0] for j in mine} - set(ctx.predictors))
    if missing:
        raise ValueError(f"no latency predictor for hyperspace(s) {missing} in the job context")
    bar = tqdm(total=len(mine), desc="stage students", disable=not progress)
    if workers <= 0 or world > 1:
        for j in mine:
            run_job(j, ctx)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                                 initializer=_set_worker_context, initargs=(ctx,)) as pool:
            for _ in pool.map(_run_in_worker, mine):
                bar.update()
    bar.close()
    done = [job_folder(ctx.out, j) / "done.json" for j in jobs]
    while not all(f.is_file() for f in done):  # (only under torchrun: other ranks' shares)
        time.sleep(poll_seconds)
    return pd.DataFrame([json.loads(f.read_text()) for f in done])


_WORKER_CONTEXT: list[JobContext] = []  # a pool worker's context, set by its initializer


def _set_worker_context(ctx: JobContext) -> None:
    _WORKER_CONTEXT[:] = [ctx]


def _run_in_worker(job: tuple[str, int, int]) -> dict:
    return run_job(job, _WORKER_CONTEXT[0])


def job_folder(out: Path, job: tuple[str, int, int]) -> Path:
    hs, stage, block = job
    return out / "students" / hs / f"stage{stage}_{block}"


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes torchrun started (its RANK and
    WORLD_SIZE); (0, 1) otherwise. No process group is joined: the students are independent,
    so each trains in one process, without gradient averaging or sharded data."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def histories(out: Path) -> pd.DataFrame:
    """Every job's per-epoch training metrics."""
    files = sorted((out / "students").glob("*/*/history.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


#: what a job computes and records; bumped when that changes, so that a job folder of an
#: earlier version is not reused (2: records the quantized NSR before LSQ+, ``ptq_nsr_*``;
#: 3: LSQ+ on PyTorch's fused kernels, whose range includes both end levels; 4: keeps the FP32
#: student's stage weights, and its images avoid the training chapters' held-out split; 5: a
#: width change inside a stage goes through the parameter-free channel projection, as in the
#: supernet)
JOB_VERSION = 5


def save_stage_weights(student, path: Path) -> Path:
    """The FP32 student's elastic stage (its projections dropped) with what it belongs to: what
    a supernet's warm start reads (:mod:`spaceevo_lib.supernet.warmstart`)."""
    state = {"format": STUDENT_FORMAT, "job_version": JOB_VERSION,
             "hyperspace": student.hyperspace, "stage": student.stage_index,
             "block": student.block_index, "stage_state": student.stage.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def settings_key(settings: JobSettings) -> dict:
    d = asdict(settings) | {"job_version": JOB_VERSION}
    d["fp32"], d["int8"] = settings.fp32.as_dict(), settings.int8.as_dict()
    return d


def job_folder_name(settings: JobSettings, teacher: str = "") -> str:
    """The jobs' folder in the chapter's run: keyed by every setting that changes a student and
    by the teacher (``teacher``: the ``checkpoints_sha256`` of
    :meth:`~spaceevo_lib.chapters.int8.Int8Results.teachers`; a retrained teacher gets new
    students)."""
    key = settings_key(settings) | ({"teacher": teacher} if teacher else {})
    return "blockkd-" + stable_hash(key)[:10]
