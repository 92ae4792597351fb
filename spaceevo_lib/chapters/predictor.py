"""The chapter "A latency predictor per device": its plan, tables, verdicts and records.

The recipe itself (sample, measure, fit, validate) is :func:`spaceevo_lib.predictor.build.
build_predictor`; this module holds what the chapter decides and shows around it: the
sampling settings per scale (:func:`plan`), the earlier protocol beside the current one, the
training scale's rule (:data:`CANDIDATES`, :func:`scale_verdicts`), the tables beside the
ground truth's repeatability, the target and its records, and :func:`load_predictor`, the one
way later chapters read this chapter's predictors.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.paper import paper_value
from ..latency.jobs import Job, drop_models, job_builder, load_compiled, run_jobs, time_jobs
from ..latency.protocol import PRECISIONS, Protocol, latency_column
from ..nn.flops import profile
from ..nn.models import create_model
from ..nn.subnet import build_subnet
from ..predictor import SCALES, target_hyperspace
from ..predictor.build import PredictorSettings, build_predictor
from ..predictor.model import COMPOSITION_TERMS, LatencyPredictor, frame_units, saved_name
from ..predictor.sampling import random_subnet
from ..predictor.units import BASELINE_SPACE, subnet_mflops, unit_cost
from ..report.study import substitutions
from ..space.encoding import SpaceChoice, max_subnet, min_subnet, published_spaces
from ..space.hyperspace import get_hyperspace, register_hyperspace, scaled_hyperspace
from ..store import Run, record

# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PredictorPlan:
    """What the chapter's parameters decide, validated before any work."""

    targets: dict  # (device, label) -> hyperspace; label: a scale, or a cross target's hyperspace
    protocol: Protocol  # blocks' visits
    whole_protocol: Protocol  # the ground truth's visits: the blocks' with another budget
    device_options: dict  # device -> options (the ONNX INT8 format)
    settings: dict  # label -> PredictorSettings

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.targets))


def plan(cfg) -> PredictorPlan:
    """The chapter's targets, protocols and per-scale sampling settings from its parameters
    (``paper_<name>`` parameters size the paper's 224-px scale)."""
    devices, scales = cfg.device.split(","), cfg.scale.split(",")
    protocol = Protocol(threads=cfg.threads, warmup=cfg.warmup, visits=cfg.visits,
                        budget_ms=cfg.budget_ms, min_runs=2, group=64)

    def settings(prefix: str) -> PredictorSettings:
        def get(name):
            return getattr(cfg, prefix + name)
        return PredictorSettings(
            additivity_subnets=cfg.additivity_subnets, rounds=get("adaptive_rounds"),
            probe_units=get("probe_units"), refine_units=get("refine_units"),
            range_corners=get("range_corners"),
            train_subnets=get("train_subnets"), validation_subnets=get("validation_subnets"),
            regressor=cfg.regressor, stat=cfg.latency_stat)

    targets = {(d, s): target_hyperspace(d, s) for s in scales for d in devices}
    per_label = {"train": settings(""), "paper": settings("paper_")}
    for item in cfg.cross_targets.split(","):
        if item == "none":
            continue
        dev, family = item.split(":")
        hs = family + SCALES["train"]
        targets[dev, hs] = hs  # labelled by its hyperspace: apart from the device's own
        per_label[hs] = replace(per_label["train"],
                                validation_subnets=cfg.cross_validation_subnets)
    return PredictorPlan(
        targets=targets,
        protocol=protocol, whole_protocol=replace(protocol, budget_ms=cfg.whole_budget_ms),
        device_options={"ort-vnni": {"fmt": cfg.quant_format}},
        settings=per_label)


def load_predictor(device: str, scale: str = "train", profile: str = "default",
                   root: Path | None = None, hyperspace: str | None = None) -> LatencyPredictor:
    """The predictor this chapter saved for ``device`` at ``scale`` (``train``: the
    training-scale hyperspace every training chapter uses; ``paper``: 224 px), for ``profile``:
    the one way later chapters read this chapter's results. ``hyperspace`` asks for a cross
    target instead (e.g. tflite's predictor of ``onnxw-train``). It is refitted from its
    training tables, so it loads with any scikit-learn."""
    hs = hyperspace or target_hyperspace(device, scale)
    return LatencyPredictor.load(Run("predictor", profile, root).path, saved_name(device, hs))


# ----------------------------------------------------------------------------- tables


def kernel_costs(predictor: LatencyPredictor) -> pd.DataFrame:
    """The kernel model's per-feature costs for both precisions (long table)."""
    rows = []
    for p in PRECISIONS:
        for f, c in predictor.regressors[p].kernel_costs.items():
            rows.append({"target": f"{predictor.device} {p.upper()}", "device": predictor.device,
                         "precision": p, "feature": f, "ms_per_million": c})
    return pd.DataFrame(rows)


def depthwise_kernel_costs(units_table: pd.DataFrame, device: str = "", hyperspace: str = ""
                           ) -> pd.DataFrame:
    """Median microseconds per thousand depthwise MACs of measured blocks whose one depthwise
    convolution is k x k (k = 3, 5, 7; blocks built around a single depthwise conv), per
    precision: how the runtime's depthwise kernels scale with the kernel size (a block's other
    convolutions do not grow with k, so if depthwise cost followed MACs, ``vs_k5`` would be
    at most 1 for k = 7)."""
    one_dw = units_table[units_table.code.isin(["MBv2", "MBv2Res", "MBv3Res", "MBv1Dual"])]
    if one_dw.empty:
        return pd.DataFrame()
    macs = np.array([unit_cost(u)["macs_dw"] for u in frame_units(one_dw)])
    rows = []
    for p in PRECISIONS:
        per = 1e3 * one_dw[latency_column(p, "min")].to_numpy() / (macs / 1e3)
        for k in (3, 5, 7):
            m = (one_dw.k == k).to_numpy()
            if m.any():
                rows.append({"device": device, "hyperspace": hyperspace, "precision": p,
                             "k": k, "blocks": int(m.sum()),
                             "us_per_kmac_dw": float(np.median(per[m]))})
    out = pd.DataFrame(rows)
    base = out[out.k == 5].set_index("precision")["us_per_kmac_dw"]
    out["vs_k5"] = out["us_per_kmac_dw"] / out["precision"].map(base)  # <= 1 if cost ~ MACs
    return out


def protocol_comparison(device: str, run, table: str, images: np.ndarray, keys: Sequence[str],
                        earlier: Protocol, current: Protocol, busy_seconds: float = 0.0,
                        seed: int = 0) -> pd.DataFrame:
    """The earlier protocol and this one on the same compiled networks, in the same run.

    For the networks ``keys`` of ``run``'s ``table`` (compiled with ``keep_models``):
    the earlier protocol (``earlier``, consecutive) timed twice, one pass after the other as
    the earlier chapter's retest did, and this protocol (``current``) once, its two halves
    compared; each quietly and, if ``busy_seconds`` > 0, again with a CPU-bound process busy on
    the other core (what a converter or any other program does to the timing). Returns one
    row per (protocol, condition, precision): share within +-10 % and +-5 %, median |diff|,
    and whether the idle check flagged the runs.
    """
    jobs, infos = load_compiled(run, table, keys, device)
    rows = []
    for condition in ("idle", "busy") if busy_seconds > 0 else ("idle",):
        with _busy_core(condition == "busy"):
            first, _ = time_jobs(jobs, infos, images, earlier, seed)
            second, _ = time_jobs(jobs, infos, images, earlier, seed + 1)
            now, _ = time_jobs(jobs, infos, images, current, seed + 2)
        f, s, n = (pd.DataFrame(x) for x in (first, second, now))
        for p in PRECISIONS:
            for label, a, b, flagged in (
                    ("earlier: one block of runs, retested after all others",
                     f[latency_column(p, "min")], s[latency_column(p, "min")],
                     f["busy"].mean()),
                    ("this protocol: interleaved visits, two halves",
                     n[latency_column(p, "min", "a")], n[latency_column(p, "min", "b")],
                     n["busy"].mean())):
                rel = b.to_numpy(float) / a.to_numpy(float) - 1
                rows.append({"device": device, "protocol": label, "cpu": condition,
                             "precision": p, "networks": len(rel),
                             "within_10pct": 100 * float(np.mean(np.abs(rel) <= 0.10)),
                             "within_5pct": 100 * float(np.mean(np.abs(rel) <= 0.05)),
                             "median_abs_diff_pct": 100 * float(np.median(np.abs(rel))),
                             "flagged_busy_pct": 100 * float(flagged)})
    return pd.DataFrame(rows)


class _busy_core:
    """Context manager: a CPU-bound child process for the duration (or nothing)."""

    def __init__(self, on: bool):
        self.on, self.proc = on, None

    def __enter__(self):
        if self.on:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        return False


def concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def targets_table(targets: dict[tuple[str, str], str]) -> pd.DataFrame:
    """(device, scale) -> hyperspace of this run, with resolutions and candidate blocks."""
    rows = []
    for (dev, scale), name in targets.items():
        hs = get_hyperspace(name)
        rows.append({"device": dev, "scale": scale, "hyperspace": name,
                     "resolutions": ", ".join(map(str, hs.resolutions)),
                     "stem stride": hs.stage("first_conv").stride,
                     "candidate blocks": ", ".join(b.code for b in hs.blocks)})
    return pd.DataFrame(rows)


def additivity_summary(additivity: pd.DataFrame) -> pd.DataFrame:
    """Per device and precision: subnets, median / min / max of sum-of-blocks over whole, and
    the share within +-10 % of the median (what one composition factor can reach)."""
    keys = [c for c in ("device", "hyperspace", "precision") if c in additivity]
    g = additivity.groupby(keys, sort=False)["sum_over_whole"]
    out = g.agg(subnets="count", median="median", min="min", max="max").reset_index()
    out["within_10pct_of_median"] = g.apply(
        lambda s: 100 * float(((s / s.median() - 1).abs() <= 0.10).mean())).values
    return out


def random_subnet_string(space: str, seed: int) -> str:
    """A random subnet of ``space`` (at any of its hyperspace's resolutions), as a string."""
    return random_subnet(SpaceChoice.decode(space), np.random.default_rng(seed)).encode()


def demo_predictions(predictor: LatencyPredictor, space: str, subnets) -> pd.DataFrame:
    """Predicted FP32 and INT8 latency and the predicted speedup of a few subnets."""
    fp32 = predictor.predict(subnets, "fp32", space=space)
    int8 = predictor.predict(subnets, "int8", space=space)
    return pd.DataFrame({"subnet": [s[:40] + "..." for s in subnets],
                         "mflops": [subnet_mflops(space, s) for s in subnets],
                         "fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8})


def prediction_speed(predictor: LatencyPredictor, space: str, n: int = 2000, seed: int = 0,
                     warm: bool = False) -> float:
    """Subnets priced per second: a batch of ``n`` new random subnets of ``space``, INT8,
    starting from an empty unit cache (the first prices of a search); with ``warm``, a second
    new batch priced with the cache the first one filled (a search's steady state)."""
    sp = SpaceChoice.decode(space)
    rng = np.random.default_rng(seed)
    batches = [[random_subnet(sp, rng) for _ in range(n)] for _ in range(1 + warm)]
    predictor._cache["int8"] = {}
    for batch in batches:
        t0 = time.perf_counter()
        predictor.predict(batch, "int8", space=sp)
        secs = time.perf_counter() - t0
    return n / secs


MEASUREMENT_TABLES = ("fusion", "units", "wholes", "scale")


def measurement_summary(run) -> tuple[int, float]:
    """(records, minutes from the first to the last) of the measurement tables in the run: the
    cost of a first run (a rerun reuses the records and only refits)."""
    stamps = []
    for f in sorted(run.path.glob("*.parquet")):
        if f.stem.startswith(MEASUREMENT_TABLES) and not f.stem.endswith("-visits"):
            cols = pd.read_parquet(f).columns
            if "timestamp" in cols:
                stamps.append(pd.to_datetime(pd.read_parquet(f, columns=["timestamp"])
                                             ["timestamp"], utc=True))
    if not stamps:
        return 0, float("nan")
    allt = pd.concat(stamps)
    return len(allt), float((allt.max() - allt.min()).total_seconds() / 60)


# ----------------------------------------------------------------------------- summary

METRICS = (("rmse_ms", "ms"), ("rmspe_pct", "%"), ("within_5pct", "%"), ("within_10pct", "%"),
           ("within_15pct", "%"))


#: The target, judged on the point estimate (its 95 % Wilson interval shown beside): share of
#: held-out subnets within +-10 % (nn-Meter reaches 99 % on its devices), for INT8 on every
#: device and scale, and for FP32 too at the training scale (cross targets included).
TARGET_WITHIN_10PCT = 95.0


def target_applies(precision: str, hyperspace: str) -> bool:
    """Where :data:`TARGET_WITHIN_10PCT` is judged: INT8 everywhere, FP32 at the training
    scale (a ``-train`` hyperspace)."""
    return precision == "int8" or hyperspace.endswith("-train")


def scale_suffix(hyperspace: str, device: str) -> str:
    """Record-name suffix of a hyperspace's scale: '' (paper), '/train-scale' (the device's
    own training-scale hyperspace) or '/<hyperspace>' (a cross target, e.g. '/onnxw-train'
    for tflite)."""
    if not hyperspace.endswith("-train"):
        return ""
    return "/train-scale" if hyperspace == target_hyperspace(device, "train") else \
        f"/{hyperspace}"


def side_by_side(repeat: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per device, hyperspace and precision: the ground truth's repeatability (split halves,
    the statistic used) beside the predictor's accuracy on held-out networks, and whether the
    target is met (judged only where it applies: ort-vnni INT8, and both devices at the
    training scale)."""
    r = repeat[repeat.used][["device", "hyperspace", "precision", "statistic", "n",
                             "within_10pct", "rmspe_pct"]].rename(columns={
        "within_10pct": "repeat_within_10pct", "rmspe_pct": "repeat_rmspe_pct",
        "n": "networks"})
    m = metrics[metrics.composition == "learned"][["device", "hyperspace", "precision",
                                                   "within_10pct", "within_10pct_ci_low",
                                                   "within_10pct_ci_high", "within_5pct",
                                                   "rmspe_pct"]]
    out = r.merge(m, on=["device", "hyperspace", "precision"])
    applies = [target_applies(p, h) for p, h in zip(out.precision, out.hyperspace)]
    out["target_pct"] = TARGET_WITHIN_10PCT
    out["target_met"] = [bool(w >= TARGET_WITHIN_10PCT) if a else None
                         for w, a in zip(out.within_10pct, applies)]
    return out


def summary_records(side: pd.DataFrame, metrics: pd.DataFrame) -> list[dict]:
    """``<metric>/<device>/<precision>[/train-scale | /<hyperspace>]`` for every validated
    device, precision and scale (e.g. ``within_10pct/ort-vnni/int8``; a cross target
    ``within_10pct/tflite/int8/onnxw-train``), ``repeat_within_10pct/...`` for the
    ground truth; the +-10 % shares carry nn-Meter's 99 % as reference."""
    nnmeter = paper_value("nnmeter_within_10pct")
    out = []
    for _, r in metrics[metrics.composition == "learned"].iterrows():
        tail = f"{r['device']}/{r['precision']}{scale_suffix(r['hyperspace'], r['device'])}"
        for name, unit in METRICS:
            out.append(record(f"{name}/{tail}", float(r[name]), unit,
                              nnmeter if name == "within_10pct" else None))
        out.append(record(f"within_10pct_ci_low/{tail}", float(r["within_10pct_ci_low"]), "%"))
        out.append(record(f"within_10pct_ci_high/{tail}", float(r["within_10pct_ci_high"]),
                          "%"))
        out.append(record(f"validated_subnets/{tail}", int(r["n"]), "networks"))
    for _, r in side.iterrows():
        tail = f"{r['device']}/{r['precision']}{scale_suffix(r['hyperspace'], r['device'])}"
        out.append(record(f"repeat_within_10pct/{tail}", float(r["repeat_within_10pct"]), "%"))
    return out


#: The error sources a missed target is traced to (error_sources' labels), in the order a
#: network's prediction is built: the measurement, one block, the blocks' composition.
MISS_SOURCES = {"ground truth: two halves of the visits": "the measurement itself",
                "one block, predicted (cross-validated)": "the block regressors",
                "measured blocks x one factor (additivity set)": "composition (blocks do not "
                                                                 "add up)"}


def misses(side: pd.DataFrame, sources: pd.DataFrame) -> pd.DataFrame:
    """Every setting that misses the target, with the error source it traces to: of the
    three sources below the predictor (:data:`MISS_SOURCES`), the one with the largest
    RMSPE in this run (the predictor's own fit, "with range corners" where both were fitted).
    A rule, not a judgement: each source is measured on its own set (split halves of the
    held-out networks, cross-validated blocks, the additivity subnets)."""
    src = sources[sources.units != "without range corners"] if "units" in sources else sources
    rows = []
    for r in side[side.target_met.eq(False)].itertuples():  # None: not judged
        s = src[(src.device == r.device) & (src.hyperspace == r.hyperspace)
                & (src.precision == r.precision) & src.source.isin(list(MISS_SOURCES))]
        worst = s.loc[s.rmspe_pct.idxmax()] if len(s) else None
        rows.append({"device": r.device, "hyperspace": r.hyperspace,
                     "precision": r.precision, "within_10pct": r.within_10pct,
                     "ci_low": r.within_10pct_ci_low, "ci_high": r.within_10pct_ci_high,
                     "largest source": (MISS_SOURCES[worst.source] if worst is not None
                                        else "-"),
                     "its rmspe_pct": float(worst.rmspe_pct) if worst is not None else np.nan,
                     "its within_10pct": (float(worst.within_10pct) if worst is not None
                                          else np.nan)})
    return pd.DataFrame(rows, columns=["device", "hyperspace", "precision", "within_10pct",
                                       "ci_low", "ci_high", "largest source", "its rmspe_pct",
                                       "its within_10pct"])


def failures(validation: pd.DataFrame, limit: float = 10.0) -> pd.DataFrame:
    """Held-out networks predicted more than ``limit`` % off, worst first."""
    bad = validation[validation["error_pct"].abs() > limit]
    return bad.reindex(bad["error_pct"].abs().sort_values(ascending=False).index)


def error_by(validation: pd.DataFrame, column: str, bins: int = 4) -> pd.DataFrame:
    """Mean and spread of the relative error by quantile bins of ``column`` (e.g. the
    measured latency): where the predictor is biased."""
    v = validation.copy()
    v["bin"] = pd.qcut(v[column], bins, duplicates="drop")
    keys = [c for c in ("device", "hyperspace", "precision") if c in v]
    return (v.groupby(keys + ["bin"], observed=True)["error_pct"]
            .agg(["count", "mean", "std"]).round(1).reset_index())


def composition_table(predictors) -> pd.DataFrame:
    """The fitted composition terms (eq-composition) of each predictor, per precision, with
    the form kept (four terms or one factor) and both forms' leave-one-out RMSPE on the
    fitting networks that chose it."""
    rows = []
    for p in predictors:
        for prec, coef in p.composition.items():
            loo = p.composition_loo.get(prec, {})
            rows.append({"device": p.device, "hyperspace": p.hyperspace, "precision": prec,
                         "form": loo.get("form", ""),
                         "loo_rmspe_four_terms_pct": loo.get("four_terms", float("nan")),
                         "loo_rmspe_one_factor_pct": loo.get("one_factor", float("nan")),
                         **dict(zip(("a (x sum of blocks)", "b (ms per M weights)",
                                     "c (ms per block)", "d (ms per M tensor elements)"),
                                    coef))})
    assert len(COMPOSITION_TERMS) == 4
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the training scale
# Which copy of the paper's hyperspaces the training chapters can afford. The paper's INT8
# story is that networks of its evolved spaces gain ~2-3x from INT8 on the VNNI CPU while
# MobileNetV3 gains ~1.1x. A training scale must keep that story *and* be trainable on a 2-core
# machine: 32-px Imagenette, widths cut, maybe a stride removed. CANDIDATES are the copies the
# chapter compares; for each, the min and max subnet of the published VNNI space (mapped to
# that scale) and torchvision's MobileNetV3-Small (same stem rule, same resolution) are timed on
# ort-vnni beside their 224-px originals, and the max subnet's training speed is measured.
# scale_verdicts applies the rule written before the numbers exist; the frozen choice
# (onnxw-train in configs/hyperspaces.yaml) is shown beside what the rule picks on this host.

#: The rule (issue "latency ground truth"): the story is kept when the max subnet gains at
#: least this much from INT8 on ort-vnni ...
STORY_MAX_SPEEDUP = 1.5


#: ... while MobileNetV3-Small gains at most this much.
STORY_MNV3_SPEEDUP = 1.1


#: Trainable: the max subnet trains at least this many 32-px images per second on 2 cores
#: (an Imagenette epoch of ~9,500 images in about 3 minutes for the heaviest subnet).
MIN_TRAIN_IMAGES_PER_S = 50.0


@dataclass(frozen=True)
class ScaleCandidate:
    """A training-scale copy of a paper hyperspace (arguments of ``scaled_hyperspace``)."""

    label: str
    width_divisor: float
    max_resolution: int
    stem_stride: int

    def hyperspace(self, base: str = "onnxw"):
        """The candidate's hyperspace, registered (so that its encodings decode) under
        ``<base>-<label>``; ``train`` is exactly the registered ``<base>-train``."""
        strides = {} if self.stem_stride == 2 else {"first_conv": self.stem_stride}
        hs = scaled_hyperspace(base, f"{base}-{self.label}", width_divisor=self.width_divisor,
                               max_resolution=self.max_resolution, n_classes=10,
                               strides=strides)
        return register_hyperspace(hs, overwrite=True)


#: Candidates compared; ``train`` is the frozen one (registered as onnxw-train/mobilew-train).
CANDIDATES = (ScaleCandidate("w4-s2", 4, 32, 2), ScaleCandidate("w2-s2", 2, 32, 2),
              ScaleCandidate("train", 2, 32, 1))


FROZEN = "train"


@job_builder("scale-network")
def build_scale_network(base: str, label: str, which: str, width_divisor: float = 0,
                        max_resolution: int = 224, stem_stride: int = 2):
    """The network ``which`` (``min``, ``max`` or ``mobilenet_v3_small``) of a candidate scale
    (``label`` ``paper`` = the paper's own 224-px hyperspace): a picklable job builder."""
    if which == "mobilenet_v3_small":
        return create_model(which, n_classes=1000 if label == "paper" else 10,
                            stem_stride=stem_stride)
    if label == "paper":
        hs = get_hyperspace(base)
    else:
        hs = ScaleCandidate(label, width_divisor, max_resolution, stem_stride).hyperspace(base)
    pub = published_spaces()["spaceevo@vnni" if base == "onnxw" else "spaceevo@pixel4"]
    sp = SpaceChoice(hs.name, pub.blocks, pub.windows)
    return build_subnet(sp, (min_subnet if which == "min" else max_subnet)(hs, sp))


def scale_jobs(device: str, protocol, options: dict | None = None, base: str = "onnxw"):
    """Timing jobs: per candidate (and the paper's 224 px) the min and max subnet of the
    published space and MobileNetV3-Small."""
    pub = published_spaces()["spaceevo@vnni" if base == "onnxw" else "spaceevo@pixel4"]
    rows = [("paper", 0, 224, 2)] + [(c.label, c.width_divisor, c.max_resolution, c.stem_stride)
                                     for c in CANDIDATES]
    jobs = []
    for label, div, res, stem in rows:
        hs = get_hyperspace(base) if label == "paper" else \
            ScaleCandidate(label, div, res, stem).hyperspace(base)
        sp = SpaceChoice(hs.name, pub.blocks, pub.windows)
        for which in ("min", "max", "mobilenet_v3_small"):
            r = min_subnet(hs, sp).resolution if which == "min" else hs.resolutions[-1]
            spec = {"base": base, "label": label, "which": which, "width_divisor": div,
                    "max_resolution": res, "stem_stride": stem}
            jobs.append(Job.make(device, build_scale_network, spec, (1, 3, r, r),
                                 {"kind": "scale", "scale": label, "network": which,
                                  "resolution": r}, options, protocol))
    return jobs


def training_speed(module, resolution: int, batch: int = 64, steps: int = 5,
                   threads: int = 2) -> float:
    """Training images per second of ``module`` (SGD step on random data, ``threads`` torch
    threads): the cost that decides whether a scale is trainable here."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = module.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, resolution, resolution, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        return batch * steps / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def scale_table(measured: pd.DataFrame, steps: int = 5) -> pd.DataFrame:
    """One row per scale: INT8 speedups (min subnet, max subnet, MobileNetV3-Small), INT8 ms,
    MFLOPs of the max subnet and its training images/s (measured here, after the timing)."""
    rows = []
    for label, g in measured.groupby("scale", sort=False):
        t = g.set_index("network")
        row = {"scale": label}
        for which in ("min", "max", "mobilenet_v3_small"):
            row[f"{which}_speedup"] = float(t.loc[which, "fp32_min_ms"]
                                            / t.loc[which, "int8_min_ms"])
            row[f"{which}_int8_ms"] = float(t.loc[which, "int8_min_ms"])
        c = next((c for c in CANDIDATES if c.label == label), None)
        spec = ({"width_divisor": c.width_divisor, "max_resolution": c.max_resolution,
                 "stem_stride": c.stem_stride} if c else {})
        net = build_scale_network("onnxw", label, "max", **spec)
        r = int(t.loc["max", "resolution"])
        row["max_mflops"] = profile(net, (1, 3, r, r))["mflops_all"]
        row["max_train_images_per_s"] = (float("nan") if label == "paper"
                                         else training_speed(net, r, steps=steps))
        row["resolution"] = r
        rows.append(row)
    return scale_verdicts(pd.DataFrame(rows))


def scale_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``story_kept`` (max >= STORY_MAX_SPEEDUP and MobileNetV3-Small <=
    STORY_MNV3_SPEEDUP), ``trainable`` (max subnet >= MIN_TRAIN_IMAGES_PER_S) and ``pick``: among
    kept and trainable candidates the one with the most MFLOPs in its max subnet (furthest from
    per-call overhead); if none keeps the story, the trainable one closest to it."""
    t = table.copy()
    t["story_kept"] = (t.max_speedup >= STORY_MAX_SPEEDUP) & (
        t.mobilenet_v3_small_speedup <= STORY_MNV3_SPEEDUP)
    t["trainable"] = t.max_train_images_per_s >= MIN_TRAIN_IMAGES_PER_S
    cand = t[(t.scale != "paper") & t.trainable]
    ok = cand[cand.story_kept]
    if len(ok):
        pick = ok.sort_values("max_mflops").scale.iloc[-1]
    elif len(cand):
        gap = (STORY_MAX_SPEEDUP - cand.max_speedup).clip(lower=0) + (
            cand.mobilenet_v3_small_speedup - STORY_MNV3_SPEEDUP).clip(lower=0)
        pick = cand.scale.loc[gap.idxmin()]
    else:
        pick = None
    t["pick"] = t.scale == pick
    t["frozen"] = t.scale == FROZEN
    return t


# ----------------------------------------------------------------------------- the chapter's steps

#: The fusion probes' channels and feature-map side (a 3x3 depthwise conv at a mid-network
#: shape of the 224-px hyperspaces).
FUSION_CHANNELS, FUSION_HW = 64, 56


def comparison_target(targets: dict) -> tuple[str, str]:
    """Where the protocol comparison and the visit figure are made: ort-vnni at the training
    scale (its FP32 networks of about a millisecond are the hardest to time), else the first
    target."""
    return ("ort-vnni", "train") if ("ort-vnni", "train") in targets else next(iter(targets))


def build_all(cfg, the_plan: PredictorPlan, run, images: np.ndarray) -> dict:
    """Every target's predictor (:func:`~spaceevo_lib.predictor.build.build_predictor`), saved
    in the run folder; the comparison target's wholes are kept compiled when the protocol
    comparison will time them again."""
    first = comparison_target(the_plan.targets)
    results = {}
    for (dev, sc), hs in the_plan.targets.items():
        results[dev, sc] = build_predictor(
            dev, hs, run, images, the_plan.settings[sc], protocol=the_plan.protocol,
            whole_protocol=the_plan.whole_protocol, workers=cfg.workers, seed=cfg.seed,
            device_options=the_plan.device_options.get(dev), progress=False,
            table_suffix=f"-{sc}", keep_models=(dev, sc) == first and cfg.compare_networks > 0)
        results[dev, sc].predictor.save(run.path)
    return results


def compare_protocols(cfg, the_plan: PredictorPlan, run, images: np.ndarray,
                      results: dict) -> pd.DataFrame:
    """The earlier protocol (one block of runs per network, retested) beside this one on the
    comparison target's first ``compare_networks`` validation networks, idle and with a busy
    core (cached in the run; the kept models are dropped after); empty when not asked for."""
    if cfg.compare_networks <= 0:
        return pd.DataFrame()
    dev, sc = comparison_target(the_plan.targets)
    val = results[dev, sc].wholes.query("role == 'validation'").head(cfg.compare_networks)
    earlier = Protocol(threads=cfg.threads, visits=3, warmup=5, warmup_ms=0, budget_ms=20,
                       schedule="consecutive")
    table = f"wholes-{sc}-{dev}"
    out = run.cached("protocol_comparison", lambda: protocol_comparison(
        dev, run, table, images, list(val.key), earlier, the_plan.whole_protocol,
        busy_seconds=1.0, seed=cfg.seed),
        key={"keys": list(val.key), "p": the_plan.whole_protocol.as_dict()})
    drop_models(run, table)
    return out


def first_visits(run, targets: dict) -> tuple[pd.DataFrame, str]:
    """The comparison target's whole-network visits and a title for their figure."""
    dev, sc = comparison_target(targets)
    return run.load(f"wholes-{sc}-{dev}-visits"), f"{dev}, {sc} scale"


def setup_table() -> pd.DataFrame:
    """The paper's devices and predictor beside what stands in for them here."""
    setup = substitutions(0, 0)  # image counts do not enter the rows shown here
    return setup[setup.aspect.isin(["cpu_device", "mobile_device", "latency_predictor"])]


def training_scale(cfg, the_plan: PredictorPlan, run, images: np.ndarray) -> pd.DataFrame:
    """The training-scale candidates timed on ort-vnni and trained for a few steps, with the
    rule's verdicts (cached on the records); an empty table when ``scale_check`` is off."""
    if not cfg.scale_check:
        return pd.DataFrame({"scale": [], "pick": []})
    opts = the_plan.device_options["ort-vnni"]
    jobs = scale_jobs("ort-vnni", the_plan.whole_protocol, opts)
    measured = run_jobs(jobs, images, run, "scale-ort-vnni", the_plan.whole_protocol,
                        cfg.workers, cfg.seed, progress=False)
    return run.cached("scale_table", lambda: scale_table(measured),
                      key={"records": sorted(measured.key)})


def _per_target(results: dict, attr: str, labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """One of every target's result tables, stacked; ``labels`` (``device``, ``scale``,
    ``hyperspace``) are added as columns."""
    frames = []
    for (d, s), r in results.items():
        known = {"device": d, "scale": s, "hyperspace": r.predictor.hyperspace}
        frames.append(getattr(r, attr).assign(**{k: known[k] for k in labels}))
    return concat(frames)


def repeatability(results: dict) -> pd.DataFrame:
    """The ground truth's split-half agreement per target, precision and statistic."""
    return _per_target(results, "repeatability")


def additivity(results: dict) -> pd.DataFrame:
    """Measured whole networks beside the sum of their measured blocks, every target."""
    return _per_target(results, "additivity", ("hyperspace",))


def rounds_table(results: dict) -> pd.DataFrame:
    """The adaptive-sampling rounds of every target."""
    return _per_target(results, "rounds", ("device", "scale"))


def regressor_comparison(results: dict) -> pd.DataFrame:
    """Regressor families cross-validated on blocks, every target."""
    return _per_target(results, "comparison", ("device", "scale"))


def validation(results: dict) -> pd.DataFrame:
    """Every held-out network's measured and predicted latency, every target."""
    return _per_target(results, "validation")


def metrics(results: dict) -> pd.DataFrame:
    """nn-Meter's metrics on the held-out networks, per target, precision and composition."""
    return _per_target(results, "metrics")


def error_sources(results: dict) -> pd.DataFrame:
    """Where a network's error comes from (ground truth, blocks, composition), per target."""
    return _per_target(results, "sources")


def error_source_view(sources: pd.DataFrame) -> pd.DataFrame:
    """Share within +-10 % per source (columns), target, precision and, where the predictors
    sampled range corners, the units they were fitted on (without them: before; with: after)."""
    index = ["device", "hyperspace", "precision"] + (["units"] if "units" in sources else [])
    return sources.pivot_table(index=index, columns="source", values="within_10pct",
                               sort=False).reset_index()


def kernel_costs_table(results: dict) -> pd.DataFrame:
    """Every target's kernel-model costs, labelled with the scale."""
    return concat(kernel_costs(r.predictor).assign(target=lambda t, s=s: t.target + f" {s}")
                  for (d, s), r in results.items())


def depthwise_table(results: dict) -> pd.DataFrame:
    """Depthwise cost per MAC by kernel size, every target."""
    return concat(depthwise_kernel_costs(r.units, d, r.predictor.hyperspace)
                  for (d, s), r in results.items())


def baseline_rows(val: pd.DataFrame) -> pd.DataFrame:
    """The torchvision baselines among the held-out networks."""
    return val[val.space == BASELINE_SPACE][["device", "hyperspace", "precision", "subnet",
                                             "measured_ms", "predicted_ms", "error_pct"]]


def demo(results: dict, profile: str, seed: int):
    """A predictor as a later chapter loads it, a space of its hyperspace, a few subnets."""
    dev, sc = next(iter(results))
    pred = load_predictor(dev, sc, profile)
    space = results[dev, sc].validation.space.iloc[0]
    return pred, space, [random_subnet_string(space, seed + i) for i in range(3)]


def glue_values(cfg, results: dict, scale_tab: pd.DataFrame, dw: pd.DataFrame,
                per_second: float, run) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    first = comparison_target({k: None for k in results})
    k7 = dw.query("device == 'tflite' and precision == 'int8' and k == 7") if len(dw) else dw
    n_measured, span_min = measurement_summary(run)
    return {
        "visits": cfg.visits, "budget_ms": f"{cfg.budget_ms:g}",
        "whole_budget_ms": f"{cfg.whole_budget_ms:g}",
        "cmp_where": (f"{first[0]} at the {first[1]} scale, {cfg.compare_networks} validation "
                      "networks" if cfg.compare_networks > 0
                      else "not run in this run (compare_networks = 0)"),
        "fusion_c": FUSION_CHANNELS, "fusion_hw": FUSION_HW,
        "story_max": STORY_MAX_SPEEDUP, "story_mnv3": STORY_MNV3_SPEEDUP,
        "min_train": f"{MIN_TRAIN_IMAGES_PER_S:g}",
        "scale_pick": str(scale_tab.scale[scale_tab.pick].iloc[0] if scale_tab.pick.any()
                          else "none (not run)"),
        "n_train": f"{cfg.train_subnets} (224 px: {cfg.paper_train_subnets})",
        "chosen": ", ".join(f"{d}/{s}: {r.predictor.family}" for (d, s), r in results.items()),
        "dw7_tflite": (f"{k7.vs_k5.iloc[0]:.1f}x" if len(k7) and k7.vs_k5.notna().iloc[0]
                       else "not measured in this run (no TFLite 7x7 and 5x5 blocks)"),
        "target": f"{TARGET_WITHIN_10PCT:g}", "per_second": f"{per_second:,.0f}",
        "n_measured": f"{n_measured:,}", "span_min": f"{span_min:.0f}"}
