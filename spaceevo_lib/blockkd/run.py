"""The chapter's procedure: teacher features, every stage student, every table.

One *job* per (hyperspace, stage, block): train the FP32 student, fine-tune it with LSQ+
against the INT8 teacher, sample its tables. Jobs are independent and run in ``workers``
processes (forked, so the feature banks are shared, one thread each: on 2 cores two small
single-threaded trainings beat one two-threaded one). Every job resumes: its two trainings
checkpoint every epoch (bit-exact resume, :class:`~spaceevo_lib.train.engine.Trainer`), its
tables are written atomically, and a finished job leaves ``done.json`` and is not redone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import write_json
from ..predictor import target_hyperspace
from ..train.config import TrainConfig
from .teacher import BlockKDError

#: (device, scale) of each hyperspace designed here, at the training and the paper scale (the
#: paper's pairing, predictor.HYPERSPACE_OF; tflite is the XNNPACK device the predictors
#: were built for)
DEVICE_OF = {target_hyperspace(d, sc): (d, sc) for d in ("ort-vnni", "tflite")
             for sc in ("train", "paper")}


@dataclass(frozen=True)
class JobSettings:
    """What every job does (one per chapter run)."""

    fp32: TrainConfig
    int8: TrainConfig
    samples: int  # rows per table
    recal_images: int  # held-out images that re-estimate BN before each NSR
    eval_images: int  # held-out images the NSR is measured on
    n_random: int = 2  # random settings per sandwich
    profile: str = "default"  # whose predictors price the rows
    seed: int = 0
    extra: dict = field(default_factory=dict)


_SHARED: dict = {}  # the banks and settings, inherited by forked workers


def jobs_of(hyperspaces) -> list[tuple[str, int, int]]:
    """Every (hyperspace, stage, block), largest first (most table windows, then the wider
    later stages), so that the workers' last jobs are short and they finish together."""
    from ..space.hyperspace import as_hyperspace
    jobs = [(hs, s, b) for hs in hyperspaces for s in range(1, 7)
            for b in range(len(as_hyperspace(hs).blocks))]
    return sorted(jobs, key=lambda j: (-as_hyperspace(j[0]).window_counts[j[1] - 1], -j[1]))


def predictor_for(hs: str, profile: str):
    """This host's INT8 predictor of ``hs``'s device at the training scale (cached; forked
    workers inherit it)."""
    key = ("predictor", hs)
    if key not in _SHARED:
        from ..predictor import load_predictor
        p = load_predictor(*DEVICE_OF[hs], profile)
        if p.hyperspace != hs:
            raise BlockKDError(f"latency predictor {p.name} is for {p.hyperspace!r}, not {hs!r}")
        _SHARED[key] = p
    return _SHARED[key]


def run_job(job: tuple[str, int, int], out: Path) -> dict:
    """Train one stage student (FP32, then LSQ+) and write its tables; returns its record.
    Its checkpoints exist only while it trains (a killed run resumes from them); a finished
    student leaves its record, curves and tables."""
    import torch

    from ..quant.elastic import quantize_elastic
    from ..space.hyperspace import as_hyperspace
    from .students import StageStudent, held_out_nsr, initialise_quantizers, train_student
    from .tables import sample_table, write_table
    hs_name, stage, block = job
    folder = job_folder(out, job)
    done = folder / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    torch.set_num_threads(1)
    st: JobSettings = _SHARED["settings"]
    bank32, bank8 = _SHARED["bank_fp32"], _SHARED["bank_int8"]
    t0 = time.perf_counter()
    torch.manual_seed(st.seed * 1000 + stage * 10 + block)
    student = StageStudent(hs_name, stage, block, *bank32.channels(stage),
                           bank32.resolutions).start_at_teacher_mean(bank32)
    folder.mkdir(parents=True, exist_ok=True)
    h32 = train_student(student, bank32, st.fp32, folder / "fp32.pt", st.recal_images,
                        st.eval_images, st.n_random, "fp32")
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
    pred = predictor_for(hs_name, st.profile)
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
           "train_seconds": t_train, "seconds": time.perf_counter() - t0, "rows": n_rows}
    write_json(done, rec)
    for ck in ("fp32.pt", "int8.pt"):  # resume points only: up to 0.5 GB per large student
        (folder / ck).unlink(missing_ok=True)
    return rec


def run_jobs(jobs, out: Path, banks, settings: JobSettings, workers: int = 2,
             progress: bool = True, poll_seconds: float = 30.0) -> pd.DataFrame:
    """Every job (skipping finished ones), in ``workers`` forked processes (0: this one).

    Under torchrun (``world`` processes, e.g. one per GPU or core), rank r runs jobs r,
    r + world, ... in its own process and then waits until
    every job's record exists (a file poll, not a collective: the shares take hours and
    finish at different times), so that every rank returns all the records."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm  # (tqdm.auto warns in a kernel without ipywidgets)
    _SHARED.update(bank_fp32=banks[0], bank_int8=banks[1], settings=settings)
    rank, world = _rank_and_world()
    mine = list(jobs)[rank::world]
    for hs in {j[0] for j in mine}:
        predictor_for(hs, settings.profile)  # load once here: the workers inherit it
    bar = tqdm(total=len(mine), desc="stage students", disable=not progress)
    if workers <= 0 or world > 1:
        for j in mine:
            run_job(j, out)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            for _ in pool.map(run_job, mine, [out] * len(mine)):
                bar.update()
    bar.close()
    done = [job_folder(out, j) / "done.json" for j in jobs]
    while not all(f.is_file() for f in done):  # (only under torchrun: other ranks' shares)
        time.sleep(poll_seconds)
    return pd.DataFrame([json.loads(f.read_text()) for f in done])


def job_folder(out: Path, job: tuple[str, int, int]) -> Path:
    hs, stage, block = job
    return out / "students" / hs / f"stage{stage}_{block}"


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes torchrun started (its RANK and
    WORLD_SIZE); (0, 1) otherwise. No process group is joined: the students are independent,
    so each trains in one process, without gradient averaging or sharded data."""
    import os
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def histories(out: Path) -> pd.DataFrame:
    """Every job's per-epoch training metrics."""
    files = sorted((out / "students").glob("*/*/history.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


#: what a job computes and records; bumped when that changes, so that a job folder of an
#: earlier version is not reused (2: records the quantized NSR before LSQ+, ``ptq_nsr_*``;
#: 3: LSQ+ on PyTorch's fused kernels, whose range includes both end levels)
JOB_VERSION = 3


def settings_key(settings: JobSettings) -> dict:
    d = asdict(settings) | {"job_version": JOB_VERSION}
    d["fp32"], d["int8"] = settings.fp32.as_dict(), settings.int8.as_dict()
    return d


# ----------------------------------------------------------------------------- the chapter


def parse_multiples(text: str) -> tuple[float, ...]:
    """``latency_limits`` ("1.0,1.5") as numbers > 0; ValueError naming the parameter."""
    try:
        vals = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(not v > 0 for v in vals):
        raise ValueError(f"parameter 'latency_limits' must be comma-separated numbers > 0 "
                         f"(multiples of MobileNetV3-Small's INT8 latency); got {text!r}")
    return vals


def plan(cfg) -> dict:
    """Everything the chapter's parameters decide, validated before any work."""
    from ..predictor import target_hyperspace
    from ..search.evolution import EvolutionConfig
    devices = [d for d in cfg.devices.split(",") if d]
    if cfg.recal_images + cfg.eval_images > 4000:
        raise ValueError("parameters 'recal_images' + 'eval_images' must be <= 4000 held-out "
                         f"images; got {cfg.recal_images + cfg.eval_images}")
    if cfg.sample_size > cfg.population:
        raise ValueError(f"parameter 'sample_size' ({cfg.sample_size}) must not exceed "
                         f"'population' ({cfg.population})")
    common = dict(batch_size=cfg.batch_size, optimizer="adamw", weight_decay=1e-4,
                  valid_size=0, grad_clip_value=1.0, grad_clip_norm=None, label_smoothing=0.0,
                  augment="none", channels_last=False, seed=cfg.seed)
    settings = JobSettings(
        fp32=TrainConfig(epochs=cfg.fp32_epochs, lr=cfg.lr, warmup_epochs=0.0, **common),
        int8=TrainConfig(epochs=cfg.int8_epochs, lr=cfg.int8_lr, warmup_epochs=0.0, **common),
        samples=cfg.samples, recal_images=cfg.recal_images, eval_images=cfg.eval_images,
        n_random=cfg.n_random, profile=cfg.profile, seed=cfg.seed)
    return {"devices": devices,
            "hyperspaces": {d: target_hyperspace(d, cfg.scale) for d in devices},
            "settings": settings, "multiples": parse_multiples(cfg.latency_limits),
            "evolution": EvolutionConfig(population=cfg.population, sample_size=cfg.sample_size,
                                         max_evaluated=cfg.max_evaluated, seed=cfg.seed),
            "evolution_seeds": [cfg.seed + i for i in range(cfg.evolution_seeds)],
            "noise_seeds": list(range(cfg.noise_seeds))}


def teacher_images(resolution: int, n_train: int, n_held: int, seed: int,
                   dataset: str = "imagenette"):
    """Normalised training-split images: ``n_train`` for the students, then ``n_held`` held
    out for BN re-calibration and NSR (the test split is never used here). Imagenette: one
    (N, 3, R, R) tensor; ImageNet (``paper``): a seeded subset of the training ImageFolder
    read with the evaluation transforms, loaded image by image when used."""
    import torch

    from .teacher import split_images
    if dataset == "imagenet":
        from torch.utils.data import Subset

        from ..data.imagenet import load_imagenet
        folder = load_imagenet("train", resolution, augment=False)
        idx = split_images(np.arange(len(folder)), n_train, n_held, seed)
        return Subset(folder, [int(i) for i in idx])
    if dataset != "imagenette":
        raise ValueError(f"parameter 'dataset' must be imagenette or imagenet; got {dataset!r}")
    from ..data.imagenette import IMAGENET_MEAN, IMAGENET_STD, load_imagenette
    x = split_images(load_imagenette(resolution).x_train, n_train, n_held, seed)
    x = (x.astype(np.float32) / 255 - np.array(IMAGENET_MEAN, np.float32)) \
        / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def train_students(params: dict, progress: bool = True) -> Path:
    """The chapter's student phase outside the notebook, e.g. under torchrun for the paper
    profile (``torchrun --nproc_per_node=8 -m spaceevo_lib.cli blockkd-students -p profile
    paper``): the same plan, teacher, images, banks and job folder as the chapter, which then
    finds every student finished. Returns the job folder."""
    from .. import config, store
    from ..space.hyperspace import as_hyperspace
    from ..train.int8 import load_teachers
    from .tables import table_resolutions
    from .teacher import feature_bank, stage_boundaries
    cfg = config.chapter_config("blockkd", **params)
    p = plan(cfg)
    teacher, teacher_int8, tparams = load_teachers(cfg.profile)
    hyperspaces = list(p["hyperspaces"].values())
    resolutions = table_resolutions(as_hyperspace(hyperspaces[0]))
    out = store.Run("blockkd", cfg.profile).path / job_folder_name(
        p["settings"], tparams["checkpoints_sha256"])
    images = teacher_images(tparams["resolution"], cfg.train_images,
                            cfg.recal_images + cfg.eval_images, cfg.seed, cfg.dataset)
    splits = stage_boundaries(teacher), stage_boundaries(teacher_int8)
    boundary_table(splits[0], hyperspaces, resolutions)  # (refuses other strides)
    banks = tuple(feature_bank(s, images, cfg.train_images, resolutions, cfg.feature_cache)
                  for s in splits)
    run_jobs(jobs_of(hyperspaces), out, banks, p["settings"], workers=cfg.workers,
             progress=progress)
    return out


def job_folder_name(settings: JobSettings, teacher: str = "") -> str:
    """The jobs' folder in the chapter's run: keyed by every setting that changes a student and
    by the teacher (``teacher``: the ``checkpoints_sha256`` of
    :func:`~spaceevo_lib.train.int8.load_teachers`; a retrained teacher gets new students)."""
    from ..store import stable_hash
    key = settings_key(settings) | ({"teacher": teacher} if teacher else {})
    return "blockkd-" + stable_hash(key)[:10]


def split_agreement(teacher, split, x) -> float:
    """Largest |difference| between the teacher's logits and its head run on the split's last
    boundary: 0 means the cut loses nothing."""
    import torch

    from ..space.build import HEAD_CHILDREN
    with torch.no_grad():
        h = split(x)[-1]
        for name in HEAD_CHILDREN:
            h = getattr(teacher, name)(h)
        return float((h - teacher(x)).abs().max())


def boundary_table(split, hyperspaces, resolutions) -> pd.DataFrame:
    """Channels and side of every boundary at every table resolution, checked against each
    hyperspace's strides (BlockKDError on a mismatch)."""
    from .teacher import check_teacher
    rows = []
    for r in resolutions:
        got = None
        for hs in hyperspaces:
            got = check_teacher(split, hs, r)
        for j, (c, s) in enumerate(got):
            rows.append({"resolution": r, "boundary": f"b{j}", "after": f"stage{j}",
                         "channels": c, "side": s})
    return pd.DataFrame(rows).pivot_table(index=["boundary", "after", "channels"],
                                          columns="resolution", values="side").reset_index()


def mnv3_int8_ms(profile: str, device: str) -> float:
    """MobileNetV3-Small's measured INT8 latency (ms) on ``device``, from its post-training
    file in the chapter "Training in INT8" at ``profile``."""
    from ..store import MissingResultError, Run
    route = {"ort-vnni": "int8-ort-ptq", "tflite": "int8-tflite-ptq"}[device]
    try:
        res = Run("int8", profile).load("results")
    except Exception:
        raise MissingResultError(f"no results of the chapter 'Training in INT8' at {profile}: "
                                 "run it first (its MobileNetV3-Small latency sets the limits)"
                                 ) from None
    r = res[(res.network == "mobilenet_v3_small") & (res.model == route)]
    if not len(r):
        raise MissingResultError(f"the chapter 'Training in INT8' at {profile} has no "
                                 f"{route} file of mobilenet_v3_small (networks=all needed)")
    return float(r.int8_median_of_min_ms.iloc[0])


def table_overview(tables) -> pd.DataFrame:
    """Per (stage, block): rows, NSR median and range, INT8 ms range, over all windows."""
    rows = []
    hs = tables.spec
    for (s, b, w) in tables.keys():
        t = tables.table(s, b, w)
        nsr = np.concatenate(t.nsr)
        lat = np.concatenate(t.latency_ms)
        rows.append({"stage": s, "block": hs.block(b).code, "window": w, "rows": len(nsr),
                     "nsr_median": float(np.median(nsr)), "nsr_min": float(nsr.min()),
                     "ms_min": float(lat.min()), "ms_max": float(lat.max())})
    df = pd.DataFrame(rows)
    return (df.groupby(["stage", "block"], sort=False)
            .agg(tables=("window", "size"), rows=("rows", "sum"),
                 nsr_median=("nsr_median", "median"), nsr_best=("nsr_min", "min"),
                 int8_ms_min=("ms_min", "min"), int8_ms_max=("ms_max", "max")).reset_index())
