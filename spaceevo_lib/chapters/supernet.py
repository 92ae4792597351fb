"""The chapter "The quantized-for-all supernet": one supernet per space, trained in FP32 and
then with LSQ+, its subnets used in INT8 as they are; Figure 1 on this host; the checks that
say how far its numbers can be trusted.

The machinery is :mod:`spaceevo_lib.supernet` (training on the engine, evaluation with
inherited weights, the warm start from block-wise students, the deployable INT8 network); this
module decides which spaces (read from the block-wise chapter's records, never typed), how the
start is chosen, which subnets each check takes, and the rules its verdicts follow (written and
tested before any result).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from .. import config
from .._io import file_hash
from ..blockkd.spaces import mapped_published
from ..blockkd.students import parse_arch
from ..blockkd.tables import priced_devices
from ..data.reference import read_lut_csv
from ..latency.protocol import Protocol
from ..nn.subnet import build_subnet
from ..quant.deploy import evaluate_file, timed_files
from ..space import SpaceChoice, as_hyperspace, sample_subnet
from ..space.encoding import Subnet
from ..store import MissingResultError, Run, record
from ..supernet import Supernet
from ..supernet.deploy import subnet_files
from ..supernet.evaluation import evaluate_subnets, max_min_evaluator, subnet_accuracy
from ..supernet.training import load_supernet, quantize_supernet, train_supernet
from ..supernet.warmstart import load_students, warm_start
from ..train.config import TrainConfig
from ..train.data import TrainingData, load_training_data
from ..train.engine import evaluate, rank
from ..train.recipes import train_fp32
from ..train.run import init_distributed
from . import blockkd as blockkd_chapter
from . import predictor as predictor_chapter

#: The spaces a run may train, by short label (encodings live in a field of the records).
SPACE_LABELS = ("evolved-ort-vnni", "mbv3-style", "published-vnni")
DEVICE = "ort-vnni"  # the device whose evolved space and latency window Figure 1 uses
INITS = ("scratch", "blockkd")

#: Rules fixed before any result (tests check them on made-up numbers):
#: - the start: ``blockkd`` only if, after one FP32 epoch on the evolved space, the mean of the
#:   max and min subnets' held-out top-1 beats ``scratch``'s by more than this (points);
#: - Figure 1: the evolved space's median INT8 top-1 minus mbv3-style's, with a bootstrap
#:   interval at this confidence: above 0 holds, below 0 fails, else undecided;
#: - quantized-for-all: the learned-scale file within ``file_points`` of its fake-quant
#:   network, and INT8 within ``int8_drop_points`` of FP32 (medians over the QFA subnets).
THRESHOLDS = {"start_margin_points": 0.0, "fig1_confidence": 0.95,
              "qfa_file_points": 0.5, "qfa_int8_drop_points": 1.0}
BOOTSTRAP = 2000


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SupernetPlan:
    """What the chapter's parameters decide, validated before any heavy work."""

    spaces: dict  # label -> SpaceChoice
    init: str  # auto, scratch or blockkd
    fp32: TrainConfig
    lsq: TrainConfig
    standalone: TrainConfig  # the weight-sharing check's stand-alone training
    n_random: int
    dropout: float
    protocol: Protocol


def spaces_of(labels, profile: str, root: Path | None = None) -> dict[str, SpaceChoice]:
    """The spaces behind the labels, read from the block-wise chapter's records (the evolved
    ort-vnni space, its "all MBv3Res" space) and the published VNNI space mapped to the same
    training-scale hyperspace."""
    out = {}
    for label in labels:
        if label not in SPACE_LABELS:
            raise ValueError(f"unknown space label {label!r}; known: {', '.join(SPACE_LABELS)}")
    res = blockkd_chapter.load_results(profile, root)
    evolved = res.evolved(DEVICE)
    for label in labels:
        if label == "evolved-ort-vnni":
            out[label] = evolved
        elif label == "mbv3-style":
            out[label] = res.named(DEVICE, "all MBv3Res")
        else:
            out[label] = mapped_published(evolved.hyperspace)["spaceevo@vnni (published)"]
    return out


def plan(cfg, root: Path | None = None) -> SupernetPlan:
    """The chapter's plan from its validated parameters (the spaces from the block-wise
    chapter's run at the same profile)."""
    # channels-last off: at default (batch 128, the evolved onnxw-train-111110-131331 space,
    # 2 threads) a channels-last sandwich epoch aborted inside loss.backward() with glibc heap
    # corruption after some 60 steps, while the same epoch in the default memory layout ran
    # to the end: a native bug of the elastic ops' backward in that layout, to be bisected
    common = {"batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay,
              "valid_size": cfg.valid_size, "seed": cfg.seed, "grad_clip_value": 1.0,
              "grad_clip_norm": None, "channels_last": False}
    fp32 = TrainConfig(epochs=cfg.fp32_epochs, lr=cfg.lr,
                       warmup_epochs=min(1.0, 0.3 * cfg.fp32_epochs),
                       train_images=cfg.train_images, **common)
    lsq = TrainConfig(epochs=cfg.lsq_epochs, lr=cfg.lsq_lr, warmup_epochs=0.0,
                      train_images=cfg.lsq_train_images, **common)
    standalone = TrainConfig(epochs=cfg.standalone_epochs, lr=cfg.lr,
                             warmup_epochs=min(1.0, 0.3 * cfg.standalone_epochs),
                             train_images=cfg.standalone_images, **common)
    return SupernetPlan(spaces=spaces_of(cfg.spaces.split(","), cfg.profile, root),
                        init=cfg.init, fp32=fp32, lsq=lsq, standalone=standalone,
                        n_random=cfg.n_random, dropout=cfg.dropout,
                        protocol=Protocol(visits=cfg.visits, budget_ms=cfg.budget_ms))


def spaces_table(spaces: dict) -> pd.DataFrame:
    """Each space: label, encoding, and per stage its block and width window."""
    rows = []
    for label, sp in spaces.items():
        d = sp.describe()
        rows.append({"space": label, "encoding": sp.encode(),
                     **{s: f"{d[s][0]} {d[s][1][0]}-{d[s][1][-1]}"
                        for s in sp.spec.searchable_stages}})
    return pd.DataFrame(rows)


def resolution_of(plan_: SupernetPlan) -> int:
    """The images' side: the spaces' largest resolution (32 at the training scale, 224 at
    the paper's); every subnet resizes to its own inside the supernet."""
    sides = {max(sp.spec.resolutions) for sp in plan_.spaces.values()}
    if len(sides) != 1:
        raise ValueError(f"the spaces are of different scales ({sorted(sides)} px)")
    return sides.pop()


def load_data(cfg, plan_: SupernetPlan) -> tuple[TrainingData, TrainingData]:
    """Training data of both stages (the LSQ+ stage may train on a subset), one held-out split
    (the INT8 chapter's, so block-wise students never saw it) and the test split; the
    calibration images double as the fixed images BN is re-estimated on."""
    r = resolution_of(plan_)
    data = load_training_data(r, plan_.fp32, test_images=cfg.test_images,
                              calibration_images=cfg.recal_images, dataset=cfg.dataset)
    lsq = load_training_data(r, plan_.lsq, test_images=cfg.test_images,
                             calibration_images=cfg.recal_images, dataset=cfg.dataset)
    return data, lsq


def recal_images(data: TrainingData) -> torch.Tensor:
    return torch.from_numpy(data.calibration)


# ----------------------------------------------------------------------------- training


def train_valid_loaders(data: TrainingData) -> dict:
    """The loaders a supernet trains and chooses on (never the test split)."""
    return {k: v for k, v in data.loaders.items() if k in ("train", "valid")}


def new_supernet(space: SpaceChoice, init: str, seed: int,
                 students_folder: Path | None) -> Supernet:
    """A supernet of ``space`` at its start: seeded random weights, its stages from the
    block-wise students when ``init`` is ``blockkd``."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    torch.manual_seed(seed)
    net = Supernet(space)  # the hyperspace's classes: 10 at the training scale
    if init == "blockkd":
        if students_folder is None:
            raise MissingResultError("init blockkd needs the block-wise chapter's students")
        warm_start(net, load_students(students_folder, net))
    return net


def train_phase(net: Supernet, plan_: SupernetPlan, phase: str, data: TrainingData,
                path: Path, recal: torch.Tensor, stop_after: int | None = None) -> pd.DataFrame:
    """One phase (``fp32`` or ``lsq``) of the plan's sandwich training, resuming from
    ``path``, with held-out top-1 of max and min after every epoch."""
    return train_supernet(net, getattr(plan_, phase), train_valid_loaders(data), path, phase,
                          plan_.n_random, plan_.dropout, evaluator=max_min_evaluator(recal),
                          stop_after=stop_after)


def checkpoint(run, label: str, init: str, phase: str) -> Path:
    return run.path / f"{label}-{init}-{phase}.pt"


def compare_starts(plan_: SupernetPlan, data: TrainingData, run, students_folder: Path,
                   label: str = "evolved-ort-vnni") -> tuple[pd.DataFrame, str]:
    """One FP32 epoch of ``label``'s supernet from each start (the first epoch of its full
    schedule: the chosen start goes on from there), the held-out top-1 of its max and min
    subnets after it, and the start :func:`start_rule` picks."""
    rows = []
    recal = recal_images(data)
    for init in INITS:
        net = new_supernet(plan_.spaces[label], init, plan_.fp32.seed, students_folder)
        t0 = time.perf_counter()
        h = train_phase(net, plan_, "fp32", data, checkpoint(run, label, init, "fp32"), recal,
                        stop_after=1)
        first = h.iloc[0]
        rows.append({"init": init, "epoch": 1, "valid_top1_max": float(first.valid_top1_max),
                     "valid_top1_min": float(first.valid_top1_min),
                     "minutes": (time.perf_counter() - t0) / 60})
    table = pd.DataFrame(rows)
    return table, start_rule(table)


def start_rule(table: pd.DataFrame, thresholds: dict = THRESHOLDS) -> str:
    """``blockkd`` when its mean held-out top-1 of max and min beats scratch's by more than
    the margin, else ``scratch``."""
    m = table.set_index("init")[["valid_top1_max", "valid_top1_min"]].mean(axis=1)
    return ("blockkd" if m["blockkd"] - m["scratch"] > thresholds["start_margin_points"]
            else "scratch")


def train_space(label: str, plan_: SupernetPlan, init: str, data: TrainingData,
                lsq_data: TrainingData, run, students_folder: Path | None
                ) -> tuple[Supernet, Supernet, pd.DataFrame]:
    """Both stages of ``label``'s supernet (resuming from the run's checkpoints): FP32 for the
    plan's epochs, then LSQ+ from those weights. Returns (FP32 supernet, LSQ+ supernet, the
    per-epoch metrics with held-out top-1 of max and min)."""
    recal = recal_images(data)
    net = new_supernet(plan_.spaces[label], init, plan_.fp32.seed, students_folder)
    h32 = train_phase(net, plan_, "fp32", data, checkpoint(run, label, init, "fp32"), recal)
    q = quantize_supernet(net, recal[:64], plan_.lsq.seed)
    h8 = train_phase(q, plan_, "lsq", lsq_data, checkpoint(run, label, init, "lsq"), recal)
    history = pd.concat([h32, h8], ignore_index=True).assign(space=label, init=init)
    return net.eval(), q.eval(), history


def minutes_table(history: pd.DataFrame) -> pd.DataFrame:
    """Minutes per space and phase, images per second, and what one more FP32 epoch costs."""
    g = history.groupby(["space", "phase"], sort=False)
    out = g.agg(epochs=("epoch", "max"), minutes=("seconds", lambda s: s.sum() / 60),
                images_per_s=("images_per_s", "median")).reset_index()
    out["minutes_per_epoch"] = out.minutes / out.epochs
    return out


# ----------------------------------------------------------------------------- evaluation


def ends_table(nets: dict, data: TrainingData) -> pd.DataFrame:
    """Test top-1 of each space's max and min subnets: FP32 (FP32 supernet) and INT8
    fake-quant (LSQ+ supernet), with inherited weights and BN re-calibrated."""
    recal, rows = recal_images(data), []
    for label, (fp32, lsq) in nets.items():
        for kind in ("max", "min"):
            row = {"space": label, "subnet": kind}
            for precision, net in (("fp32", fp32), ("int8", lsq)):
                sub = getattr(net, f"sample_{kind}")()
                row[f"top1_{precision}"] = subnet_accuracy(net, sub, recal,
                                                          data.loaders["test"])["top1"]
            rows.append(row)
    return pd.DataFrame(rows)


def recalibration_table(lsq: Supernet, data: TrainingData) -> pd.DataFrame:
    """Held-out INT8 top-1 of the max and min subnets with BN re-estimated on 1/8, 1/2 and
    all of the re-calibration images: enough when the last two agree."""
    recal, rows = recal_images(data), []
    for n in sorted({max(8, len(recal) // 8), max(8, len(recal) // 2), len(recal)}):
        for kind in ("max", "min"):
            sub = getattr(lsq, f"sample_{kind}")()
            rows.append({"images": n, "subnet": kind,
                         "valid_top1_int8": subnet_accuracy(lsq, sub, recal[:n],
                                                            data.loaders["valid"])["top1"]})
    return pd.DataFrame(rows).pivot_table(index="images", columns="subnet",
                                          values="valid_top1_int8").reset_index()


# ----------------------------------------------------------------------------- Figure 1


def table_subnets(space: SpaceChoice, tables_folder: Path, n: int, seed: int,
                  resolutions: tuple[int, ...] | None = None) -> pd.DataFrame:
    """``n`` random subnets of ``space`` composed from this host's own tables: per stage a
    random row of its (stage, block, window) table at one resolution (stem and stage0 drawn
    as a random subnet draws them), so that each subnet's sum of per-stage NSR, the block-wise
    proxy, is known exactly. Rows: subnet encoding, resolution, nsr_sum."""
    hs = as_hyperspace(space.hyperspace)
    frames, extra = {}, priced_devices(tables_folder)[1]  # (latency columns are not used)
    for i, (b, w) in enumerate(zip(space.blocks, space.windows), start=1):
        path = Path(tables_folder) / f"stage{i}_{b}_{w}.csv"
        if not path.is_file():
            raise MissingResultError(f"no own table {path}: run the block-wise chapter")
        frames[i] = read_lut_csv(path, hs.stride_before(i), extra)
    common = set.intersection(*(set(f.resolution) for f in frames.values()))
    res = tuple(sorted(common if resolutions is None else set(resolutions) & common))
    if not res:
        raise MissingResultError(f"the own tables of {space.encode()} share no resolution")
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        r = int(res[rng.integers(len(res))])
        base = sample_subnet(hs, space, rng, resolutions=(r,))
        blocks = dict(base.stage_blocks())
        nsr = 0.0
        for i, f in frames.items():
            at_r = f[f.resolution == r]
            row = at_r.iloc[int(rng.integers(len(at_r)))]
            blocks[f"stage{i}"] = parse_arch(row.arch)
            nsr += float(row.nsr)
        flat = [blk for stage in blocks.values() for blk in stage]
        sub = Subnet(tuple(len(v) for v in blocks.values()), tuple(k for k, _, _ in flat),
                     tuple(w for _, w, _ in flat), tuple(e for _, _, e in flat), r)
        rows.append({"subnet": sub.validate(hs, space).encode(), "resolution": r,
                     "nsr_sum": nsr})
    return pd.DataFrame(rows).drop_duplicates("subnet").reset_index(drop=True)


def latency_window(latencies: dict[str, np.ndarray], delta: float) -> dict:
    """The INT8 latency window [c (1 - delta), c] that both spaces fill best: c is chosen
    among the sampled latencies to maximise the smaller of the spaces' shares inside it
    (ties: the smaller c). Returns {"low", "high", "shares": {label: share}, "common"}, where
    ``common`` is False when no window holds subnets of every space."""
    best = None
    for c in np.unique(np.concatenate(list(latencies.values()))):
        lo = c * (1 - delta)
        shares = {k: float(np.mean((v >= lo) & (v <= c))) for k, v in latencies.items()}
        score = min(shares.values())
        if best is None or score > best[0]:
            best = (score, float(lo), float(c), shares)
    return {"low": best[1], "high": best[2], "shares": best[3], "common": best[0] > 0}


def device_predictor(profile: str):
    """This host's INT8 predictor of ``DEVICE`` at the training scale (the predictor
    chapter's)."""
    return predictor_chapter.load_predictor(DEVICE, "train", profile)


def fig1_pools(plan_: SupernetPlan, labels, tables_folder: Path, predictor, n_pool: int,
               seed: int) -> dict[str, pd.DataFrame]:
    """Per space, ``n_pool`` table-composed subnets with their predicted INT8 latency on this
    host's device."""
    out = {}
    for i, label in enumerate(labels):
        sp = plan_.spaces[label]
        pool = table_subnets(sp, tables_folder, n_pool, seed + i)
        pool["int8_ms"] = predictor.predict(list(pool.subnet), "int8", space=sp)
        out[label] = pool.assign(space=label)
    return out


def pick_in_window(pool: pd.DataFrame, window: dict, n: int) -> pd.DataFrame:
    """The first ``n`` subnets of a (random) pool inside the window."""
    inside = pool[(pool.int8_ms >= window["low"]) & (pool.int8_ms <= window["high"])]
    return inside.head(n).reset_index(drop=True)


def pick_nearest(pool: pd.DataFrame, latency_ms: float, n: int) -> pd.DataFrame:
    """The ``n`` subnets of a pool nearest to ``latency_ms``: what Figure 1 shows when the
    spaces share no window (each space as close as it gets to the others)."""
    order = (pool.int8_ms - latency_ms).abs().sort_values(kind="stable").index[:n]
    return pool.loc[order].reset_index(drop=True)


def evaluate_pool(lsq: Supernet, picked: pd.DataFrame, data: TrainingData) -> pd.DataFrame:
    """INT8 fake-quant test top-1 (inherited weights, BN re-calibrated) of picked subnets."""
    if not len(picked):
        return picked.assign(top1_int8=[], eval_seconds=[])
    ev = evaluate_subnets(lsq, list(picked.subnet), recal_images(data), data.loaders["test"])
    return picked.assign(top1_int8=ev.top1.to_numpy(), eval_seconds=ev.seconds.to_numpy())


def bootstrap_median_difference(a, b, seed: int = 0, n: int = BOOTSTRAP,
                                confidence: float = THRESHOLDS["fig1_confidence"]):
    """median(a) - median(b) and its percentile bootstrap interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    diffs = [np.median(rng.choice(a, len(a))) - np.median(rng.choice(b, len(b)))
             for _ in range(n)]
    q = (1 - confidence) / 2
    return float(np.median(a) - np.median(b)), float(np.quantile(diffs, q)), \
        float(np.quantile(diffs, 1 - q))


def fig1_verdict(evolved, other, seed: int = 0) -> dict:
    """Figure 1's rule: the evolved space's median INT8 top-1 minus the other's, with its
    bootstrap interval: ``holds`` above 0, ``fails`` below 0, ``undecided at this budget``
    when the interval spans 0."""
    if min(len(evolved), len(other)) < 2:
        return {"median_difference": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"),
                "verdict": "undecided: the spaces share no latency window"}
    diff, lo, hi = bootstrap_median_difference(evolved, other, seed)
    verdict = "holds" if lo > 0 else "fails" if hi < 0 else "undecided at this budget"
    return {"median_difference": diff, "ci_low": lo, "ci_high": hi, "verdict": verdict}


def kendall_with_interval(x, y, seed: int = 0, n: int = BOOTSTRAP,
                          confidence: float = 0.95) -> dict:
    """Kendall's tau of two rankings with a percentile bootstrap interval over the pairs
    (with 8 subnets it spans about +-0.5); NaN when fewer than 3 pairs or one side is all
    ties (an untrained supernet gives every subnet the same top-1)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    none = {"tau": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": len(x)}
    if len(x) < 3:
        return none
    rng = np.random.default_rng(seed)
    taus = []
    with warnings.catch_warnings():  # (constant input: NaN, handled below)
        warnings.simplefilter("ignore")
        tau = float(kendalltau(x, y).statistic)
        for _ in range(n):
            i = rng.integers(len(x), size=len(x))
            t = kendalltau(x[i], y[i]).statistic
            if not np.isnan(t):  # (a resample of ties only has no tau)
                taus.append(t)
    if np.isnan(tau) or not taus:
        return none
    q = (1 - confidence) / 2
    return {"tau": tau, "ci_low": float(np.quantile(taus, q)),
            "ci_high": float(np.quantile(taus, 1 - q)), "n": len(x)}


def proxy_table(evaluated: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per space: does the block-wise proxy (lower NSR sum = better) rank the subnets as their
    INT8 top-1 does? Kendall tau of -NSR sum against top-1, with its interval."""
    return pd.DataFrame([{"space": label, **kendall_with_interval(-df.nsr_sum, df.top1_int8)}
                         for label, df in evaluated.items()])


# ----------------------------------------------------------------------------- weight sharing


def spread(pool: pd.DataFrame, n: int, column: str = "int8_ms") -> pd.DataFrame:
    """``n`` rows spread evenly over ``column``'s range (sorted, evenly spaced ranks)."""
    s = pool.sort_values(column).reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(s) - 1, n).round().astype(int))
    return s.iloc[idx].reset_index(drop=True)


def standalone_table(space: SpaceChoice, picked: pd.DataFrame, cfg: TrainConfig, run,
                     test_images: int, dataset: str = "imagenette",
                     label: str = "evolved-ort-vnni") -> pd.DataFrame:
    """Each picked subnet trained alone from scratch (the INT8 chapter's FP32 recipe, the
    plan's short, equal budget) and its FP32 test top-1 (checkpoints resume)."""
    data = load_training_data(max(space.spec.resolutions), cfg, test_images=test_images,
                              dataset=dataset)
    out = []
    for i, sub in enumerate(picked.subnet):
        torch.manual_seed(cfg.seed + i)
        model = build_subnet(space, sub, n_classes=data.n_classes)
        h = train_fp32(model, f"standalone/{space.encode()}:{sub}", cfg, data,
                       run.path / f"standalone-{label}-{i}.pt", progress=False)
        out.append({"subnet": sub, "standalone_top1": evaluate(model, data.loaders["test"])[
            "top1"], "standalone_minutes": float(h.seconds.sum() / 60)})
    return picked.merge(pd.DataFrame(out), on="subnet")


# ----------------------------------------------------------------------------- QFA


def qfa_check(fp32: Supernet, lsq: Supernet, picked: pd.DataFrame, data: TrainingData,
              run, protocol: Protocol, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each picked subnet (at 32 px, the images' size): (a) the LSQ+ supernet's weights
    and scales deployed as a learned-scale ORT file, (b) the FP32 supernet's weights with ORT
    post-training INT8, (c) the FP32 file; top-1 of each file on the test images (from the
    file's own preprocessing), beside the fake-quant top-1; latency of every file (cached on
    the files' contents)."""
    recal = recal_images(data)
    out_dir = run.path / "qfa"
    rows, files = [], []
    for i, sub in enumerate(picked.subnet):
        label = f"qfa{i}"
        fq = subnet_accuracy(lsq, sub, recal, data.loaders["test"])["top1"]
        lsq_file, ptq_file = subnet_files(fp32, lsq, sub, recal, data.calibration,
                                          data.preprocessing, ("ort-lsq-qdq", "ort-ptq"),
                                          out_dir, label)
        files += [lsq_file, ptq_file]
        row = {"label": label, "subnet": sub, "int8_ms_predicted": float(picked.int8_ms[i]),
               "top1_int8_fakequant": fq}
        for name, path in (("fp32", lsq_file.fp32_path),
                           ("int8_ort_lsq_qdq", lsq_file.int8_path),
                           ("int8_ort_ptq", ptq_file.int8_path)):
            row[f"top1_{name}"] = evaluate_file(path, data.x_test, data.y_test)["top1"]
            row[f"artifact_{name}"] = str(Path(path).relative_to(run.path))
        rows.append(row)
    table = pd.DataFrame(rows)
    lat = timed_files(files, data.calibration, protocol, seed, run, name="qfa_latency")
    lat["label"] = [f"qfa{i // 2}" for i in range(len(lat))]
    return table, lat


def qfa_verdict(table: pd.DataFrame, thresholds: dict = THRESHOLDS) -> dict:
    """Quantized-for-all holds when the learned-scale file stays within ``qfa_file_points``
    of its fake-quant network and within ``qfa_int8_drop_points`` of FP32 (medians over the
    subnets); also says whether post-training INT8 of the FP32 weights loses more."""
    file_gap = float((table.top1_int8_ort_lsq_qdq - table.top1_int8_fakequant).abs().median())
    drop_a = float((table.top1_fp32 - table.top1_int8_ort_lsq_qdq).median())
    drop_b = float((table.top1_fp32 - table.top1_int8_ort_ptq).median())
    holds = file_gap <= thresholds["qfa_file_points"] and \
        drop_a <= thresholds["qfa_int8_drop_points"]
    return {"file_vs_fakequant_points": file_gap, "int8_drop_points_learned": drop_a,
            "int8_drop_points_ptq": drop_b, "ptq_loses_more": drop_b > drop_a,
            "verdict": "holds" if holds else "does not hold"}


# ----------------------------------------------------------------------------- records


def summary_records(spaces: dict, ends: pd.DataFrame, starts: pd.DataFrame | None,
                    fig1: dict, proxy: pd.DataFrame, ws: dict | None, qfa: pd.DataFrame,
                    qfa_v: dict, evals_per_minute: float) -> list[dict]:
    """The chapter's records (short labels in names; the encodings in a field)."""
    out = []
    for r in ends.itertuples():
        for precision in ("int8", "fp32"):
            rec = record(f"top1_{precision}/supernet/{r.space}/{r.subnet}",
                         round(float(getattr(r, f"top1_{precision}")), 2), "%")
            rec["encoding"] = spaces[r.space].encode()
            out.append(rec)
    if starts is not None:
        for r in starts.itertuples():
            for kind in ("max", "min"):
                out.append(record(f"valid_top1_fp32/supernet/evolved-ort-vnni/{kind}/{r.init}",
                                  round(float(getattr(r, f"valid_top1_{kind}")), 2), "%"))
    for label, df in fig1["evaluated"].items():
        if not fig1["window"]["common"]:
            break  # (medians of subnets at different latencies would compare nothing)
        rec = record(f"median_top1_int8/fig1/{label}", round(float(df.top1_int8.median()), 2),
                     "%")
        rec["encoding"] = spaces[label].encode()
        out.append(rec)
    out.append(record("verdict/fig1", fig1["verdict"]["verdict"], "verdict"))
    for r in proxy.itertuples():
        if not np.isnan(r.tau):  # (fewer than 3 subnets: no correlation)
            out.append(record(f"kendall_tau/proxy/{r.space}", round(r.tau, 3), "tau"))
    if ws is not None and not np.isnan(ws["tau"]):
        out.append(record("kendall_tau/supernet/evolved-ort-vnni", round(ws["tau"], 3), "tau"))
        out.append(record("kendall_tau_ci_low/supernet/evolved-ort-vnni",
                          round(ws["ci_low"], 3), "tau"))
    for r in qfa.to_dict("records"):
        for name, key in (("int8-ort-lsq-qdq", "int8_ort_lsq_qdq"),
                          ("int8-ort-ptq", "int8_ort_ptq"), ("fp32", "fp32")):
            rec = record(f"top1/qfa/{r['label']}/{name}", round(float(r[f"top1_{key}"]), 2), "%")
            rec["artifact"] = r[f"artifact_{key}"]
            out.append(rec)
        out.append(record(f"top1/qfa/{r['label']}/int8-fakequant",
                          round(float(r["top1_int8_fakequant"]), 2), "%"))
    out.append(record("verdict/quantized_for_all", qfa_v["verdict"], "verdict"))
    out.append(record("evaluations_per_minute/supernet", round(evals_per_minute, 1),
                      "subnets/min"))
    return out


def load_run(profile: str, root: Path | None = None) -> Run:
    """This chapter's run folder at ``profile`` (its checkpoints are what the search chapter
    reads)."""
    return Run("supernet", profile, root)


@dataclass(frozen=True)
class SupernetResults:
    """What the chapter left for the search chapter (:func:`load_results`): its trained
    supernets, the spaces they belong to, and the same held-out split and BN images."""

    path: Path
    params: dict
    records: tuple

    def _value(self, name: str) -> dict:
        for r in self.records:
            if r["name"] == name:
                return r
        raise MissingResultError(f"no record {name} in {self.path}: run the chapter "
                                 "'The quantized-for-all supernet' to the end first")

    def spaces(self) -> dict[str, SpaceChoice]:
        """label -> space of every supernet the chapter trained (from its records)."""
        return {label: SpaceChoice.decode(self._value(
                f"top1_int8/supernet/{label}/max")["encoding"])
                for label in self.params["spaces"].split(",")}

    @property
    def init(self) -> str:
        """The start every supernet took (the parameter's, or the one the rule chose)."""
        if self.params["init"] != "auto":
            return self.params["init"]
        table = pd.DataFrame([{"init": i, **{f"valid_top1_{k}": self._value(
            f"valid_top1_fp32/supernet/evolved-ort-vnni/{k}/{i}")["value"]
            for k in ("max", "min")}} for i in INITS])
        return start_rule(table)

    def checkpoints(self, label: str) -> tuple[Path, Path]:
        return (self.path / f"{label}-{self.init}-fp32.pt",
                self.path / f"{label}-{self.init}-lsq.pt")

    def supernets(self, label: str) -> tuple[Supernet, Supernet, str]:
        """``label``'s trained (FP32, LSQ+) supernets and the LSQ+ checkpoint's sha256 (what a
        fitness cache is keyed on); CheckpointError when a stage did not finish."""
        sp = self.spaces()[label]
        f32, f8 = self.checkpoints(label)
        fp32 = load_supernet(sp, f32, "fp32", finished_epochs=int(self.params["fp32_epochs"]))
        lsq = load_supernet(sp, f8, "lsq", finished_epochs=int(self.params["lsq_epochs"]))
        return fp32, lsq, file_hash(f8)

    def data(self) -> TrainingData:
        """The chapter's data: its held-out split, test split and BN re-calibration images."""
        cfg = config.chapter_config("supernet", **self.params)
        return load_data(cfg, plan(cfg))[0]


def load_results(profile: str, root: Path | None = None) -> SupernetResults:
    """This chapter's results at ``profile`` for later chapters; MissingResultError names the
    chapter to run first."""
    run = load_run(profile, root)
    params = run.finished_params()
    return SupernetResults(run.path, params, tuple(run.read_summary()))



# ----------------------------------------------------------------------------- the chapter's steps


def starting_point(cfg, plan_: SupernetPlan, data: TrainingData, run,
                   students_folder: Path) -> tuple[pd.DataFrame | None, str]:
    """The start every supernet takes: the parameter's, or (``auto``) the one
    :func:`compare_starts` picks on the evolved space."""
    if plan_.init != "auto":
        return None, plan_.init
    return compare_starts(plan_, data, run, students_folder)


def train_all(plan_: SupernetPlan, init: str, data: TrainingData, lsq_data: TrainingData,
              run, students_folder: Path) -> tuple[dict, pd.DataFrame]:
    """Every space's supernet, the same start and epochs for each: {label: (FP32, LSQ+)} and
    their per-epoch metrics."""
    nets, histories = {}, []
    for label in plan_.spaces:
        fp32, lsq, h = train_space(label, plan_, init, data, lsq_data, run, students_folder)
        nets[label] = (fp32, lsq)
        histories.append(h)
    history = pd.concat(histories, ignore_index=True)
    if rank() == 0:
        run.save(history, "history")
    return nets, history


def train_supernets(params: dict) -> Path:
    """The chapter's training outside the notebook, e.g. under torchrun for the paper profile
    (``torchrun --nproc_per_node=8 -m spaceevo_lib.cli supernet-train -p profile paper``):
    the same plan, start, data and checkpoints as the chapter, which then finds every
    supernet trained (each process takes its shard of every batch; gradients are averaged).
    Returns the run folder."""
    cfg = config.chapter_config("supernet", **params)  # validated before any work
    plan_ = plan(cfg)
    joined = init_distributed()
    try:
        run = load_run(cfg.profile)
        data, lsq_data = load_data(cfg, plan_)
        students = blockkd_chapter.load_results(cfg.profile).job_folder
        _, init = starting_point(cfg, plan_, data, run, students)
        train_all(plan_, init, data, lsq_data, run, students)
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    return run.path


def figure1(cfg, plan_: SupernetPlan, nets: dict, data: TrainingData, tables_folder: Path,
            predictor) -> dict:
    """Figure 1 on this host: table-composed subnets of the evolved and the mbv3-style space
    in one INT8 latency window both fill, each evaluated in INT8 with inherited weights."""
    labels = [lb for lb in plan_.spaces if lb != "published-vnni"] + \
        [lb for lb in plan_.spaces if lb == "published-vnni"]
    pools = fig1_pools(plan_, labels, tables_folder, predictor, cfg.fig1_pool, cfg.seed)
    window = latency_window({k: v.int8_ms.to_numpy() for k, v in pools.items()},
                            cfg.latency_delta)
    middle = float(np.median(np.concatenate([p.int8_ms.to_numpy() for p in pools.values()])))
    evaluated = {}
    for label, pool in pools.items():
        picked = (pick_in_window(pool, window, cfg.fig1_subnets) if window["common"]
                  else pick_nearest(pool, middle, cfg.fig1_subnets))
        evaluated[label] = evaluate_pool(nets[label][1], picked, data)
    same = window["common"]  # no verdict from subnets of different latencies
    verdict = fig1_verdict(evaluated["evolved-ort-vnni"].top1_int8 if same else [],
                           evaluated["mbv3-style"].top1_int8 if same else [], cfg.seed)
    shares = pd.DataFrame([{"space": k, "feasible share of the pool": window["shares"][k],
                            "subnets evaluated": len(evaluated[k]),
                            "median INT8 top-1": float(evaluated[k].top1_int8.median()),
                            "spread (IQR)": float(evaluated[k].top1_int8.quantile(0.75) -
                                                  evaluated[k].top1_int8.quantile(0.25))}
                           for k in pools])
    return {"pools": pools, "window": window, "evaluated": evaluated, "verdict": verdict,
            "shares": shares}


def verdict_table(verdict: dict) -> pd.DataFrame:
    return pd.DataFrame([verdict])


def weight_sharing(cfg, plan_: SupernetPlan, nets: dict, fig1: dict, data: TrainingData,
                   run, label: str = "evolved-ort-vnni") -> tuple[pd.DataFrame, dict]:
    """``ws_subnets`` of the space's pool, spread over its latency range: inherited INT8
    top-1 against the same architecture trained alone; Kendall tau with its interval."""
    picked = spread(fig1["pools"][label], cfg.ws_subnets)
    inherited = evaluate_pool(nets[label][1], picked, data)
    table = standalone_table(plan_.spaces[label], inherited, plan_.standalone, run,
                             cfg.test_images, cfg.dataset, label)
    return table, kendall_with_interval(table.top1_int8, table.standalone_top1, cfg.seed)


def quantized_for_all(cfg, plan_: SupernetPlan, nets: dict, fig1: dict, data: TrainingData,
                      run, label: str = "evolved-ort-vnni"):
    """``qfa_subnets`` of the space at the images' resolution, spread over their latency
    range, deployed three ways: (table, latency records, verdict)."""
    r = resolution_of(plan_)
    pool = fig1["pools"][label]
    picked = spread(pool[pool.resolution == r], cfg.qfa_subnets)
    table, lat = qfa_check(nets[label][0], nets[label][1], picked, data, run, plan_.protocol,
                           cfg.seed)
    return table, lat, qfa_verdict(table)


def evaluations_per_minute(fig1: dict) -> float:
    """Subnets evaluated per minute (BN re-calibration and the test split included): what a
    search pays per candidate."""
    secs = np.concatenate([df.eval_seconds.to_numpy() for df in fig1["evaluated"].values()])
    return float(60.0 / np.mean(secs))


def _difference_text(v: dict) -> str:
    if np.isnan(v["median_difference"]):
        return "no difference computed"
    return (f"{v['median_difference']:+.1f} points, interval [{v['ci_low']:+.1f}, "
            f"{v['ci_high']:+.1f}]")


def glue_values(cfg, plan_: SupernetPlan, init: str, starts, fig1: dict, ws: dict,
                qfa_v: dict, history: pd.DataFrame, evals_min: float) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    mins = minutes_table(history)
    return {"sn_init": init, "sn_fp32_epochs": str(cfg.fp32_epochs),
            "sn_lsq_epochs": str(cfg.lsq_epochs),
            "sn_lsq_images": f"{cfg.lsq_train_images:,}" if cfg.lsq_train_images else "all",
            "sn_recal": str(cfg.recal_images), "sn_n_random": str(cfg.n_random),
            "sn_window": (f"{fig1['window']['low']:.3f}-{fig1['window']['high']:.3f} ms"
                          if fig1["window"]["common"] else
                          "none: the spaces' predicted INT8 latencies do not overlap, so each "
                          "space shows its subnets nearest the pools' median latency"),
            "sn_fig1_verdict": fig1["verdict"]["verdict"],
            "sn_fig1_result": _difference_text(fig1["verdict"]),
            "sn_ws_tau": f"{ws['tau']:.2f}", "sn_ws_ci": f"[{ws['ci_low']:.2f}, "
                                                          f"{ws['ci_high']:.2f}]",
            "sn_ws_n": str(ws["n"]), "sn_qfa_verdict": qfa_v["verdict"],
            "sn_evals_min": f"{evals_min:.1f}",
            "sn_fp32_epoch_min": f"{mins[mins.phase == 'fp32'].minutes_per_epoch.max():.1f}",
            "sn_standalone": f"{cfg.standalone_epochs} epochs on "
                             f"{cfg.standalone_images or 'all':,} images"
                             if cfg.standalone_images else f"{cfg.standalone_epochs} epochs"}
