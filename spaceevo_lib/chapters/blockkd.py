"""The chapter "Block-wise INT8 distillation and own spaces": its plan, the student phase as
the notebook and ``spaceevo blockkd-students`` run it, its tables, verdicts and records.

The machinery is :mod:`spaceevo_lib.blockkd` (teacher cut and feature banks, stage students,
tables, the jobs that train them, the space evolution on own tables); this module decides what
it runs on (the teacher of the INT8 chapter, this host's predictors of the predictor chapter)
and what the chapter shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config
from ..blockkd.jobs import JobContext, JobSettings, histories, job_folder_name, jobs_of, run_jobs
from ..blockkd.spaces import evolve_spaces, evolved_seed
from ..blockkd.tables import (ExtrapolationError, other_latency, price_tables, read_tables,
                              table_resolutions)
from ..blockkd.teacher import (BlockKDError, boundary_table, describe_banks, feature_bank,
                               split_agreement, stage_boundaries, take_images, teacher_images)
from ..data.paper import paper_value
from ..predictor import target_hyperspace
from ..search.evolution import EvolutionConfig, describe_spaces
from ..search.qt import QTConfig
from ..space import SpaceChoice, as_hyperspace
from ..store import MissingResultError, Run, record
from ..train.config import TrainConfig
from . import int8 as int8_chapter
from . import latency as latency_chapter
from . import predictor as predictor_chapter

#: (device, scale) of each hyperspace designed here, at the training and the paper scale (the
#: paper's pairing, predictor.HYPERSPACE_OF; tflite is the XNNPACK device the predictors
#: were built for)
DEVICE_OF = {target_hyperspace(d, sc): (d, sc) for d in ("ort-vnni", "tflite")
             for sc in ("train", "paper")}


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BlockKDPlan:
    """Everything the chapter's parameters decide, validated before any work."""

    devices: list[str]
    hyperspaces: dict  # device -> hyperspace designed for it
    settings: JobSettings  # what every student job does
    multiples: tuple[float, ...]  # latency limits, as multiples of MobileNetV3-Small's INT8
    evolution: EvolutionConfig
    evolution_seeds: list[int]
    noise_seeds: list[int]


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


def plan(cfg) -> BlockKDPlan:
    """The chapter's plan from its validated parameters (a ValueError names the parameter)."""
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
    return BlockKDPlan(
        devices=devices, hyperspaces={d: target_hyperspace(d, cfg.scale) for d in devices},
        settings=settings, multiples=parse_multiples(cfg.latency_limits),
        evolution=EvolutionConfig(population=cfg.population, sample_size=cfg.sample_size,
                                  max_evaluated=cfg.max_evaluated, seed=cfg.seed),
        evolution_seeds=[cfg.seed + i for i in range(cfg.evolution_seeds)],
        noise_seeds=list(range(cfg.noise_seeds)))


# ----------------------------------------------------------------------------- the students


@dataclass
class Students:
    """The student phase, prepared the same way by the notebook and by
    ``spaceevo blockkd-students`` (so that either finds the other's finished jobs)."""

    teacher: object  # FP32 teacher network
    teacher_int8: object  # its LSQ+ network
    teacher_params: dict  # the INT8 chapter's parameters + checkpoints_sha256
    splits: tuple  # the two teachers cut at the stage boundaries
    images: object  # the teacher's images (training split only)
    resolutions: tuple[int, ...]
    banks: tuple  # FP32 and INT8 feature banks
    context: JobContext  # everything the jobs read
    hyperspaces: list[str]

    @property
    def out(self) -> Path:
        return self.context.out

    def split_gap(self, n: int = 64) -> float:
        """Largest |teacher logits - its head run on the last boundary| on ``n`` images."""
        return split_agreement(self.teacher, self.splits[0],
                               take_images(self.images, slice(0, n)))

    def boundary_table(self) -> pd.DataFrame:
        """Channels and side of every boundary at every table resolution."""
        return boundary_table(self.splits[0], self.hyperspaces, self.resolutions)


def predictors_for(hyperspaces, profile: str) -> dict:
    """This host's INT8 predictor of each hyperspace's device (the predictor chapter's)."""
    out = {}
    for hs in hyperspaces:
        p = predictor_chapter.load_predictor(*DEVICE_OF[hs], profile)
        if p.hyperspace != hs:
            raise BlockKDError(f"latency predictor {p.name} is for {p.hyperspace!r}, not {hs!r}")
        out[hs] = p
    return out


def prepare_students(cfg, the_plan: BlockKDPlan) -> Students:
    """The teacher of the INT8 chapter, cut at the stage boundaries (checked against every
    hyperspace's strides), its images and feature banks, this host's predictors, and the job
    folder keyed by the settings and the teacher's checkpoints."""
    teacher, teacher_int8, tparams = int8_chapter.load_results(cfg.profile).teachers()
    hyperspaces = list(the_plan.hyperspaces.values())
    resolutions = table_resolutions(as_hyperspace(hyperspaces[0]))
    out = Run("blockkd", cfg.profile).path / job_folder_name(the_plan.settings,
                                                              tparams["checkpoints_sha256"])
    # never the images the training chapters hold out (the INT8 chapter's split)
    images = teacher_images(tparams["resolution"], cfg.train_images,
                            cfg.recal_images + cfg.eval_images, cfg.seed, cfg.dataset,
                            valid_size=tparams["valid_size"], valid_seed=tparams["seed"])
    splits = stage_boundaries(teacher), stage_boundaries(teacher_int8)
    boundary_table(splits[0], hyperspaces, resolutions)  # (refuses other strides)
    banks = tuple(feature_bank(s, images, cfg.train_images, resolutions, cfg.feature_cache)
                  for s in splits)
    ctx = JobContext(out, banks[0], banks[1], the_plan.settings,
                     predictors_for(hyperspaces, cfg.profile))
    return Students(teacher, teacher_int8, tparams, splits, images, resolutions, banks, ctx,
                    hyperspaces)


def train_students(params: dict, progress: bool = True) -> Path:
    """The chapter's student phase outside the notebook, e.g. under torchrun for the paper
    profile (``torchrun --nproc_per_node=8 -m spaceevo_lib.cli blockkd-students -p profile
    paper``): the same plan, teacher, images, banks and job folder as the chapter, which then
    finds every student finished. Returns the job folder."""
    cfg = config.chapter_config("blockkd", **params)
    students = prepare_students(cfg, plan(cfg))
    run_jobs(jobs_of(students.hyperspaces), students.context, workers=cfg.workers,
             progress=progress)
    return students.out


def run_students(students: Students, workers: int, run) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  float]:
    """Every stage student (resumable jobs), their records and curves saved in the run, and
    the job folder recorded for later chapters; returns (records, history, wall seconds)."""
    t0 = time.perf_counter()
    records = run_jobs(jobs_of(students.hyperspaces), students.context, workers=workers,
                       progress=False)
    wall = time.perf_counter() - t0
    history = histories(students.out)
    run.save(records, "students")
    run.save(history, "history")
    run.save({"job_folder": students.out.name, "hyperspaces": students.hyperspaces},
             "students_folder", "json")
    return records, history, wall


@dataclass(frozen=True)
class BlockKDResults:
    """What the chapter left for later chapters (:func:`load_results`): its spaces' scores
    and the job folder of its stage students and tables."""

    path: Path
    params: dict

    def scores(self, device: str) -> pd.DataFrame:
        """The Q-T scores of every space shown for ``device`` (evolved, random, hand-designed,
        uniform, published)."""
        path = self.path / f"scores_{device}.parquet"
        if not path.is_file():
            raise MissingResultError(f"no {path}: the block-wise chapter designed no space "
                                     f"for {device} (its 'devices' parameter)")
        return pd.read_parquet(path)

    def evolved(self, device: str) -> SpaceChoice:
        """The best evolved space for ``device`` (highest Q-T mean over the noise seeds)."""
        s = self.scores(device)
        return SpaceChoice.decode(s[s.kind == "evolved"].sort_values(
            "qt_mean", ascending=False).encoding.iloc[0])

    def named(self, device: str, name: str) -> SpaceChoice:
        """A space scored under ``name`` for ``device`` (e.g. ``all MBv3Res``)."""
        s = self.scores(device)
        hit = s[s.space == name]
        if not len(hit):
            raise MissingResultError(f"the block-wise chapter scored no space {name!r} for "
                                     f"{device}; it has: {', '.join(s.space)}")
        return SpaceChoice.decode(hit.encoding.iloc[0])

    @property
    def job_folder(self) -> Path:
        """Where the stage students (their FP32 weights) and the own tables are."""
        info = self.path / "students_folder.json"
        if not info.is_file():
            raise MissingResultError(f"no {info}: rerun the block-wise distillation chapter "
                                     "(it records its job folder since job version 4)")
        return self.path / json.loads(info.read_text())["job_folder"]


def load_results(profile: str, root: Path | None = None) -> BlockKDResults:
    """This chapter's results at ``profile``, for later chapters. MissingResultError names the
    chapter to run first."""
    run = Run("blockkd", profile, root)
    return BlockKDResults(run.path, run.finished_params())


def mnv3_int8_ms(profile: str, device: str) -> float:
    """MobileNetV3-Small's INT8 latency (ms) on ``device``, measured on its post-training file
    in the chapter "Training in INT8" at ``profile``: the unit of the latency limits."""
    return int8_chapter.load_results(profile).int8_ms("mobilenet_v3_small", device)


def limits_table(limits: dict, profile: str) -> pd.DataFrame:
    """Per device: MobileNetV3-Small's INT8 latency and the latency limits derived from it."""
    return pd.DataFrame([{"device": d, "MobileNetV3-Small INT8 (ms)": mnv3_int8_ms(profile, d),
                          "limits T (ms)": ", ".join(f"{t:.3f}" for t in limits[d])}
                         for d in limits])


def tables_table(tables: dict, hyperspaces: dict, other: dict,
                 resolutions: tuple[int, ...]) -> pd.DataFrame:
    """Per device: its hyperspace, tables and rows, and the other parts' predicted INT8 ms."""
    return pd.DataFrame([{"device": d, "hyperspace": hyperspaces[d], "tables": len(t.keys()),
                          "rows": sum(t.table(*k).n_rows for k in t.keys()),
                          **{f"other parts at {r} px (ms)": other[d][r] for r in resolutions}}
                         for d, t in tables.items()])


def read_own_tables(students: Students, hyperspaces: dict) -> tuple[dict, dict]:
    """Per device: the own lookup tables the students wrote, and the other parts' predicted
    INT8 latency at each table resolution."""
    tables = {d: read_tables(hs, students.out / "tables" / hs, students.resolutions)
              for d, hs in hyperspaces.items()}
    other = {d: other_latency(hs, students.context.predictors[hs], students.resolutions)
             for d, hs in hyperspaces.items()}
    return tables, other


def overview(tables: dict) -> pd.DataFrame:
    """:func:`table_overview` of every device's tables."""
    return pd.concat([table_overview(t).assign(device=d) for d, t in tables.items()])


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


# ----------------------------------------------------------------------------- verdicts


#: The chapter's rules, fixed before any result exists (tests check them on made-up tables):
#: a space search must beat random sampling of as many spaces and the best uniform space on
#: the same tables (Q-T mean above theirs by more than this margin, in units of their std),
#: and INT8 must cost squeeze-excite blocks more than the others (the paper's finding: median
#: INT8/FP32 NSR ratio of SE blocks above that of the others). The ratio is taken at the
#: quantization step (the same weights, min-max ranges, against the INT8 teacher): the first
#: run took it after LSQ+, whose extra epoch of training made every ratio fall below 1 and
#: measured training more than INT8.
THRESHOLDS = {"evolved_vs_random_std": 0.0, "evolved_vs_uniform_std": 0.0}


def int8_cost(records: pd.DataFrame) -> pd.DataFrame:
    """Per (hyperspace, block): median over stages of the max sub-stage's NSR as an FP32
    student, quantized (same weights, min-max ranges: ``ptq``) and after LSQ+, and of the
    ratios to FP32; worst quantization step first."""
    r = records.assign(ratio=records.ptq_nsr_max / records.fp32_nsr_max,
                       lsq_ratio=records.int8_nsr_max / records.fp32_nsr_max)
    out = (r.groupby(["hyperspace", "code", "activation", "se"], sort=False)
           .agg(fp32_nsr=("fp32_nsr_max", "median"), ptq_nsr=("ptq_nsr_max", "median"),
                lsq_nsr=("int8_nsr_max", "median"), int8_over_fp32=("ratio", "median"),
                lsq_over_fp32=("lsq_ratio", "median"), stages=("stage", "size"))
           .reset_index())
    return out.sort_values("int8_over_fp32", ascending=False).reset_index(drop=True)


def int8_cost_glue(cost: pd.DataFrame) -> dict:
    se = cost[cost.se].int8_over_fp32
    rest = cost[~cost.se].int8_over_fp32
    w = cost.iloc[0]
    return {"kd_ratio_se": f"{se.median():.2f}" if len(se) else "n/a",
            "kd_ratio_nose": f"{rest.median():.2f}" if len(rest) else "n/a",
            "kd_lsq_ratio": f"{cost.lsq_over_fp32.median():.2f}",
            "kd_worst_block": f"{w.code} ({w.activation}, {w.hyperspace}, ratio "
                              f"{w.int8_over_fp32:.2f})"}


def verdicts(scores: dict, cost: pd.DataFrame | None = None,
             thresholds: dict = THRESHOLDS) -> pd.DataFrame:
    """One row per rule and device: measured value, threshold, whether it holds."""
    rows = []
    for device, s in scores.items():
        evo = s[s.kind == "evolved"].sort_values("qt_mean", ascending=False).iloc[0]
        for kind, key, what in (("random", "evolved_vs_random_std", "best of random spaces"),
                                ("uniform", "evolved_vs_uniform_std", "best uniform space")):
            other = s[s.kind == kind].sort_values("qt_mean", ascending=False)
            if not len(other):
                continue
            o = other.iloc[0]
            margin = (evo.qt_mean - o.qt_mean) / max(float(o.qt_std), 1e-12)
            rows.append((device, f"evolved space beats the {what} (Q-T margin, in its std)",
                         float(margin), thresholds[key], bool(margin > thresholds[key])))
    if cost is not None and cost.se.any() and (~cost.se).any():
        d = float(cost[cost.se].int8_over_fp32.median() - cost[~cost.se].int8_over_fp32.median())
        rows.append(("both", "INT8 costs SE blocks more (median quantized/FP32 NSR ratio, SE "
                             "minus others)", d, 0.0, bool(d > 0)))
    return pd.DataFrame(rows, columns=["device", "rule", "measured", "threshold", "holds"])


def noxnn_comparison(profile: str, root: Path | None = None) -> pd.DataFrame:
    """INT8 speedup per operator on TFLite with and without XNNPACK, from the latency chapter's
    measurements at ``profile`` (a one-row note when that chapter has not run, or timed
    neither TFLite device)."""
    try:
        table = latency_chapter.load_measurements(profile, root)
    except MissingResultError as e:
        return pd.DataFrame({"note": [str(e)]})
    ops = latency_chapter.operator_speedups(table)
    ops = ops[ops.device.isin(["tflite", "tflite-noxnn"])]
    if not len(ops):
        return pd.DataFrame({"note": ["no per-operator TFLite records"]})
    out = ops.pivot_table(index="op_type", columns="device", values="speedup", sort=False)
    out = out.reindex(columns=["tflite", "tflite-noxnn"]).reset_index()
    return out.set_axis(["operator", "tflite (XNNPACK) INT8 speedup",
                         "tflite-noxnn (paper) INT8 speedup"], axis=1)


def cost_table(records: pd.DataFrame) -> pd.DataFrame:
    """CPU core-hours of this run's students (training, tables) per hyperspace, beside the
    paper's GPU-hours."""
    rows = []
    for hs, r in records.groupby("hyperspace", sort=False):
        rows.append({"hyperspace": hs, "students": len(r), "table rows": int(r.rows.sum()),
                     "training core-hours": r.train_seconds.sum() / 3600,
                     "tables core-hours": (r.seconds - r.train_seconds).sum() / 3600,
                     "total core-hours": r.seconds.sum() / 3600,
                     "paper GPU-hours (ImageNet)": paper_value("space_design_cost")})
    return pd.DataFrame(rows)


def decoded(scores: pd.DataFrame, kinds=("evolved", "published", "hand-designed")):
    """The chosen spaces decoded per stage (``Code(lo-hi)`` per stage)."""
    pick = scores[scores.kind.isin(kinds)]
    out = describe_spaces(pick.encoding, pick.qt_mean)
    return out.assign(space=pick.space.to_numpy(), kind=pick.kind.to_numpy())


def stage_blocks(encoding: str) -> list[str]:
    """The block code of each stage 1..6 of a space."""
    sp = SpaceChoice.decode(encoding)
    hs = as_hyperspace(sp.hyperspace)
    return [hs.block(b).code for b in sp.blocks]


def compare_devices(best: dict[str, str]) -> pd.DataFrame:
    """Stage by stage, the block family each device's evolved space chose (the hyperspaces
    differ, so blocks are compared by code), and whether they agree."""
    devices = list(best)
    codes = {d: stage_blocks(e) for d, e in best.items()}
    rows = []
    for i in range(6):
        row = {"stage": f"stage{i + 1}", **{d: codes[d][i] for d in devices}}
        row["same block"] = len({codes[d][i] for d in devices}) == 1
        rows.append(row)
    return pd.DataFrame(rows)


def cross_predictors(the_plan: BlockKDPlan, profile: str) -> dict:
    """{(device, hyperspace): predictor} of each designed hyperspace on every other designed
    device: the predictor chapter's cross targets (e.g. ``tflite:onnxw``); pairs it did not
    build are left out, and :func:`devices_table` says so."""
    out = {}
    for hs in the_plan.hyperspaces.values():
        for d in the_plan.devices:
            if the_plan.hyperspaces[d] != hs:
                try:
                    out[(d, hs)] = predictor_chapter.load_predictor(d, profile=profile,
                                                                    hyperspace=hs)
                except FileNotFoundError:
                    pass
    return out


def price_own_tables(students: Students, the_plan: BlockKDPlan, cross: dict
                     ) -> tuple[dict, dict]:
    """Every own table priced on each other device with a predictor of its hyperspace
    (:func:`~spaceevo_lib.blockkd.tables.price_tables`: from the rows, no student retrained).
    A hyperspace whose tables a cross predictor would price by extrapolating is left unpriced;
    returns (the cross predictors whose tables were priced, {hyperspace: why not})."""
    why = {}
    for own, hs in the_plan.hyperspaces.items():
        try:
            price_tables(hs, students.out / "tables" / hs, own,
                         {d: p for (d, h), p in cross.items() if h == hs})
        except ExtrapolationError as err:
            why[hs] = str(err)
    return {k: p for k, p in cross.items() if k[1] not in why}, why


def evolve_on_other_devices(students: Students, the_plan: BlockKDPlan, cross: dict,
                            limits: dict, qt_samples: int) -> pd.DataFrame:
    """Each hyperspace evolved under each other device's limits, on its tables' latency
    column for that device (same seeds, evolution and Q-T as the own device's): one row per
    (hyperspace, device, seed) with the evolved space and its Q-T score."""
    rows = []
    for (d, hs), pred in cross.items():
        tables = read_tables(hs, students.out / "tables" / hs, students.resolutions, device=d)
        other = other_latency(hs, pred, students.resolutions)
        qt = QTConfig(n_samples=qt_samples, constraints_ms=((hs, limits[d]),))
        hist, _ = evolve_spaces(tables, other, qt, the_plan.evolution,
                                the_plan.evolution_seeds, random_baseline=False)
        for seed, h in hist.groupby("seed", sort=True):
            top = h.iloc[int(np.argmax(h.score.to_numpy()))]
            rows.append({"hyperspace": hs, "device": d, "seed": int(seed),
                         "encoding": top.encoding, "qt": float(top.score)})
    return pd.DataFrame(rows, columns=["hyperspace", "device", "seed", "encoding", "qt"])


def own_evolutions(the_plan: BlockKDPlan, scores: dict) -> pd.DataFrame:
    """The own device's evolved spaces per seed (from the chapter's scores), in the rows of
    :func:`evolve_on_other_devices`."""
    rows = []
    for d, sc in scores.items():
        evo = sc[sc.kind == "evolved"]
        for r in evo.itertuples():
            rows.append({"hyperspace": the_plan.hyperspaces[d], "device": d,
                         "seed": evolved_seed(r.space),
                         "encoding": r.encoding, "qt": float(r.qt_mean)})
    return pd.DataFrame(rows, columns=["hyperspace", "device", "seed", "encoding", "qt"])


def devices_question(students: Students, the_plan: BlockKDPlan, scores: dict, limits: dict,
                     profile: str, qt_samples: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's devices question on one hyperspace: every own table priced on the other
    designed devices, each hyperspace evolved under their limits too; returns (the
    evolutions per hyperspace, device and seed; :func:`devices_table`)."""
    cross, why = price_own_tables(students, the_plan, cross_predictors(the_plan, profile))
    evolutions = pd.concat([own_evolutions(the_plan, scores),
                            evolve_on_other_devices(students, the_plan, cross, limits,
                                                    qt_samples)], ignore_index=True)
    return evolutions, devices_table(the_plan, evolutions, why)


def devices_table(the_plan: BlockKDPlan, evolutions: pd.DataFrame,
                  why: dict | None = None) -> pd.DataFrame:
    """Per designed hyperspace, the devices question (:func:`devices_differ`) where it has
    evolutions on two devices, stage by stage; a hyperspace without the other device's
    predictor (or whose predictor would extrapolate, ``why``) is listed as not asked."""
    out = []
    for hs in the_plan.hyperspaces.values():
        ev = evolutions[evolutions.hyperspace == hs]
        picks = {d: g.sort_values("seed").encoding.tolist()
                 for d, g in ev.groupby("device", sort=False)}
        if len(picks) < 2:
            reason = (why or {}).get(hs, "no predictor of it on another device")
            out.append(pd.DataFrame([{"hyperspace": hs, "stage": f"- (not asked: {reason})",
                                      "differ": None}]))
            continue
        table = devices_differ(picks).rename(columns=lambda c: f"picks on {c}"
                                             if c in picks else c)
        out.append(table.assign(hyperspace=hs))
    df = pd.concat(out, ignore_index=True)
    return df[["hyperspace", "stage", *[c for c in df if c.startswith("picks on")], "differ"]]


def devices_records(evolutions: pd.DataFrame, table: pd.DataFrame) -> list[dict]:
    """``qt_best_space/own-<device>/<hyperspace>`` (the best seed's space) for each cell of
    the evolutions, ``verdict/devices_differ/<hyperspace>`` (1 differ, 0 same) where asked."""
    out = []
    for (hs, d), g in evolutions.groupby(["hyperspace", "device"], sort=False):
        out.append(record(f"qt_best_space/own-{d}/{hs}",
                          str(g.sort_values("qt", ascending=False).encoding.iloc[0]),
                          "encoding"))
    for hs, g in table.groupby("hyperspace", sort=False):
        if g.differ.notna().all():
            out.append(record(f"verdict/devices_differ/{hs}", devices_verdict(g), "verdict"))
    return out


def devices_differ(picks: dict[str, list[str]]) -> pd.DataFrame:
    """The paper's devices question asked on one hyperspace, by the rule fixed before the
    numbers: ``picks`` maps each device to the spaces (encodings of one hyperspace) its
    evolution seeds chose under its own latency limits. A stage differs between two devices
    when every seed on one picks the same block and no seed on the other picks it. One row
    per stage: each device's picks (block code x seeds) and whether it differs."""
    devices = list(picks)
    spaces = {d: [SpaceChoice.decode(e) for e in encs] for d, encs in picks.items()}
    hs = {sp.hyperspace for d in devices for sp in spaces[d]}
    if len(hs) != 1:
        raise ValueError(f"the devices question needs one hyperspace; got {sorted(hs)}")
    if any(not spaces[d] for d in devices):
        raise ValueError("every device needs at least one evolved space")
    hyperspace = as_hyperspace(hs.pop())
    rows = []
    for i in range(6):
        chosen = {d: [sp.blocks[i] for sp in spaces[d]] for d in devices}
        differ = any(len(set(chosen[a])) == 1 and chosen[a][0] not in chosen[b]
                     for a in devices for b in devices if a != b)
        rows.append({"stage": f"stage{i + 1}",
                     **{d: ", ".join(f"{hyperspace.block(b).code} x{chosen[d].count(b)}"
                                     for b in sorted(set(chosen[d])))
                        for d in devices},
                     "differ": differ})
    return pd.DataFrame(rows)


def devices_verdict(table: pd.DataFrame) -> int:
    """1 when some stage differs between the devices (:func:`devices_differ`), else 0."""
    return int(table["differ"].any())


def summary_records(device: str, scores: pd.DataFrame) -> list[dict]:
    """``qt_best``, ``qt_best_space``, ``qt_uniform_best(_std)`` and ``qt/own-<device>/<enc>``."""
    tag = f"own-{device}"
    evo = scores[scores.kind == "evolved"].sort_values("qt_mean", ascending=False)
    uni = scores[scores.kind == "uniform"].sort_values("qt_mean", ascending=False)
    out = [record(f"qt_best/{tag}", round(float(evo.qt_mean.iloc[0]), 5), "1/NSR"),
           record(f"qt_best_space/{tag}", str(evo.encoding.iloc[0]), "encoding"),
           record(f"qt_uniform_best/{tag}", round(float(uni.qt_mean.iloc[0]), 5), "1/NSR"),
           record(f"qt_uniform_best_std/{tag}", round(float(uni.qt_std.iloc[0]), 5), "1/NSR")]
    for enc, g in scores.groupby("encoding", sort=False):
        out.append(record(f"qt/{tag}/{enc}", round(float(g.qt_mean.iloc[0]), 5), "1/NSR"))
    return out


def glue_values(cfg, the_plan: BlockKDPlan, students: Students, records: pd.DataFrame,
                cost: pd.DataFrame, jobs_wall_s: float) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    return {"kd_split_gap": f"{students.split_gap():.1e}",
            "kd_bank_text": describe_banks(students.banks), "kd_dataset": cfg.dataset,
            "kd_images": f"{len(students.images):,}",
            "kd_resolutions": ", ".join(map(str, students.resolutions)),
            "kd_n_random": str(cfg.n_random), "kd_fp32_epochs": str(cfg.fp32_epochs),
            "kd_int8_epochs": str(cfg.int8_epochs), "kd_workers": str(cfg.workers),
            "kd_students": str(len(records)), "kd_samples": str(cfg.samples),
            "kd_recal": str(cfg.recal_images), "kd_eval": str(cfg.eval_images),
            "kd_multiples": " and ".join(f"{m:g}" for m in the_plan.multiples),
            "kd_evo_seeds": str(cfg.evolution_seeds),
            "kd_max_evaluated": f"{cfg.max_evaluated:,}",
            "kd_noise_seeds": str(cfg.noise_seeds),
            "kd_jobs_wall": f"{jobs_wall_s / 60:.1f}",
            "kd_jobs_sum": f"{records.seconds.sum() / 60:.1f}", **int8_cost_glue(cost)}
