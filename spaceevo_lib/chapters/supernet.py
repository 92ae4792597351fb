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

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from .. import config
from .._io import file_hash, stable_hash
from ..blockkd.spaces import mapped_published
from ..blockkd.students import parse_arch
from ..blockkd.tables import priced_devices
from ..data.paper import paper_reference
from ..data.reference import read_lut_csv
from ..host import cpu_info
from ..latency.protocol import Protocol
from ..nn.bn import recalibrate_bn
from ..nn.subnet import build_subnet
from ..quant.deploy import evaluate_file, timed_files
from ..space import SpaceChoice, as_hyperspace, sample_subnet
from ..space.encoding import Subnet, max_subnet
from ..store import MissingResultError, Run, record
from ..supernet import Supernet
from ..supernet.deploy import subnet_files
from ..supernet.evaluation import (elastic_subnet_accuracy, evaluate_subnets, is_quantized,
                                   recalibration_batches, subnet_accuracy, subnet_network,
                                   subnets_evaluator)
from ..supernet.training import (Phase, load_supernet, phase_checkpoints, quantize_supernet,
                                 start_key, step_seconds, train_recipe)
from ..supernet.warmstart import load_students, student_file, warm_start
from ..train.config import TrainConfig
from ..train.data import TrainingData, balanced_loader, load_training_data
from ..train.engine import evaluate, rank
from ..train.recipes import train_fp32
from ..train.run import init_distributed
from . import blockkd as blockkd_chapter
from . import int8 as int8_chapter
from . import predictor as predictor_chapter

#: The spaces a run may train, by short label (encodings live in a field of the records).
SPACE_LABELS = ("evolved-ort-vnni", "mbv3-style", "published-vnni")
DEVICE = "ort-vnni"  # the device whose evolved space and latency window Figure 1 uses
INITS = ("scratch", "blockkd")
#: A recipe is the sandwich plus any of these (``recipe`` parameter, comma-separated):
#: ``zero-gamma`` (the last BN scale of every residual block starts at 0, as AlphaNet and the
#: reference do), ``max-first`` (OFA: the max subnet alone for ``max_epochs``, then the
#: sandwich at ``elastic_lr_scale`` of the learning rate), ``teacher`` (every subnet distils
#: from the INT8 chapter's trained teacher instead of in place from the max subnet).
RECIPE_FEATURES = ("sandwich", "zero-gamma", "max-first", "teacher")

#: Rules fixed before any result (tests check them on made-up numbers):
#: - Figure 1: the evolved space's median INT8 top-1 minus mbv3-style's, with a bootstrap
#:   interval at this confidence: above 0 holds, below 0 fails, else undecided;
#: - quantized-for-all: the learned-scale file within ``file_points`` of its fake-quant
#:   network, and INT8 within ``int8_drop_points`` of FP32 (medians over the QFA subnets);
#: - the BN re-estimation images: the fewest of the counts compared whose median held-out
#:   INT8 top-1 (over the middle subnets) is within ``recal_points`` of the most images';
#: - every verdict on subnets (Figure 1, quantized-for-all, proxy, weight sharing) is given
#:   only when the median INT8 top-1 of each set it compares is at least the reference
#:   file's ``min_top1_int8``: else "not tested at this budget", with the numbers.
THRESHOLDS = {"fig1_confidence": 0.95, "qfa_file_points": 0.5, "qfa_int8_drop_points": 1.0,
              "recal_points": 0.5}
BOOTSTRAP = 2000
NOT_TESTED = "not tested at this budget"


def min_top1_int8() -> float:
    """The reference file's bar for a network that has learned (INT8 top-1, %)."""
    return float(paper_reference()["verdict_rules"]["min_top1_int8"])


def learned(medians: dict[str, float], bar: float | None = None) -> tuple[bool, str]:
    """Whether every compared set of subnets has learned (median INT8 top-1 at least the
    bar), and the numbers as words for a verdict that is not given."""
    bar = min_top1_int8() if bar is None else bar
    low = {k: v for k, v in medians.items() if not v >= bar}
    if not low:
        return True, ""
    shown = ", ".join(f"{k} {v:.1f} %" for k, v in low.items())
    return False, f"{NOT_TESTED}: median top-1 {shown} below {bar:g} %"


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SupernetPlan:
    """What the chapter's parameters decide, validated before any heavy work."""

    spaces: dict  # label -> SpaceChoice
    init: str  # scratch or blockkd
    recipe: tuple[str, ...]  # the sandwich and its features (RECIPE_FEATURES)
    shortcut: str  # fixed or learned (Supernet.shortcut)
    phases: tuple  # training phases (supernet.training.Phase), the LSQ+ one last
    standalone: TrainConfig  # the weight-sharing check's stand-alone training
    dropout: float
    protocol: Protocol
    # label -> its phases with FP32 epochs sized to ``fp32_minutes`` (:func:`size_phases`);
    # None: every space trains ``phases``
    space_phases: dict | None = None

    def phases_of(self, label: str) -> tuple:
        """The phases ``label``'s supernet trains."""
        return (self.space_phases or {}).get(label, self.phases)

    @property
    def fp32(self) -> TrainConfig:
        """The last FP32 phase's settings (its epochs are the FP32 checkpoint's)."""
        return [p for p in self.phases if p.kind != "lsq"][-1].cfg

    @property
    def lsq(self) -> TrainConfig:
        return [p for p in self.phases if p.kind == "lsq"][-1].cfg

    @property
    def uses_teacher(self) -> bool:
        return any(p.teacher for p in self.phases)


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


def recipe_features(recipe: str) -> tuple[str, ...]:
    """The recipe parameter's features, checked (``sandwich`` alone: the plain sandwich)."""
    feats = tuple(f.strip() for f in str(recipe).split(",") if f.strip())
    bad = [f for f in feats if f not in RECIPE_FEATURES]
    if bad or not feats:
        raise ValueError(f"recipe must be a comma-separated list of {', '.join(RECIPE_FEATURES)}"
                         f"; got {recipe!r}")
    return tuple(f for f in RECIPE_FEATURES if f in feats)


def recipe_phases(cfg, features: tuple[str, ...]) -> tuple[Phase, ...]:
    """The training phases of a recipe: [the max subnet alone (``max-first``)], the FP32
    sandwich, the LSQ+ sandwich; warm-ups are a share of each phase's steps."""
    common = {"batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay,
              "valid_size": cfg.valid_size, "seed": cfg.seed, "grad_clip_value": 1.0,
              "grad_clip_norm": None, "channels_last": cfg.channels_last}
    teacher = "teacher" in features
    phases = []
    lr = cfg.lr
    if "max-first" in features:
        phases.append(Phase("max", TrainConfig(
            epochs=cfg.max_epochs, lr=cfg.lr, warmup_epochs=cfg.warmup_share * cfg.max_epochs,
            train_images=cfg.train_images, **common), n_random=0, teacher=teacher))
        lr = cfg.lr * cfg.elastic_lr_scale
    phases.append(Phase("sandwich", TrainConfig(
        epochs=cfg.fp32_epochs, lr=lr, warmup_epochs=cfg.warmup_share * cfg.fp32_epochs,
        train_images=cfg.train_images, **common), n_random=cfg.n_random, teacher=teacher))
    phases.append(Phase("lsq", TrainConfig(
        epochs=cfg.lsq_epochs, lr=cfg.lsq_lr, warmup_epochs=0.0,
        train_images=cfg.lsq_train_images, **common), n_random=cfg.n_random, teacher=teacher))
    return tuple(phases)


def plan(cfg, root: Path | None = None) -> SupernetPlan:
    """The chapter's plan from its validated parameters (the spaces from the block-wise
    chapter's run at the same profile)."""
    features = recipe_features(cfg.recipe)
    standalone = TrainConfig(epochs=cfg.standalone_epochs, lr=cfg.standalone_lr,
                             warmup_epochs=min(1.0, 0.1 * cfg.standalone_epochs),
                             train_images=cfg.standalone_images,
                             batch_size=cfg.standalone_batch_size,
                             weight_decay=cfg.weight_decay, valid_size=cfg.valid_size,
                             seed=cfg.seed, channels_last=cfg.channels_last)
    return SupernetPlan(spaces=spaces_of(cfg.spaces.split(","), cfg.profile, root),
                        init=cfg.init, recipe=features, shortcut=cfg.shortcut,
                        phases=recipe_phases(cfg, features), standalone=standalone,
                        dropout=cfg.dropout,
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


def phases_table(plan_: SupernetPlan) -> pd.DataFrame:
    """The recipe's phases as a reader sees them, per space when their epochs were sized to
    the same minutes."""
    labels = list(plan_.space_phases) if plan_.space_phases else [None]
    return pd.DataFrame([{**({"space": label} if label else {}),
                          "phase": p.kind, "epochs": p.cfg.epochs, "lr": p.cfg.lr,
                          "warm-up epochs": round(p.cfg.warmup_epochs, 2),
                          "subnets per step": 1 if p.kind == "max" else 2 + p.n_random,
                          "distils from": ("teacher" if p.teacher else
                                           "labels only" if p.kind == "max" else "max subnet"),
                          "images": p.cfg.train_images or "all"}
                         for label in labels
                         for p in (plan_.phases_of(label) if label else plan_.phases)])


def resolution_of(plan_: SupernetPlan) -> int:
    """The images' side: the spaces' largest resolution (32 at the training scale, 224 at
    the paper's); every subnet resizes to its own inside the supernet."""
    sides = {max(sp.spec.resolutions) for sp in plan_.spaces.values()}
    if len(sides) != 1:
        raise ValueError(f"the spaces are of different scales ({sorted(sides)} px)")
    return sides.pop()


def recal_counts(cfg) -> tuple[int, ...]:
    """The BN re-estimation image counts the chapter compares (0: the supernet's running
    statistics, no re-estimation)."""
    return tuple(sorted({int(c) for c in str(cfg.recal_counts).split(",")}))


def load_data(cfg, plan_: SupernetPlan) -> tuple[TrainingData, TrainingData]:
    """Training data of both stages (the LSQ+ stage may train on a subset), one held-out split
    (the INT8 chapter's, so block-wise students never saw it) and the test split; the
    calibration images (class-balanced and interleaved, as many as the largest count
    compared) double as the fixed images BN is re-estimated on: any prefix covers every
    class."""
    r = resolution_of(plan_)
    n_cal = max(max(recal_counts(cfg)), cfg.recal_images)
    data = load_training_data(r, plan_.fp32, test_images=cfg.test_images,
                              calibration_images=n_cal, dataset=cfg.dataset)
    lsq = load_training_data(r, plan_.lsq, test_images=cfg.test_images,
                             calibration_images=n_cal, dataset=cfg.dataset)
    return data, lsq


def recal_images(data: TrainingData, n: int | None = None) -> torch.Tensor:
    """The first ``n`` BN re-estimation images (all when None); class-balanced prefixes."""
    x = torch.from_numpy(data.calibration)
    return x if n is None else x[:n]


# ----------------------------------------------------------------------------- training


def train_valid_loaders(data: TrainingData) -> dict:
    """The loaders a supernet trains and chooses on (never the test split)."""
    return {k: v for k, v in data.loaders.items() if k in ("train", "valid")}


def new_supernet(space: SpaceChoice, init: str, seed: int, students_folder: Path | None,
                 shortcut: str = "fixed", zero_gamma: bool = False) -> Supernet:
    """A supernet of ``space`` at its start: seeded random weights, its stages from the
    block-wise students when ``init`` is ``blockkd``, the last BN scale of every residual
    block zeroed with ``zero_gamma``."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    torch.manual_seed(seed)
    net = Supernet(space, shortcut=shortcut)  # the hyperspace's classes: 10 at the training scale
    if init == "blockkd":
        if students_folder is None:
            raise MissingResultError("init blockkd needs the block-wise chapter's students")
        warm_start(net, load_students(students_folder, net))
    if zero_gamma:
        net.zero_last_gamma()
    return net


def start_of(plan_: SupernetPlan, label: str, students_folder: Path | None,
             teacher_digest: str | None) -> str:
    """The key of ``label``'s start: what its first phase's checkpoint chains on (space,
    shortcut, start and its students, zero-gamma, seed, the teacher distilled from)."""
    sp = plan_.spaces[label]
    students = None
    if plan_.init == "blockkd" and students_folder is not None:
        students = [file_hash(student_file(students_folder, sp.hyperspace, i, b))
                    for i, b in enumerate(sp.blocks, start=1)]
    return start_key(sp, shortcut=plan_.shortcut, init=plan_.init, students=students,
                     zero_gamma="zero-gamma" in plan_.recipe, seed=plan_.fp32.seed,
                     teacher=teacher_digest if plan_.uses_teacher else None)


def load_teacher(plan_: SupernetPlan, profile: str, root: Path | None = None):
    """The INT8 chapter's FP32 teacher and its checkpoints' digest, when the recipe distils
    from it (else (None, None))."""
    if not plan_.uses_teacher:
        return None, None
    model, _, params = int8_chapter.load_results(profile, root).teachers()
    return model.eval(), params["checkpoints_sha256"]


def train_space(label: str, plan_: SupernetPlan, data: TrainingData, lsq_data: TrainingData,
                run, students_folder: Path | None, teacher=None, teacher_digest=None,
                evaluator=None) -> tuple[Supernet, Supernet, pd.DataFrame, list[Path]]:
    """Every phase of ``label``'s supernet (each resuming from its own checkpoint, keyed by
    its settings and everything before it). Returns (FP32 supernet, LSQ+ supernet, the
    per-epoch metrics, the phases' checkpoints)."""
    net = new_supernet(plan_.spaces[label], plan_.init, plan_.fp32.seed, students_folder,
                       plan_.shortcut, "zero-gamma" in plan_.recipe)
    phases = plan_.phases_of(label)
    paths = phase_checkpoints(run.path, label, phases,
                              start_of(plan_, label, students_folder, teacher_digest))
    evaluator = evaluator or subnets_evaluator(recal_images(data, 256))

    def loaders_for(phase):
        return train_valid_loaders(lsq_data if phase.kind == "lsq" else data)

    fp32, q, history = train_recipe(net, phases, paths, loaders_for, evaluator,
                                    teacher, quant_images=recal_images(data, 64),
                                    dropout=plan_.dropout)
    return fp32, q, history.assign(space=label, init=plan_.init), paths


def minutes_table(history: pd.DataFrame) -> pd.DataFrame:
    """Minutes per space and phase, images per second, and what one more epoch costs."""
    g = history.groupby(["space", "step", "stage"], sort=False)
    out = g.agg(epochs=("epoch", "max"), minutes=("seconds", lambda s: s.sum() / 60),
                images_per_s=("images_per_s", "median")).reset_index()
    out["minutes_per_epoch"] = out.minutes / out.epochs
    return out.drop(columns="step").rename(columns={"stage": "phase"})


def throughput_table(plan_: SupernetPlan, steps: int = 4, seed: int = 0,
                     teacher: torch.nn.Module | None = None) -> pd.DataFrame:
    """Training images per second on this host, per space, of a plain loop on the max subnet
    (the ``max`` phase) and of the sandwich (max, min and ``n_random`` random subnets per
    batch), same batch, memory layout and teacher as the chapter trains: what a sandwich step
    costs against one network, and what :func:`size_phases` sizes the epochs from."""
    cfg = plan_.fp32
    sandwich = next(p for p in plan_.phases if p.kind == "sandwich")
    rows = []
    for label, space in plan_.spaces.items():
        for kind, what, n_random, with_min in (
                ("max", "plain loop, max subnet", 0, False),
                ("sandwich", f"sandwich (max, min, {sandwich.n_random} random)",
                 sandwich.n_random, True)):
            sec = step_seconds(space, cfg, n_random, with_min,
                               teacher if sandwich.teacher else None, plan_.dropout,
                               plan_.shortcut, steps, seed)
            rows.append({"space": label, "phase": kind, "training": what,
                         "images_per_s": cfg.batch_size / sec, "seconds_per_step": sec})
    out = pd.DataFrame(rows)
    out["relative"] = out.images_per_s / out.groupby("space").images_per_s.transform("first")
    return out


def speeds(plan_: SupernetPlan, run, steps: int = 4, seed: int = 0,
           teacher: torch.nn.Module | None = None) -> pd.DataFrame:
    """:func:`throughput_table`, measured once per host and setting and kept in the run: a
    rerun sizes the same epochs (so it resumes its checkpoints) instead of measuring anew."""
    cfg = plan_.fp32
    key = {"cpu": cpu_info()["cpu_model"], "spaces": {k: v.encode()
                                                       for k, v in plan_.spaces.items()},
           "batch_size": cfg.batch_size, "channels_last": cfg.channels_last,
           "n_random": [p.n_random for p in plan_.phases], "teacher": plan_.uses_teacher,
           "shortcut": plan_.shortcut, "dropout": plan_.dropout, "steps": steps, "seed": seed}
    return run.cached("throughput", lambda: throughput_table(plan_, steps, seed, teacher), key)


#: Share of a max-first candidate's minutes spent on the max subnet alone (the recipe
#: benchmark's; the chapter's ``max_share`` parameter sets its own).
MAX_FIRST_SHARE = 0.4


def size_phases(plan_: SupernetPlan, speed: pd.DataFrame, minutes: float,
                train_images: int, max_share: float = MAX_FIRST_SHARE) -> SupernetPlan:
    """The plan with each space's FP32 epochs sized so that its FP32 phases take about
    ``minutes`` on this host (``speed``: :func:`throughput_table`), about ``max_share`` of
    them on the max subnet alone, the way the recipe benchmark sized its candidates:
    Figure 1's spaces get the same minutes, not the same epochs. ``minutes`` 0 keeps the
    profile's epochs for every space."""
    if minutes <= 0:
        return plan_
    out = {}
    for label in plan_.spaces:
        ips = speed[speed.space == label].set_index("phase").images_per_s
        kinds = [p.kind for p in plan_.phases if p.kind != "lsq"]
        epochs = equal_minutes_epochs(minutes, {k: float(ips[k]) for k in kinds}, train_images,
                                      max_share)
        out[label] = tuple(
            p if p.kind == "lsq" else dataclasses.replace(p, cfg=dataclasses.replace(
                p.cfg, epochs=epochs[p.kind],
                warmup_epochs=p.cfg.warmup_epochs / p.cfg.epochs * epochs[p.kind]))
            for p in plan_.phases)
    return dataclasses.replace(plan_, space_phases=out)


# ----------------------------------------------------------------------------- the recipe

#: The recipe benchmark's candidates (``make bench-supernet``), each a set of parameter
#: overrides of the chapter's profile; every one trains the same minutes from the same seed.
CANDIDATES = {
    "paper's shortcut": {"recipe": "sandwich", "shortcut": "learned"},
    "sandwich": {"recipe": "sandwich"},
    "zero-gamma": {"recipe": "sandwich,zero-gamma"},
    "max-first": {"recipe": "sandwich,max-first"},
    "teacher": {"recipe": "sandwich,teacher"},
    "teacher + zero-gamma": {"recipe": "sandwich,teacher,zero-gamma"},
    "block-wise start": {"recipe": "sandwich", "init": "blockkd"},
    "block-wise start + max-first": {"recipe": "sandwich,max-first", "init": "blockkd"},
}
#: The rule that picks the recipe, fixed before the curves (tested on made-up curves).
RECIPE_RULE = ("the candidate whose fixed random subnets have the highest median INT8 top-1 "
               "after its LSQ+ phase, all FP32 phases given the same minutes; within "
               "{tie:g} point of the best, the one with the higher min subnet, then max")
RECIPE_TIE_POINTS = 1.0
#: Where the benchmark's curves are kept (with host and commit), for the chapter to draw.
RECIPE_BENCH = Path(__file__).resolve().parent.parent / "configs" / "bench" / \
    "supernet_recipes.json"


def choose_recipe(final: pd.DataFrame, tie: float = RECIPE_TIE_POINTS) -> str:
    """The candidate :data:`RECIPE_RULE` picks from one row per candidate (``candidate``,
    ``top1_random``, ``top1_min``, ``top1_max``: INT8 after the LSQ+ phase)."""
    best = final.top1_random.max()
    near = final[final.top1_random >= best - tie]
    return str(near.sort_values(["top1_min", "top1_max", "top1_random"], ascending=False,
                                kind="stable").candidate.iloc[0])


def equal_minutes_epochs(minutes: float, images_per_s: dict[str, float], train_images: int,
                         max_share: float = MAX_FIRST_SHARE) -> dict[str, int]:
    """Epochs of each FP32 phase of a candidate so that its FP32 training takes about
    ``minutes`` on this host: {"sandwich": n} or, with a max phase, {"max": a, "sandwich":
    b}, about ``max_share`` of the minutes on the max subnet alone. At one or two epochs a
    phase, rounding each phase alone can miss the minutes by a third, so the pair is the one
    whose total minutes and max share are nearest (relative miss plus share miss). At least
    one epoch each."""
    per_epoch = {k: train_images / v / 60 for k, v in images_per_s.items()}  # minutes
    if "max" not in per_epoch:
        return {"sandwich": max(1, round(minutes / per_epoch["sandwich"]))}
    top = {k: max(1, int(np.ceil(2 * minutes / m))) for k, m in per_epoch.items()}

    def miss(a: int, b: int) -> float:
        total = a * per_epoch["max"] + b * per_epoch["sandwich"]
        return abs(total - minutes) / minutes + abs(a * per_epoch["max"] / total - max_share)
    a, b = min(((a, b) for a in range(1, top["max"] + 1)
                for b in range(1, top["sandwich"] + 1)), key=lambda ab: miss(*ab))
    return {"max": a, "sandwich": b}


def curve_evaluator(recal: torch.Tensor, subnets, quant_images: torch.Tensor):
    """The benchmark's per-epoch evaluator: held-out top-1 of max, min and fixed random
    subnets in FP32 and in INT8: a copy with min-max initialised LSQ+ quantizers (no LSQ+
    training) during the FP32 phases, the trained quantizers in the LSQ+ phase."""
    inner = subnets_evaluator(recal, subnets)

    def evaluate_curve(net, loader) -> dict:
        core = getattr(net, "module", net)
        if is_quantized(core):
            return {f"{k}_int8": v for k, v in inner(core, loader).items()}
        out = inner(core, loader)
        q = quantize_supernet(core, quant_images)
        out.update({f"{k}_int8": v for k, v in inner(q, loader).items()})
        return out
    return evaluate_curve


def recipe_bench() -> dict | None:
    """The saved recipe benchmark (host, commit, curves, the rule's pick), or None."""
    if not RECIPE_BENCH.is_file():
        return None
    return json.loads(RECIPE_BENCH.read_text())


def recipe_bench_table(bench: dict) -> pd.DataFrame:
    """Per candidate of the saved benchmark: the commit it ran, its FP32 epochs and images per
    second, minutes, and the held-out INT8 top-1 of max, min and median random subnet after
    its LSQ+ phase
    (the numbers the rule picks on), with the pick marked."""
    curves, sizes = pd.DataFrame(bench["curves"]), pd.DataFrame(bench["sizes"])
    final = curves.groupby("candidate", sort=False).tail(1).set_index("candidate")
    rows = []
    for r in sizes.itertuples():
        f = final.loc[r.candidate]
        commit = r.commit if "commit" in sizes and isinstance(r.commit, str) else \
            bench["commit"]
        rows.append({"candidate": r.candidate, "commit": commit[:7], "settings": "; ".join(
            f"{k}: {v}" for k, v in bench["candidates"][r.candidate].items()),
            "FP32 epochs": " + ".join(str(int(getattr(r, c))) for c in ("epochs_max",
                                                                       "epochs_sandwich")
                                      if c in sizes and not pd.isna(getattr(r, c))),
            "sandwich images/s": r.images_per_s_sandwich,
            "minutes (all phases)": float(f.minutes),
            "max INT8": f.valid_top1_max_int8, "min INT8": f.valid_top1_min_int8,
            "random median INT8": f.valid_top1_random_int8,
            "chosen": "yes" if r.candidate == bench["chosen"] else ""})
    return pd.DataFrame(rows)


def follows_pick(plan_: SupernetPlan, bench: dict) -> str:
    """Whether this run trains the benchmark's pick (its recipe, start and shortcut), in
    words: a rerun with other parameters trains what they say, and the page says so."""
    pick = {"recipe": "sandwich", "init": "scratch", "shortcut": "fixed",
            **bench["candidates"][bench["chosen"]]}
    ours = {"recipe": plan_.recipe, "init": plan_.init, "shortcut": plan_.shortcut}
    if "batch_size" in pick:
        ours["batch_size"] = plan_.fp32.batch_size
    differ = [k for k in ours if (recipe_features(pick[k]) if k == "recipe" else pick[k])
              != ours[k]]
    if not differ:
        return f"this run trains the benchmark's pick, {bench['chosen']}"
    return (f"this run differs from the benchmark's pick ({bench['chosen']}) in "
            + ", ".join(f"{k}: {ours[k] if k != 'recipe' else ','.join(ours[k])}"
                        for k in differ) + " (set by its parameters)")


def bench_dimension_table(bench: dict) -> pd.DataFrame:
    """The benchmark's one-dimension-at-a-time table, the paper's shortcut beside the
    parameter-free one (median held-out INT8 top-1 of the draws)."""
    t = pd.DataFrame(bench["table_b"])
    return t.pivot_table(index="dimension", columns="candidate", values="median top-1 INT8",
                         sort=False).reset_index()


# ----------------------------------------------------------------------------- evaluation


def random_subnets(space: SpaceChoice, n: int, seed: int, resolution: int) -> list[Subnet]:
    """``n`` uniformly random subnets of ``space`` (``sample_subnet``: per-block kernel,
    width and expand, per-stage depth) at ``resolution``, from a fixed seed: the middle of
    the space the chapter's records and checks follow."""
    rng = np.random.default_rng(seed)
    return [sample_subnet(space.spec, space, rng, resolutions=(resolution,)) for _ in range(n)]


def ends_table(nets: dict, data: TrainingData, recal_n: int, n_random: int, seed: int,
               resolution: int) -> pd.DataFrame:
    """Test top-1 of each space's max and min subnets and of ``n_random`` fixed random
    subnets at ``resolution``: INT8 fake-quant (LSQ+ supernet) for all, FP32 (FP32 supernet)
    for the max and min only (the middle's FP32-against-INT8 gap is the diagnosis's table (d),
    on held-out images; NaN here), with inherited weights and BN re-estimated on ``recal_n``
    images."""
    recal, rows, test = recal_images(data, recal_n), [], data.loaders["test"]
    for label, (fp32, lsq) in nets.items():
        picks = [("max", fp32.sample_max()), ("min", fp32.sample_min())]
        picks += [(f"random{i}", s) for i, s in enumerate(
            random_subnets(fp32.space, n_random, seed, resolution))]
        for kind, sub in picks:
            rows.append({"space": label, "subnet": kind, "encoding": sub.encode(),
                         "top1_fp32": subnet_accuracy(fp32, sub, recal, test)["top1"]
                         if kind in ("max", "min") else float("nan"),
                         "top1_int8": subnet_accuracy(lsq, sub, recal, test)["top1"]})
        fp32.sample_max()
    return pd.DataFrame(rows)


def ends_summary(ends: pd.DataFrame) -> pd.DataFrame:
    """Per space: max, min and the median (range) of the random subnets, INT8 and FP32."""
    rows = []
    for label, g in ends.groupby("space", sort=False):
        rnd = g[g.subnet.str.startswith("random")]
        row = {"space": label}
        for p in ("int8", "fp32"):
            by = g.set_index("subnet")[f"top1_{p}"]
            row.update({f"max {p}": by["max"], f"min {p}": by["min"]})
            if rnd[f"top1_{p}"].notna().any():
                row.update({f"random median {p}": float(rnd[f"top1_{p}"].median()),
                            f"random range {p}": f"{rnd[f'top1_{p}'].min():.1f}-"
                                                 f"{rnd[f'top1_{p}'].max():.1f}"})
        rows.append(row)
    return pd.DataFrame(rows)


#: What "subnets that learn" means for a space (the supernet issue's bar, fixed before the
#: results): test INT8 top-1 of the max and min subnets, and the median of the fixed random
#: subnets, which must also be within ``random_below_min`` points of the min subnet.
LEARNING_BAR = {"max": 35.0, "min": 30.0, "random": 25.0, "random_below_min": 5.0}
#: ... and the aims beyond it: the random median at least this, within this of the max.
LEARNING_AIMS = {"random": 45.0, "random_below_max": 10.0}


def last_slopes(history: pd.DataFrame, label: str) -> dict[str, float]:
    """Held-out top-1 points per minute of ``label``'s max and min subnets over its last FP32
    epoch (NaN with a single FP32 epoch): what one more minute buys at the end of the run."""
    h = history[history.space == label].reset_index(drop=True)
    minutes = h.seconds.cumsum() / 60
    fp = h.index[h.phase == "fp32"]
    if len(fp) < 2:
        return {"max": float("nan"), "min": float("nan")}
    a, b = fp[-2], fp[-1]
    return {k: float((h.at[b, f"valid_top1_{k}"] - h.at[a, f"valid_top1_{k}"])
                     / (minutes[b] - minutes[a])) for k in ("max", "min")}


def bench_random_slope(bench: dict | None) -> float:
    """Held-out FP32 top-1 points per minute of the median random subnet over the last FP32
    epoch of the benchmark's chosen candidate (evolved space; NaN without one)."""
    if not bench:
        return float("nan")
    c = pd.DataFrame(bench["curves"])
    c = c[(c.candidate == bench["chosen"]) & (c.phase == "fp32")]
    if len(c) < 2:
        return float("nan")
    a, b = c.iloc[-2], c.iloc[-1]
    return float((b.valid_top1_random - a.valid_top1_random) / (b.minutes - a.minutes))


def learning_table(ends: pd.DataFrame, history: pd.DataFrame, random_slope: float = np.nan,
                   bar: dict = LEARNING_BAR, aims: dict = LEARNING_AIMS) -> pd.DataFrame:
    """Per space, each part of the bar and of the aims: the measured INT8 top-1, what it
    needs, whether it is met, and for one missed, the minutes the last curve segment implies
    (an extrapolation: the slope of the last FP32 epoch of the max or min subnet, of the
    random median ``random_slope`` from the recipe benchmark's curve, in points per minute)."""
    rows = []
    for label, g in ends.groupby("space", sort=False):
        by = g.set_index("subnet").top1_int8
        mx, mn = float(by["max"]), float(by["min"])
        rnd = float(g[g.subnet.str.startswith("random")].top1_int8.median())
        slope = last_slopes(history, label)
        checks = [("max subnet", "bar", mx, bar["max"], slope["max"]),
                  ("min subnet", "bar", mn, bar["min"], slope["min"]),
                  ("random median", "bar", rnd, bar["random"], random_slope),
                  ("random median", "bar", rnd, mn - bar["random_below_min"], np.nan),
                  ("random median", "aim", rnd, aims["random"], random_slope),
                  ("random median", "aim", rnd, mx - aims["random_below_max"], np.nan)]
        for what, kind, value, need, rate in checks:
            met = bool(value >= need)
            rows.append({"space": label, "subnet": what, "kind": kind,
                         "INT8 top-1": value, "needs": need, "met": "yes" if met else "no",
                         "points per minute (last segment)": rate,
                         "minutes more (extrapolation)":
                             np.nan if met or not rate > 0 else (need - value) / rate})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- diagnosis


def diagnosis_data(data: TrainingData, images: int, seed: int) -> TrainingData:
    """``data`` whose held-out loader is ``images`` class-balanced held-out images (0: all):
    the diagnosis compares subnets with each other, so it needs every class, not every
    image; the reported numbers stay on the test split."""
    if not images:
        return data
    valid = balanced_loader(data.loaders["valid"], images, seed)
    return dataclasses.replace(data, loaders={**data.loaders, "valid": valid})


def bn_curve(lsq: Supernet, subnets, data: TrainingData, counts) -> pd.DataFrame:
    """Held-out INT8 top-1 of fixed middle subnets with BN statistics re-estimated on each of
    ``counts`` class-balanced training images (0: the supernet's running statistics, which
    mix every subnet trained). Rows: count, subnet, top1, seconds."""
    rows = []
    for n in counts:
        for i, sub in enumerate(subnets):
            t0 = time.perf_counter()
            net = subnet_network(lsq, sub, recal_images(data, n) if n else None)
            top1 = evaluate(net, data.loaders["valid"])["top1"]
            rows.append({"images": int(n), "subnet": f"random{i}", "top1_int8": top1,
                         "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def pick_recal_count(curve: pd.DataFrame, thresholds: dict = THRESHOLDS) -> int:
    """The fewest re-estimation images whose median top-1 is within ``recal_points`` of the
    largest count's (rule fixed before the numbers)."""
    med = curve.groupby("images").top1_int8.median().sort_index()
    best = med.iloc[-1]
    ok = [int(n) for n, v in med.items() if n > 0 and v >= best - thresholds["recal_points"]]
    return min(ok) if ok else int(med.index[-1])


#: The elastic dimensions of :func:`vary`, each drawn at random with the rest at the max.
DIMENSIONS = ("depth", "kernel", "expand", "width per block", "width per stage",
              "resolution")


def vary(space: SpaceChoice, dimension: str, rng: np.random.Generator) -> Subnet:
    """The max subnet of ``space`` with one elastic dimension drawn at random: per-stage
    depths (the kept blocks at their max), per-block kernels, expands or widths, one width
    per stage for all its blocks, or the resolution."""
    hs = space.spec
    base = max_subnet(hs, space)
    stages = dict(base.stage_blocks())
    searchable = set(hs.searchable_stages)

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    depths = list(base.depths)
    resolution = base.resolution
    for si, (name, blocks) in enumerate(stages.items()):
        if name not in searchable:
            continue
        spec, widths = space.block(name), space.widths(name)
        stage_w = pick(widths)
        new = []
        if dimension == "depth":
            depths[si] = pick(hs.stage(name).depths)
            blocks = blocks[:1] * depths[si]
        for k, w, e in blocks:
            if dimension == "kernel":
                k = pick(spec.kernels)
            elif dimension == "expand" and e is not None:
                e = pick(spec.expand_choices)
            elif dimension == "width per block":
                w = pick(widths)
            elif dimension == "width per stage":
                w = stage_w
            new.append((k, w, e))
        stages[name] = tuple(new)
    if dimension == "resolution":
        resolution = pick(hs.resolutions)
    elif dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}; got {dimension!r}")
    flat = [b for blocks in stages.values() for b in blocks]
    sub = Subnet(tuple(len(b) for b in stages.values()), tuple(k for k, _, _ in flat),
                 tuple(w for _, w, _ in flat), tuple(e for _, _, e in flat), resolution)
    return sub.validate(hs, space)


def dimension_table(lsq: Supernet, data: TrainingData, recal_n: int, draws: int,
                    seed: int) -> pd.DataFrame:
    """One elastic dimension at a time: held-out INT8 top-1 of the max subnet and of
    ``draws`` subnets equal to it except one dimension drawn at random (median and range):
    where accuracy falls off tells which kind of sharing the supernet has not learned."""
    rng = np.random.default_rng(seed)
    recal, loader = recal_images(data, recal_n), data.loaders["valid"]
    rows = [{"dimension": "none (max subnet)", "draws": 1,
             **_spread([subnet_accuracy(lsq, lsq.sample_max(), recal, loader)["top1"]])}]
    for dim in DIMENSIONS:
        tops = [subnet_accuracy(lsq, vary(lsq.space, dim, rng), recal, loader)["top1"]
                for _ in range(draws)]
        rows.append({"dimension": dim, "draws": draws, **_spread(tops)})
    lsq.sample_max()
    return pd.DataFrame(rows)


def _spread(values) -> dict:
    v = np.asarray(values, float)
    return {"median top-1 INT8": float(np.median(v)), "lowest": float(v.min()),
            "highest": float(v.max())}


def extraction_table(nets: dict, subnets, data: TrainingData, recal_n: int,
                     images: int = 256) -> pd.DataFrame:
    """The extracted static network against the supernet's elastic forward, same subnet,
    same BN images, eval mode: the largest logit difference on ``images`` held-out images and
    both held-out top-1s (FP32 and INT8): the fast evaluation path computes what the elastic
    one does."""
    recal = recal_images(data, recal_n)
    x = torch.stack([data.loaders["valid"].dataset[i][0] for i in range(images)])
    rows = []
    for precision, net in nets.items():
        for i, sub in enumerate(subnets):
            static = subnet_network(net, sub, recal)
            with torch.no_grad():
                y_static = static(x)
                net.set_active_subnet(sub)
                recalibrate_bn(net, recalibration_batches(recal))  # (the elastic path's own)
                y_elastic = net(x)
            rows.append({"precision": precision, "subnet": f"random{i}",
                         "max |static - elastic| logit": float((y_static - y_elastic).abs().max()),
                         "logit scale": float(y_elastic.abs().max()),
                         "top1 static": evaluate(static, data.loaders["valid"])["top1"],
                         "top1 elastic": elastic_subnet_accuracy(net, sub, recal,
                                                                 data.loaders["valid"])["top1"]})
        net.sample_max()
    return pd.DataFrame(rows)


def precision_table(fp32: Supernet, lsq: Supernet, subnets, data: TrainingData,
                    recal_n: int) -> pd.DataFrame:
    """FP32 against INT8 fake-quant held-out top-1 of the same subnets (inherited weights):
    what the LSQ+ stage and per-tensor quantization cost the middle of the space."""
    recal, loader = recal_images(data, recal_n), data.loaders["valid"]
    rows = [{"subnet": f"random{i}",
             "top1 FP32": subnet_accuracy(fp32, s, recal, loader)["top1"],
             "top1 INT8": subnet_accuracy(lsq, s, recal, loader)["top1"]}
            for i, s in enumerate(subnets)]
    out = pd.DataFrame(rows)
    out["INT8 - FP32"] = out["top1 INT8"] - out["top1 FP32"]
    return out


def at_start_table(plan_: SupernetPlan, label: str, subnets, data: TrainingData,
                   students_folder: Path | None, recal_n: int) -> pd.DataFrame:
    """Held-out FP32 top-1 of the max, min and middle subnets of ``label``'s supernet right
    after its start, before any step (BN re-estimated): where training begins (10 % is
    chance on 10 classes; the block-wise start may begin higher)."""
    net = new_supernet(plan_.spaces[label], plan_.init, plan_.fp32.seed, students_folder,
                       plan_.shortcut, "zero-gamma" in plan_.recipe)
    recal, loader = recal_images(data, recal_n), data.loaders["valid"]
    picks = [("max", net.sample_max()), ("min", net.sample_min())]
    picks += [(f"random{i}", s) for i, s in enumerate(subnets)]
    return pd.DataFrame([{"subnet": k, "top1 FP32 at start":
                          subnet_accuracy(net, s, recal, loader)["top1"]} for k, s in picks])


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
    # per (stage, resolution): the rows' parsed blocks and NSR, in table order (pandas
    # indexing per draw cost 2 ms a subnet; a pool is drawn in seconds this way)
    rows_at = {(i, r): list(zip(map(parse_arch, at.arch), at.nsr.astype(float)))
               for i, f in frames.items() for r in res
               for at in [f[f.resolution == r]]}
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        r = int(res[rng.integers(len(res))])
        base = sample_subnet(hs, space, rng, resolutions=(r,))
        blocks = dict(base.stage_blocks())
        nsr = 0.0
        for i in frames:
            at_r = rows_at[(i, r)]
            arch, row_nsr = at_r[int(rng.integers(len(at_r)))]
            blocks[f"stage{i}"] = arch
            nsr += row_nsr
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
    cs = np.unique(np.concatenate(list(latencies.values())))
    lows = cs * (1 - delta)
    ordered = {k: np.sort(v) for k, v in latencies.items()}
    counts = {k: np.searchsorted(v, cs, side="right") - np.searchsorted(v, lows, side="left")
              for k, v in ordered.items()}
    score = np.min([counts[k] / len(v) for k, v in latencies.items()], axis=0)
    best = int(np.argmax(score))  # (the first of equal scores: the smaller c)
    shares = {k: float(counts[k][best] / len(v)) for k, v in latencies.items()}
    return {"low": float(lows[best]), "high": float(cs[best]), "shares": shares,
            "common": bool(score[best] > 0)}


def device_predictor(profile: str):
    """This host's INT8 predictor of ``DEVICE`` at the training scale (the predictor
    chapter's)."""
    return predictor_chapter.load_predictor(DEVICE, "train", profile)


def fig1_pools(plan_: SupernetPlan, labels, tables_folder: Path, predictor, n_pool: int,
               seed: int) -> dict[str, pd.DataFrame]:
    """Per space, ``n_pool`` table-composed subnets with their predicted INT8 latency on this
    host's device, at the resolutions the sandwich trains its random subnets at (the
    hyperspace's sample_resolutions; only the min subnet trains below them)."""
    out = {}
    for i, label in enumerate(labels):
        sp = plan_.spaces[label]
        pool = table_subnets(sp, tables_folder, n_pool, seed + i,
                             resolutions=sp.spec.sample_resolutions)
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


def evaluate_pool(lsq: Supernet, picked: pd.DataFrame, data: TrainingData,
                  recal_n: int) -> pd.DataFrame:
    """INT8 fake-quant test top-1 (inherited weights, BN re-estimated on ``recal_n``
    images) of picked subnets, and the seconds each evaluation took."""
    if not len(picked):
        return picked.assign(top1_int8=[], eval_seconds=[])
    ev = evaluate_subnets(lsq, list(picked.subnet), recal_images(data, recal_n),
                          data.loaders["test"])
    return picked.assign(top1_int8=ev.top1.to_numpy(), eval_seconds=ev.seconds.to_numpy())


def reuse_evaluations(lsq: Supernet, picked: pd.DataFrame, evaluated: pd.DataFrame,
                      data: TrainingData, recal_n: int) -> pd.DataFrame:
    """:func:`evaluate_pool` for the picked subnets that ``evaluated`` (same supernet, test
    images and BN count) has not scored yet; the others keep its scores."""
    known = evaluated.set_index("subnet")[["top1_int8", "eval_seconds"]]
    new = evaluate_pool(lsq, picked[~picked.subnet.isin(known.index)], data, recal_n)
    old = picked[picked.subnet.isin(known.index)].join(known, on="subnet")
    out = pd.concat([old, new]).set_index("subnet").loc[picked.subnet].reset_index()
    return out[list(picked.columns) + ["top1_int8", "eval_seconds"]]


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


def fig1_verdict(evolved, other, seed: int = 0, bar: float | None = None) -> dict:
    """Figure 1's rule: the evolved space's median INT8 top-1 minus the other's, with its
    bootstrap interval: ``holds`` above 0, ``fails`` below 0, ``undecided at this budget``
    when the interval spans 0; "not tested at this budget" when either space's median is
    below the reference file's ``min_top1_int8`` (subnets that have not learned)."""
    if min(len(evolved), len(other)) < 2:
        return {"median_difference": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"),
                "verdict": "undecided: the spaces share no latency window"}
    diff, lo, hi = bootstrap_median_difference(evolved, other, seed)
    ok, why = learned({"evolved (INT8)": float(np.median(evolved)),
                       "hand-designed (INT8)": float(np.median(other))}, bar)
    verdict = (why if not ok else "holds" if lo > 0 else "fails" if hi < 0
               else "undecided at this budget")
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


def proxy_table(evaluated: dict[str, pd.DataFrame], bar: float | None = None) -> pd.DataFrame:
    """Per space: does the block-wise proxy (lower NSR sum = better) rank the subnets as their
    INT8 top-1 does? Kendall tau of -NSR sum against top-1, with its interval; ``tested``
    only where the subnets' median INT8 top-1 reaches the bar (else the tau ranks noise)."""
    rows = []
    for label, df in evaluated.items():
        ok, why = learned({f"{label} (INT8)": float(df.top1_int8.median()) if len(df) else
                           float("nan")}, bar)
        rows.append({"space": label, **kendall_with_interval(-df.nsr_sum, df.top1_int8),
                     "median top-1 INT8": float(df.top1_int8.median()) if len(df) else
                     float("nan"), "tested": ok, "why not": why})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- weight sharing


def spread(pool: pd.DataFrame, n: int, column: str = "int8_ms") -> pd.DataFrame:
    """``n`` rows spread evenly over ``column``'s range (sorted, evenly spaced ranks)."""
    s = pool.sort_values(column).reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(s) - 1, n).round().astype(int))
    return s.iloc[idx].reset_index(drop=True)


def standalone_checkpoint(run, space: SpaceChoice, subnet: str, cfg: TrainConfig) -> Path:
    """Where a stand-alone subnet keeps its checkpoint: keyed by the space, the subnet's
    encoding and the training settings, so other subnets or settings train anew."""
    return run.path / "standalone" / (stable_hash({"space": space.encode(), "subnet": subnet,
                                                   "cfg": cfg.as_dict()})[:16] + ".pt")


def standalone_table(space: SpaceChoice, picked: pd.DataFrame, cfg: TrainConfig, run,
                     test_images: int, dataset: str = "imagenette") -> pd.DataFrame:
    """Each picked subnet trained alone from scratch (the paper's architecture, learned
    shortcuts; the plan's short, equal budget) and its FP32 test top-1 (checkpoints keyed by
    the subnet and the settings; they resume)."""
    data = load_training_data(max(space.spec.resolutions), cfg, test_images=test_images,
                              dataset=dataset)
    out = []
    for i, sub in enumerate(picked.subnet):
        torch.manual_seed(cfg.seed + i)
        model = build_subnet(space, sub, n_classes=data.n_classes)
        h = train_fp32(model, f"standalone/{space.encode()}:{sub}", cfg, data,
                       standalone_checkpoint(run, space, sub, cfg), progress=False)
        out.append({"subnet": sub, "standalone_top1": evaluate(model, data.loaders["test"])[
            "top1"], "standalone_minutes": float(h.seconds.sum() / 60)})
    return picked.merge(pd.DataFrame(out), on="subnet")


# ----------------------------------------------------------------------------- QFA


#: Post-training calibration images of the deployed files (a class-balanced prefix).
PTQ_CALIBRATION = 256


def qfa_check(fp32: Supernet, lsq: Supernet, picked: pd.DataFrame, data: TrainingData,
              run, protocol: Protocol, recal_n: int, seed: int = 0
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each picked subnet (at 32 px, the images' size): (a) the LSQ+ supernet's weights
    and scales deployed as a learned-scale ORT file, (b) the FP32 supernet's weights with ORT
    post-training INT8, (c) the FP32 file; top-1 of each file on the test images (from the
    file's own preprocessing), beside the fake-quant top-1; latency of every file (cached on
    the files' contents)."""
    recal = recal_images(data, recal_n)
    calibration = data.calibration[:PTQ_CALIBRATION]
    out_dir = run.path / "qfa"
    rows, files = [], []
    for i, sub in enumerate(picked.subnet):
        label = f"qfa{i}"
        fq = subnet_accuracy(lsq, sub, recal, data.loaders["test"])["top1"]
        lsq_file, ptq_file = subnet_files(fp32, lsq, sub, recal, calibration,
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
    lat = timed_files(files, calibration, protocol, seed, run, name="qfa_latency")
    lat["label"] = [f"qfa{i // 2}" for i in range(len(lat))]
    return table, lat


def qfa_verdict(table: pd.DataFrame, thresholds: dict = THRESHOLDS,
                bar: float | None = None) -> dict:
    """Quantized-for-all holds when the learned-scale file stays within ``qfa_file_points``
    of its fake-quant network and within ``qfa_int8_drop_points`` of FP32 (medians over the
    subnets); also says whether post-training INT8 of the FP32 weights loses more. Not
    tested when the subnets' median fake-quant INT8 top-1 is below the bar."""
    file_gap = float((table.top1_int8_ort_lsq_qdq - table.top1_int8_fakequant).abs().median())
    drop_a = float((table.top1_fp32 - table.top1_int8_ort_lsq_qdq).median())
    drop_b = float((table.top1_fp32 - table.top1_int8_ort_ptq).median())
    holds = file_gap <= thresholds["qfa_file_points"] and \
        drop_a <= thresholds["qfa_int8_drop_points"]
    ok, why = learned({"QFA subnets (INT8)": float(table.top1_int8_fakequant.median())}, bar)
    return {"file_vs_fakequant_points": file_gap, "int8_drop_points_learned": drop_a,
            "int8_drop_points_ptq": drop_b, "ptq_loses_more": drop_b > drop_a,
            "verdict": why if not ok else "holds" if holds else "does not hold"}


# ----------------------------------------------------------------------------- records


def summary_records(spaces: dict, ends: pd.DataFrame, fig1: dict, proxy: pd.DataFrame,
                    ws: dict, qfa: pd.DataFrame, qfa_v: dict, evals_per_minute: float,
                    recal_n: int) -> list[dict]:
    """The chapter's records (short labels in names; the encodings in a field)."""
    out = []
    for r in ends.itertuples():
        if r.subnet.startswith("random"):
            continue
        for precision in ("int8", "fp32"):
            rec = record(f"top1_{precision}/supernet/{r.space}/{r.subnet}",
                         round(float(getattr(r, f"top1_{precision}")), 2), "%")
            rec["encoding"] = spaces[r.space].encode()
            out.append(rec)
    for label, g in ends[ends.subnet.str.startswith("random")].groupby("space", sort=False):
        for precision in ("int8", "fp32"):
            if g[f"top1_{precision}"].isna().all():
                continue  # (FP32 is measured for the ends only)
            rec = record(f"median_top1_{precision}/supernet/{label}/random",
                         round(float(g[f"top1_{precision}"].median()), 2), "%")
            rec["encoding"] = spaces[label].encode()
            out.append(rec)
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
    for scope, w in (("", ws["all"]), ("/window", ws["window"])):
        name = f"supernet/evolved-ort-vnni{scope}"
        out.append(record(f"kendall_n/{name}", int(w["n"]), "subnets"))
        if not np.isnan(w["tau"]):
            out.append(record(f"kendall_tau/{name}", round(w["tau"], 3), "tau"))
            out.append(record(f"kendall_tau_ci_low/{name}", round(w["ci_low"], 3), "tau"))
            out.append(record(f"kendall_tau_ci_high/{name}", round(w["ci_high"], 3), "tau"))
    out.append(record("verdict/weight_sharing", ws["verdict"], "verdict"))
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
    out.append(record("recal_images/supernet", int(recal_n), "images"))
    return out


def load_run(profile: str, root: Path | None = None) -> Run:
    """This chapter's run folder at ``profile`` (its checkpoints are what the search chapter
    reads)."""
    return Run("supernet", profile, root)


#: The file the chapter writes after training: what later chapters need of it.
TRAINED = "trained"


def trained_record(plan_: SupernetPlan, paths: dict[str, list[Path]]) -> dict:
    """What the run trained, for later chapters: the start, recipe and shortcut kind, and per
    space its FP32 and LSQ+ checkpoints with their epochs (the last phase of each precision)."""
    out = {"init": plan_.init, "recipe": list(plan_.recipe), "shortcut": plan_.shortcut,
           "spaces": {}}
    for label, ps in paths.items():
        last = {ph.precision: (path, ph.cfg.epochs)
                for ph, path in zip(plan_.phases_of(label), ps)}
        out["spaces"][label] = {"encoding": plan_.spaces[label].encode(),
                                **{p: {"checkpoint": last[p][0].name, "epochs": last[p][1]}
                                   for p in ("fp32", "lsq")}}
    return out


@dataclass(frozen=True)
class SupernetResults:
    """What the chapter left for the search chapter (:func:`load_results`): its trained
    supernets (start, recipe and checkpoints as the run stored them), the spaces they belong
    to, and the same held-out split and BN images."""

    path: Path
    params: dict
    records: tuple
    trained: dict

    def _value(self, name: str) -> dict:
        for r in self.records:
            if r["name"] == name:
                return r
        raise MissingResultError(f"no record {name} in {self.path}: run the chapter "
                                 "'The quantized-for-all supernet' to the end first")

    def spaces(self) -> dict[str, SpaceChoice]:
        """label -> space of every supernet the chapter trained."""
        return {label: SpaceChoice.decode(v["encoding"])
                for label, v in self.trained["spaces"].items()}

    @property
    def init(self) -> str:
        """The start every supernet took."""
        return self.trained["init"]

    @property
    def recipe(self) -> tuple[str, ...]:
        return tuple(self.trained["recipe"])

    @property
    def recal_images(self) -> int:
        """The BN re-estimation images the chapter picked (its re-estimation curve)."""
        return int(self._value("recal_images/supernet")["value"])

    def checkpoints(self, label: str) -> tuple[Path, Path]:
        v = self.trained["spaces"][label]
        return self.path / v["fp32"]["checkpoint"], self.path / v["lsq"]["checkpoint"]

    def supernets(self, label: str) -> tuple[Supernet, Supernet, str]:
        """``label``'s trained (FP32, LSQ+) supernets and the LSQ+ checkpoint's sha256 (what a
        fitness cache is keyed on); CheckpointError when a stage did not finish."""
        sp, v = self.spaces()[label], self.trained["spaces"][label]
        f32, f8 = self.checkpoints(label)
        shortcut = self.trained["shortcut"]
        fp32 = load_supernet(sp, f32, "fp32", finished_epochs=v["fp32"]["epochs"],
                             shortcut=shortcut)
        lsq = load_supernet(sp, f8, "lsq", finished_epochs=v["lsq"]["epochs"],
                            shortcut=shortcut)
        return fp32, lsq, file_hash(f8)

    def data(self) -> TrainingData:
        """The chapter's data: its held-out split, test split and the BN re-estimation images
        it picked (a class-balanced prefix)."""
        cfg = config.chapter_config("supernet", **self.params)
        data = load_data(cfg, plan(cfg))[0]
        data.calibration = data.calibration[:self.recal_images]
        return data


def load_results(profile: str, root: Path | None = None) -> SupernetResults:
    """This chapter's results at ``profile`` for later chapters; MissingResultError names the
    chapter to run first."""
    run = load_run(profile, root)
    params = run.finished_params()
    return SupernetResults(run.path, params, tuple(run.read_summary()),
                           run.load(TRAINED, "json"))


# ----------------------------------------------------------------------------- the chapter's steps


def train_all(plan_: SupernetPlan, data: TrainingData, lsq_data: TrainingData, run,
              students_folder: Path | None, teacher=None, teacher_digest: str | None = None
              ) -> tuple[dict, pd.DataFrame]:
    """Every space's supernet, the same start, recipe and epochs for each: {label: (FP32,
    LSQ+)} and their per-epoch metrics; the run keeps what it trained (:data:`TRAINED`)."""
    nets, histories, paths = {}, [], {}
    for label in plan_.spaces:
        fp32, lsq, h, ps = train_space(label, plan_, data, lsq_data, run, students_folder,
                                       teacher, teacher_digest)
        nets[label] = (fp32, lsq)
        histories.append(h)
        paths[label] = ps
    history = pd.concat(histories, ignore_index=True)
    if rank() == 0:
        run.save(history, "history")
        run.save(trained_record(plan_, paths), TRAINED, "json")
    return nets, history


def students_folder(plan_: SupernetPlan, profile: str, root: Path | None = None) -> Path | None:
    """The block-wise chapter's job folder when the supernets start from its students."""
    if plan_.init != "blockkd":
        return None
    return blockkd_chapter.load_results(profile, root).job_folder


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
        teacher, digest = load_teacher(plan_, cfg.profile)
        train_all(plan_, data, lsq_data, run, students_folder(plan_, cfg.profile), teacher,
                  digest)
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    return run.path


def figure1(cfg, plan_: SupernetPlan, nets: dict, data: TrainingData, tables_folder: Path,
            predictor, recal_n: int) -> dict:
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
        evaluated[label] = evaluate_pool(nets[label][1], picked, data, recal_n)
    same = window["common"]  # no verdict from subnets of different latencies
    verdict = fig1_verdict(evaluated["evolved-ort-vnni"].top1_int8 if same else [],
                           evaluated["mbv3-style"].top1_int8 if same else [], cfg.seed)
    shares = pd.DataFrame([{"space": k, "feasible share of the pool": window["shares"][k],
                            "subnets evaluated": len(evaluated[k]),
                            "median INT8 top-1": float(evaluated[k].top1_int8.median()),
                            "spread (IQR)": float(evaluated[k].top1_int8.quantile(0.75) -
                                                  evaluated[k].top1_int8.quantile(0.25)),
                            "seconds per evaluation (median)":
                                float(evaluated[k].eval_seconds.median())}
                           for k in pools])
    return {"pools": pools, "window": window, "evaluated": evaluated, "verdict": verdict,
            "shares": shares}


def verdict_table(verdict: dict) -> pd.DataFrame:
    return pd.DataFrame([verdict])


def ws_picks(pool: pd.DataFrame, window: dict, n: int, n_window: int,
             prefer: pd.DataFrame | None = None) -> pd.DataFrame:
    """``n`` subnets of a pool for the weight-sharing check: ``n_window`` spread over the
    latency window (when the spaces share one; drawn among ``prefer``'s subnets, e.g. those
    Figure 1 has evaluated, when they are enough), the rest spread over the whole pool's
    latency range; column ``in_window``."""
    inside = (pool.int8_ms >= window["low"]) & (pool.int8_ms <= window["high"]) \
        if window["common"] else pd.Series(False, index=pool.index)
    if prefer is not None and (inside & pool.subnet.isin(prefer.subnet)).sum() >= n_window:
        inside &= pool.subnet.isin(prefer.subnet)
    a = spread(pool[inside], min(n_window, int(inside.sum()))) if inside.any() else pool[:0]
    rest = pool[~pool.subnet.isin(a.subnet)]
    b = spread(rest, n - len(a))
    out = pd.concat([a, b], ignore_index=True)
    out["in_window"] = (out.int8_ms >= window["low"]) & (out.int8_ms <= window["high"]) \
        if window["common"] else False
    return out.drop_duplicates("subnet").reset_index(drop=True)


def weight_sharing(cfg, plan_: SupernetPlan, nets: dict, fig1: dict, data: TrainingData,
                   run, recal_n: int, label: str = "evolved-ort-vnni"
                   ) -> tuple[pd.DataFrame, dict]:
    """``ws_subnets`` of the space's pool (``ws_in_window`` of them in Figure 1's window):
    inherited INT8 top-1 against the same architecture trained alone; Kendall tau with its
    interval over all of them and over those in the window; a verdict only where both sides
    learned (median top-1 at least the reference file's bar)."""
    picked = ws_picks(fig1["pools"][label], fig1["window"], cfg.ws_subnets, cfg.ws_in_window,
                      prefer=fig1["evaluated"][label])
    inherited = reuse_evaluations(nets[label][1], picked, fig1["evaluated"][label], data,
                                  recal_n)
    table = standalone_table(plan_.spaces[label], inherited, plan_.standalone, run,
                             cfg.test_images, cfg.dataset)
    both = kendall_with_interval(table.top1_int8, table.standalone_top1, cfg.seed)
    win = table[table.in_window]
    inside = kendall_with_interval(win.top1_int8, win.standalone_top1, cfg.seed)
    ok, why = learned({"inherited (INT8)": float(table.top1_int8.median()),
                       "stand-alone (FP32)": float(table.standalone_top1.median())})
    verdict = why if not ok else ("ranks agree" if both["ci_low"] > 0 else
                                  "no agreement shown" if not np.isnan(both["tau"])
                                  else "undefined (ties)")
    return table, {"all": both, "window": inside, "verdict": verdict, **both}


def quantized_for_all(cfg, plan_: SupernetPlan, nets: dict, fig1: dict, data: TrainingData,
                      run, recal_n: int, label: str = "evolved-ort-vnni"):
    """``qfa_subnets`` of the space at the images' resolution, spread over their latency
    range, deployed three ways: (table, latency records, verdict)."""
    r = resolution_of(plan_)
    pool = fig1["pools"][label]
    picked = spread(pool[pool.resolution == r], cfg.qfa_subnets)
    table, lat = qfa_check(nets[label][0], nets[label][1], picked, data, run, plan_.protocol,
                           recal_n, cfg.seed)
    return table, lat, qfa_verdict(table)


def fitness_seconds(lsq: Supernet, subnets, data: TrainingData, recal_n: int,
                    images: int = 500, seed: int = 0) -> pd.DataFrame:
    """Seconds one search fitness costs here: INT8 top-1 of each subnet on ``images``
    class-balanced held-out images, BN re-estimated on ``recal_n`` (what the search chapter
    pays per candidate, and sizes its searches by)."""
    loader = balanced_loader(data.loaders["valid"], images, seed)
    rows = []
    for i, sub in enumerate(subnets):
        t0 = time.perf_counter()
        top1 = subnet_accuracy(lsq, sub, recal_images(data, recal_n), loader)["top1"]
        rows.append({"subnet": f"random{i}", "images": len(loader.dataset), "top1_int8": top1,
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def evaluations_per_minute(fig1: dict) -> float:
    """Subnets evaluated per minute (BN re-estimation and the test split included): what a
    search pays per candidate."""
    secs = np.concatenate([df.eval_seconds.to_numpy() for df in fig1["evaluated"].values()])
    return float(60.0 / np.mean(secs))


def _difference_text(v: dict) -> str:
    if np.isnan(v["median_difference"]):
        return "no difference computed"
    return (f"{v['median_difference']:+.1f} points, interval [{v['ci_low']:+.1f}, "
            f"{v['ci_high']:+.1f}]")


def _tau_text(w: dict) -> str:
    if np.isnan(w["tau"]):
        return f"undefined on {w['n']} subnets"
    return f"{w['tau']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}] on {w['n']} subnets"


def glue_values(cfg, plan_: SupernetPlan, fig1: dict, ws: dict, qfa_v: dict,
                history: pd.DataFrame, evals_min: float, recal_n: int) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    mins = minutes_table(history)
    fp32_min = mins[mins.phase != "lsq"].minutes.sum()
    sandwich_lr = next(p.cfg.lr for p in plan_.phases if p.kind == "sandwich")
    return {"sn_init": plan_.init, "sn_recipe": " + ".join(plan_.recipe),
            "sn_shortcut": plan_.shortcut,
            "sn_fp32_minutes": f"{fp32_min / max(1, len(plan_.spaces)):.1f}",
            "sn_lr": f"{cfg.lr:g}",
            "sn_sandwich_lr": f"{sandwich_lr:g}",
            "sn_lsq_epochs": str(cfg.lsq_epochs),
            "sn_lsq_images": f"{cfg.lsq_train_images:,}" if cfg.lsq_train_images else "all",
            "sn_recal": str(recal_n), "sn_n_random": str(cfg.n_random),
            "sn_window": (f"{fig1['window']['low']:.3f}-{fig1['window']['high']:.3f} ms"
                          if fig1["window"]["common"] else
                          "none: the spaces' predicted INT8 latencies do not overlap, so each "
                          "space shows its subnets nearest the pools' median latency"),
            "sn_fig1_verdict": fig1["verdict"]["verdict"],
            "sn_fig1_result": _difference_text(fig1["verdict"]),
            "sn_ws_all": _tau_text(ws["all"]), "sn_ws_window": _tau_text(ws["window"]),
            "sn_ws_verdict": ws["verdict"], "sn_qfa_verdict": qfa_v["verdict"],
            "sn_evals_min": f"{evals_min:.1f}",
            "sn_standalone": (f"{cfg.standalone_epochs} epochs on "
                              f"{cfg.standalone_images:,} images"
                              if cfg.standalone_images else f"{cfg.standalone_epochs} epochs")
                             + f" in batches of {cfg.standalone_batch_size}",
            "sn_fig1_pool": f"{cfg.fig1_pool:,}", "sn_fig1_subnets": str(cfg.fig1_subnets),
            "sn_pool_medians": ", ".join(f"{k} {float(p.int8_ms.median()):.3f} ms"
                                         for k, p in fig1["pools"].items())}
