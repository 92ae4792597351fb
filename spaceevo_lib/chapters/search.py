"""The chapter "SEQnet search and Table 1": the best subnet of each trained supernet under INT8
latency limits set by MobileNetV3 on this host, deployed as INT8 files beside baselines trained
on the INT8 chapter's recipe, and Table 1 measured from those files.

The machinery is :mod:`spaceevo_lib.search.subnets` (the evolutionary search, random sampling,
the fitness cache) and :mod:`spaceevo_lib.supernet` (evaluation with inherited weights, the
deployed subnet); this module decides the limits and windows, the baselines and the control,
what each table shows, and the chapter's records.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import config
from .._io import stable_hash
from ..data.paper import paper_table1
from ..latency.protocol import Protocol
from ..nn.flops import count_macs, count_params
from ..nn.subnet import build_subnet
from ..quant.deploy import copy_deployed, evaluate_file, timed_files
from ..search.subnets import (FitnessCache, NoValidSubnetError, SubnetSearchConfig,
                              random_subnets, subnet_search)
from ..space import SpaceChoice, Subnet, max_subnet, min_subnet
from ..store import MissingResultError, record
from ..supernet.deploy import subnet_files
from ..supernet.evaluation import EVALUATION_FORM, subnet_accuracy
from ..train.config import TrainConfig
from ..train.data import TrainingData, balanced_loader, load_training_data
from ..train.networks import build_network
from ..train.recipes import train_fp32, train_lsq
from . import int8 as int8_chapter
from . import predictor as predictor_chapter
from . import supernet as supernet_chapter

#: The one deployed route per device every row of Table 1 takes: the learned-scale QDQ file on
#: the VNNI CPU (the INT8 chapter's rule: it computes what the fake-quant network computes),
#: post-training INT8 on TFLite (the paper's Pixel 4 setting).
ROUTE = {"ort-vnni": "ort-lsq-qdq", "tflite": "tflite-ptq"}
#: The latency limits, by the INT8 latency of these networks on this host (as Table 1), then
#: one larger limit; SEQnet-A<i> is the best subnet under limit i.
LIMIT_NETWORKS = ("mobilenet_v3_small", "mobilenet_v3_large")
EVOLVED = "evolved-ort-vnni"
#: Candidates drawn (and priced) to find one valid new subnet before giving up.
MAX_TRIES = 4000
#: The study's goal for this chapter (its issue, fixed before any result; not a paper claim):
#: on the VNNI CPU, SEQnet-A0 at least as accurate in INT8 as MobileNetV3-Small at no more INT8
#: latency, with an INT8 speedup of at least 1.5x where MobileNetV3-Small's stays at or below
#: 1.1x.
GOAL = {"device": "ort-vnni", "seqnet": "SEQnet-A0", "baseline": "mobilenet_v3_small",
        "seqnet_speedup_min": 1.5, "baseline_speedup_max": 1.1}
#: The control row: SEQnet-A0's architecture trained alone on the baselines' recipe.
CONTROL = "SEQnet-A0-alone"
#: The goal's parts asked of the control: the architecture on equal training, apart from the
#: supernet's short training (same bars, checked the same way).
CONTROL_GOAL = {**GOAL, "seqnet": CONTROL}


class Clock:
    """Wall minutes per step of the chapter, so that its page says where its minutes went:
    ``with clock("search"): ...``."""

    def __init__(self) -> None:
        self.minutes: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.minutes[step] = self.minutes.get(step, 0.0) + (time.perf_counter() - t0) / 60

    def table(self) -> pd.DataFrame:
        t = pd.DataFrame({"step": list(self.minutes), "minutes": list(self.minutes.values())})
        return pd.concat([t, pd.DataFrame([{"step": "total", "minutes": t.minutes.sum()}])],
                         ignore_index=True)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SearchPlan:
    """What the chapter's parameters decide, validated before any heavy work."""

    spaces: dict  # label -> SpaceChoice, the supernet chapter's
    search_devices: tuple  # devices whose limits the supernets are searched under
    table_devices: tuple  # devices of Table 1
    search: SubnetSearchConfig
    window_fraction: float  # d = fraction * c
    larger_limit: float  # the last limit: this times the largest network limit
    compare_seeds: int
    fitness_images: int
    baselines: tuple
    control: bool
    fp32: TrainConfig  # the INT8 chapter's baseline recipe
    lsq: TrainConfig
    int8_params: dict
    protocol: Protocol

    @property
    def hyperspace(self) -> str:
        """The hyperspace of the searched spaces (one scale, checked by the supernet chapter)."""
        return next(iter(self.spaces.values())).hyperspace


def plan(cfg, root: Path | None = None) -> SearchPlan:
    """The chapter's plan: the supernet chapter's spaces, the INT8 chapter's training recipe
    (read from their runs at the same profile) and this chapter's search sizes."""
    sn = supernet_chapter.load_results(cfg.profile, root)
    trained = sn.spaces()
    spaces = {}
    for label in cfg.spaces.split(","):
        if label not in trained:
            raise MissingResultError(
                f"the supernet chapter at {cfg.profile} trained {', '.join(trained)}, not "
                f"{label}: rerun it with -p spaces including {label}")
        spaces[label] = trained[label]
    if EVOLVED not in spaces:
        raise ValueError(f"spaces must include {EVOLVED} (the SEQnets' space)")
    off_table = set(cfg.search_devices.split(",")) - set(cfg.table_devices.split(","))
    if off_table:
        raise ValueError(f"search_devices {', '.join(sorted(off_table))} must be among "
                         f"table_devices ({cfg.table_devices}): the limits are read from "
                         "the baselines' files there")
    int8 = int8_chapter.load_results(cfg.profile, root)
    int8_cfg = config.chapter_config("int8", **int8.params)
    int8_plan = int8_chapter.plan(int8_cfg)
    if "mobilenet_v3_small" not in int8_plan.networks:
        raise MissingResultError("the INT8 chapter did not train mobilenet_v3_small "
                                 "(networks all needed)")
    search = SubnetSearchConfig(population=cfg.population, generations=cfg.generations,
                                parents=cfg.parents, mutations=cfg.mutations,
                                crossovers=cfg.crossovers, mutate_prob=cfg.mutate_prob,
                                resolution_prob=0.0, max_tries=MAX_TRIES, seed=cfg.seed)
    return SearchPlan(spaces=spaces, search_devices=tuple(cfg.search_devices.split(",")),
                      table_devices=tuple(cfg.table_devices.split(",")), search=search,
                      window_fraction=cfg.window_fraction, larger_limit=cfg.larger_limit,
                      compare_seeds=cfg.compare_seeds, fitness_images=cfg.fitness_images,
                      baselines=tuple(cfg.baselines.split(",")), control=cfg.control,
                      fp32=int8_plan.fp32["mobilenet_v3_small"], lsq=int8_plan.lsq,
                      int8_params=int8.params,
                      protocol=Protocol(visits=cfg.visits, budget_ms=cfg.budget_ms))


def search_resolution(plan_: SearchPlan) -> int:
    """The one resolution subnets are searched at: the images' side (32 px at the training
    scale), so that each deployed file takes the test images as they are (a subnet at 28 px
    would need a resize in its file that matches the supernet's; the paper draws 192-224)."""
    sides = {max(sp.spec.resolutions) for sp in plan_.spaces.values()}
    if len(sides) != 1:
        raise ValueError(f"the spaces are of different scales ({sorted(sides)} px)")
    return sides.pop()


def supernet_results(profile: str, root: Path | None = None):
    """The supernet chapter's trained supernets, spaces and data at ``profile``."""
    return supernet_chapter.load_results(profile, root)


def predictors(plan_: SearchPlan, profile: str) -> dict:
    """The INT8 predictor of each search device for the spaces' hyperspace (the predictor
    chapter's: the device's own, or its cross target, e.g. tflite's of ``onnxw-train``); a
    device without one stops here with what to run."""
    hs = plan_.hyperspace
    out = {}
    for device in plan_.search_devices:
        try:
            out[device] = predictor_chapter.load_predictor(device, "train", profile,
                                                           hyperspace=hs)
        except FileNotFoundError as e:
            family = hs.removesuffix("-train")
            raise MissingResultError(
                f"the predictor chapter has no {device} predictor of {hs}: search under "
                f"{device} limits needs one (rerun it with -p cross_targets "
                f"{device}:{family}). {e}") from None
    return out


# ----------------------------------------------------------------------------- baselines


def recipe_data(plan_: SearchPlan, data: TrainingData, dataset: str) -> TrainingData:
    """The INT8 chapter's training data (its split and augmentation) with this chapter's test
    images and calibration images, so every row of Table 1 is measured on the same images."""
    p = plan_.int8_params
    return load_training_data(p["resolution"], plan_.lsq, test_images=len(data.y_test),
                              calibration_images=p["calibration_images"], dataset=dataset)


def trained_network(name: str, plan_: SearchPlan, data: TrainingData, run,
                    arch_name: str | None = None) -> tuple:
    """``name`` trained on the INT8 chapter's recipe (FP32, then LSQ+) in this chapter's run
    (resuming): (FP32 network, LSQ+ network, minutes). ``arch_name``: a subnet as
    ``<space>:<subnet>`` (the control row; its checkpoints carry a digest of it, so that
    another SEQnet-A0 trains afresh)."""
    p = plan_.int8_params
    model, arch = build_network(arch_name or name, p["resolution"], data.n_classes,
                                p["hyperspace"])
    stem = name if arch_name is None else f"{name}-{stable_hash(arch_name)[:10]}"
    fp32_cfg, lsq_cfg = plan_.fp32, plan_.lsq  # the same recipe (and layout) for all
    h32 = train_fp32(model, arch, fp32_cfg, data, run.path / f"{stem}-fp32.pt",
                     progress=False)
    q, h8, _ = train_lsq(model, arch, lsq_cfg, data, run.path / f"{stem}-lsq.pt",
                         per_channel=p["per_channel"], progress=False)
    return model.eval(), q, float((h32.seconds.sum() + h8.seconds.sum()) / 60)


def baselines(plan_: SearchPlan, data: TrainingData, run, profile: str) -> dict:
    """Every baseline: MobileNetV3-Small from the INT8 chapter (its checkpoints), the others
    trained here on the same recipe. {name: (FP32, LSQ+, training minutes, where)}."""
    int8 = int8_chapter.load_results(profile)
    out = {}
    for name in plan_.baselines:
        if name == "mobilenet_v3_small":
            fp32, q, _ = int8.network(name)
            out[name] = (fp32, q, int8.training_minutes(name), "the INT8 chapter")
        else:
            fp32, q, minutes = trained_network(name, plan_, data, run)
            out[name] = (fp32, q, minutes, "this chapter")
    return out


def deployed_networks(nets: dict, data: TrainingData, devices, out_dir: Path,
                      profile: str | None = None) -> dict:
    """Each network's files on every device's route (the INT8 chapter's deployment); a
    network of the INT8 chapter (``profile`` given) takes that chapter's own files, copied."""
    routes = [ROUTE[d] for d in devices]
    out = {}
    for name, v in nets.items():
        if profile is not None and v[3] == "the INT8 chapter":
            src = int8_chapter.load_results(profile).path / "artifacts"
            out[name] = [copy_deployed(r, name, src, out_dir) for r in routes]
        else:
            out[name] = int8_chapter.deploy_all(name, v[0], v[1], data, out_dir, routes)
    return out


def latency_of(files: dict, data: TrainingData, protocol: Protocol, seed: int, run,
               name: str) -> pd.DataFrame:
    """Every file pair timed together (interleaved visits); one row per (network, device)."""
    flat = [(net, d) for net, ds in files.items() for d in ds]
    lat = timed_files([d for _, d in flat], data.calibration, protocol, seed, run, name=name)
    return lat.assign(network=[net for net, _ in flat])


def limits_table(baseline_latency: pd.DataFrame, devices, larger: float) -> pd.DataFrame:
    """Per search device, the limits c (ms): the INT8 latency of each of
    :data:`LIMIT_NETWORKS` measured from its file on this host, then ``larger`` times the
    largest; ``limit`` names them A0, A1, ..."""
    rows = []
    for device in devices:
        lat = baseline_latency[baseline_latency.device == device].set_index("network")
        cs = [(f"INT8 latency of {n}", float(lat.int8_median_of_min_ms[n]))
              for n in LIMIT_NETWORKS if n in lat.index]
        if not cs:
            raise MissingResultError(f"no baseline file on {device} to set limits from")
        cs.append((f"{larger:g} x the largest above", larger * max(c for _, c in cs)))
        rows += [{"device": device, "limit": f"A{i}", "rule": rule, "c_ms": c}
                 for i, (rule, c) in enumerate(cs)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the search


def window_of(c: float, fraction: float, fastest: float, slowest: float) -> dict:
    """The window [c - d, c] (d = fraction * c) a subnet's predicted latency must fall in.
    When the space's largest subnet is faster than c - d, the window ends at that subnet
    instead (the best the space offers under c; several limits may then share a window);
    when its smallest is slower than c, no subnet meets the limit (``window`` None)."""
    if fastest > c:
        return {"low": np.nan, "high": np.nan, "note": "no subnet meets the limit"}
    if slowest < c * (1 - fraction):
        return {"low": slowest * (1 - fraction), "high": slowest,
                "note": "every subnet is faster than c - d: the window ends at the largest"}
    return {"low": c * (1 - fraction), "high": c, "note": ""}


def ends_of(space: SpaceChoice, resolution: int) -> list[Subnet]:
    """The space's smallest and largest subnets at ``resolution``."""
    return [replace(f(space.hyperspace, space), resolution=resolution)
            for f in (min_subnet, max_subnet)]


def windows_table(plan_: SearchPlan, limits: pd.DataFrame, preds: dict,
                  resolution: int) -> pd.DataFrame:
    """Every (device, space, limit) search: its window from the space's smallest and largest
    subnets' predicted latency at the search resolution."""
    rows = []
    for r in limits.itertuples():
        if r.device not in preds:
            continue
        for label, sp in plan_.spaces.items():
            fastest, slowest = preds[r.device].predict(ends_of(sp, resolution), "int8",
                                                       space=sp)
            rows.append({"device": r.device, "space": label, "limit": r.limit, "c_ms": r.c_ms,
                         "fastest_ms": float(fastest), "slowest_ms": float(slowest),
                         **window_of(r.c_ms, plan_.window_fraction, float(fastest),
                                     float(slowest))})
    return pd.DataFrame(rows)


def fitness_cache(run, label: str, lsq, digest: str, data: TrainingData, split: dict,
                  fitness_images: int) -> FitnessCache:
    """INT8 fake-quant top-1 on ``fitness_images`` of the held-out split (0: all), class-
    balanced (the split is sorted by class; inherited weights, BN re-calibrated on the
    supernet chapter's training images), cached on disk for every limit and device; keyed by
    the LSQ+ checkpoint, the split (``split``: the supernet chapter's ``valid_size`` and
    ``seed``) and the images."""
    recal = torch.from_numpy(data.calibration)
    loader = balanced_loader(data.loaders["valid"], fitness_images, split.get("seed", 0))
    n = len(loader.dataset)

    def fitness(sub: Subnet) -> float:
        return subnet_accuracy(lsq, sub, recal, loader)["top1"]

    key = {"lsq_checkpoint_sha256": digest, "fitness_images": n,
           "fitness_set": "class-balanced", "recal_images": int(len(recal)),
           "evaluation": EVALUATION_FORM, **split}
    return FitnessCache(run.path / f"fitness-{label}.json", key, fitness)


def search_all(plan_: SearchPlan, windows: pd.DataFrame, caches: dict, preds: dict,
               resolution: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One search per row of ``windows`` with a window (seeded alike, sharing each space's
    fitness cache): (the best subnet of each, every search's history)."""
    best, histories = [], []
    for w in windows.itertuples():
        row = {"device": w.device, "space": w.space, "limit": w.limit, "subnet": None,
               "valid_top1_int8": np.nan, "int8_ms_predicted": np.nan, "evaluations": 0,
               "minutes": 0.0, "note": w.note}
        if np.isnan(w.low):
            best.append(row)
            continue
        sp = plan_.spaces[w.space]
        cache = caches[w.space]
        before, t0 = cache.new, time.perf_counter()
        try:
            res = subnet_search(sp, cache, _pricer(preds[w.device], sp), (w.low, w.high),
                                plan_.search, resolutions=(resolution,),
                                start_with=ends_of(sp, resolution))
        except NoValidSubnetError:
            # between the space's smallest and largest subnets, yet too rare to draw
            best.append({**row, "note": f"no subnet found in the window in "
                                        f"{plan_.search.max_tries:,} draws"})
            continue
        top = res.top(1).iloc[0]
        best.append({**row, "subnet": top.encoding, "valid_top1_int8": float(top.score),
                     "int8_ms_predicted": float(top.latency_ms),
                     "evaluations": cache.new - before,
                     "minutes": (time.perf_counter() - t0) / 60})
        histories.append(res.history.assign(device=w.device, space=w.space, limit=w.limit))
    return pd.DataFrame(best), pd.concat(histories, ignore_index=True) if histories else \
        pd.DataFrame()


def _pricer(predictor, space: SpaceChoice):
    return lambda subs: predictor.predict(subs, "int8", space=space)


def search_vs_random(plan_: SearchPlan, windows: pd.DataFrame, best: pd.DataFrame,
                     caches: dict, preds: dict, resolution: int) -> pd.DataFrame:
    """The evolved space's search against random valid subnets at the same number of
    evaluations, one row per seed (the best held-out fitness of each), at the first window in
    which :func:`search_all` found an evolved-space subnet (``best``) and random draws find
    valid subnets too; a window whose subnets are too rare to draw is passed over (random
    sampling has nothing to compare there)."""
    found = best[(best.space == EVOLVED) & best.subnet.notna()][["device", "limit"]]
    candidates = windows[(windows.space == EVOLVED) & windows.low.notna()].merge(found)
    sp, cache = plan_.spaces[EVOLVED], caches[EVOLVED]
    for w in candidates.itertuples():
        price, win = _pricer(preds[w.device], sp), (w.low, w.high)
        rows = []
        try:
            for seed in range(plan_.compare_seeds):
                cfg = replace(plan_.search, seed=plan_.search.seed + seed)
                s = subnet_search(sp, cache, price, win, cfg, resolutions=(resolution,))
                r = random_subnets(sp, cache, price, win, len(s.history), seed=cfg.seed,
                                   resolutions=(resolution,), max_tries=cfg.max_tries)
                rows.append({"device": w.device, "limit": w.limit, "seed": cfg.seed,
                             "search_best": s.best_score, "random_best": r.best_score,
                             "gain": s.best_score - r.best_score,
                             "evaluations": len(s.history)})
        except NoValidSubnetError:
            continue
        return pd.DataFrame(rows)
    return pd.DataFrame(columns=["device", "limit", "seed", "search_best", "random_best",
                                 "gain", "evaluations"])


def search_verdict(table: pd.DataFrame) -> str:
    """The search beats random sampling when its mean gain over the seeds is above 0 and
    it loses on no seed."""
    if not len(table):
        return "not tested: no window in which random draws find an evolved-space subnet"
    if table.gain.mean() > 0 and (table.gain >= 0).all():
        return "beats random sampling"
    return "does not beat random sampling"


# ----------------------------------------------------------------------------- SEQnets


def listed_on(plan_: SearchPlan) -> dict:
    """Table 1 device -> the search device whose found subnets its table lists: its own
    search, else the first search device's (e.g. the ort-vnni SEQnets measured on TFLite)."""
    return {d: d if d in plan_.search_devices else plan_.search_devices[0]
            for d in plan_.table_devices}


def seqnets(best: pd.DataFrame, first_device: str) -> pd.DataFrame:
    """The found subnets to deploy, one per distinct (search device, space, subnet), named
    after the first limit that found them: ``SEQnet-A<i>`` in the evolved space,
    ``mbv3-style-A<i>`` in the all-MBv3Res one, as each device's Table 1 names them; ``key``
    tells them apart across devices (the name itself under ``first_device``, else
    ``<name>-<device>``); ``kind`` is Table 1's (``SEQnet`` or ``<space> subnet``)."""
    found = best[best.subnet.notna()].drop_duplicates(["device", "space", "subnet"])
    kinds = ["SEQnet" if s == EVOLVED else f"{s} subnet" for s in found.space]
    names = [("SEQnet" if s == EVOLVED else s) + "-" + lim
             for s, lim in zip(found.space, found.limit)]
    keys = [n if d == first_device else f"{n}-{d}" for n, d in zip(names, found.device)]
    return found.assign(model=names, key=keys, kind=kinds).reset_index(drop=True)


def deploy_found(found: pd.DataFrame, supernets: dict, data: TrainingData, listed: dict,
                 out_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Each found subnet deployed (nothing retrained) on the Table 1 devices that list its
    search device's finds (``listed``: :func:`listed_on`), with its test top-1 in FP32 and
    INT8 fake-quant: (table, {key: files})."""
    recal = torch.from_numpy(data.calibration)
    rows, files = [], {}
    for r in found.itertuples():
        devices = [t for t, s in listed.items() if s == r.device]  # plan() keeps it non-empty
        fp32, lsq = supernets[r.space][:2]
        files[r.key] = subnet_files(fp32, lsq, r.subnet, recal, data.calibration,
                                    data.preprocessing, [ROUTE[d] for d in devices],
                                    out_dir, r.key)
        rows.append({"model": r.model, "searched_for": r.device, "space": r.space,
                     "limit": r.limit, "subnet": r.subnet,
                     "top1_int8_fakequant": subnet_accuracy(lsq, r.subnet, recal,
                                                            data.loaders["test"])["top1"],
                     "top1_fp32_supernet": subnet_accuracy(fp32, r.subnet, recal,
                                                           data.loaders["test"])["top1"],
                     "int8_ms_predicted": r.int8_ms_predicted})
    return pd.DataFrame(rows), files


def control(plan_: SearchPlan, found: pd.DataFrame, data: TrainingData, run) -> dict:
    """SEQnet-A0's architecture trained alone on the INT8 chapter's recipe (the control row):
    {CONTROL: (FP32, LSQ+, minutes, where)}, or {} without a SEQnet-A0 or when the
    plan leaves it out."""
    a0 = found[(found.model == "SEQnet-A0") & (found.device == plan_.search_devices[0])]
    if not plan_.control or not len(a0):
        return {}
    arch = f"{plan_.spaces[EVOLVED].encode()}:{a0.subnet.iloc[0]}"
    fp32, q, minutes = trained_network(CONTROL, plan_, data, run, arch)
    return {CONTROL: (fp32, q, minutes, "this chapter")}


# ----------------------------------------------------------------------------- Table 1


def network_size(model, resolution: int) -> dict:
    """MFLOPs (multiply-accumulates, classifier included) and millions of parameters."""
    return {"mflops": count_macs(model, (1, 3, resolution, resolution)) / 1e6,
            "params_m": count_params(model) / 1e6}


@dataclass
class Rows:
    """Everything Table 1 lists per model, gathered as the chapter goes."""

    files: dict  # model -> [Deployed], one per device
    kind: dict  # model -> baseline | SEQnet | mbv3-style subnet | control
    minutes: dict  # model -> training minutes
    size: dict  # model -> network_size
    predicted: dict  # (model, device) -> predicted INT8 ms
    name: dict = field(default_factory=dict)  # model -> its name in Table 1, where it differs

    @classmethod
    def of_networks(cls, nets: dict, files: dict, kind: str, resolution: int) -> "Rows":
        """Rows of trained networks ({name: (FP32, LSQ+, minutes, ...)})."""
        return cls(files={n: files[n] for n in nets}, kind=dict.fromkeys(nets, kind),
                   minutes={n: v[2] for n, v in nets.items()},
                   size={n: network_size(v[0], resolution) for n, v in nets.items()},
                   predicted={})

    def __add__(self, other: "Rows") -> "Rows":
        return Rows(*({**getattr(self, f), **getattr(other, f)}
                      for f in ("files", "kind", "minutes", "size", "predicted", "name")))


def found_rows(found: pd.DataFrame, files: dict, plan_: SearchPlan, sn_minutes: dict,
                   resolution: int) -> Rows:
    """Rows of the deployed found subnets (keyed by ``key``, named by ``model``): their
    training minutes are their supernet's (all of its subnets share them), sizes from the
    static subnet, predicted latency on the search device."""
    kind, minutes, size, predicted, name = {}, {}, {}, {}, {}
    for r in found.itertuples():
        kind[r.key], name[r.key] = r.kind, r.model
        minutes[r.key] = sn_minutes[r.space]
        size[r.key] = network_size(build_subnet(plan_.spaces[r.space], r.subnet).eval(),
                                   resolution)
        predicted[(r.key, r.device)] = r.int8_ms_predicted
    return Rows({m: files[m] for m in kind}, kind, minutes, size, predicted, name)


def supernet_minutes(sn) -> dict:
    """Minutes each space's supernet trained for (FP32 and LSQ+), from its chapter's history."""
    h = pd.read_parquet(Path(sn.path) / "history.parquet")
    return (h.groupby("space").seconds.sum() / 60).to_dict()


def table1(rows: Rows, latency: pd.DataFrame, data: TrainingData, run) -> pd.DataFrame:
    """One row per (device, model): top-1 of the FP32 and the INT8 file (on the same test
    images), INT8 and FP32 latency measured from the same files, speedup, MFLOPs, params,
    training minutes, and for found subnets the predicted INT8 latency."""
    out = []
    for model, ds in rows.files.items():
        for d in ds:
            lat = latency[(latency.network == model) & (latency.route == d.route)].iloc[0]
            out.append({
                "device": d.device, "model": rows.name.get(model, model),
                "kind": rows.kind[model],
                "top1_int8": evaluate_file(d.int8_path, data.x_test, data.y_test)["top1"],
                "top1_fp32": evaluate_file(d.fp32_path, data.x_test, data.y_test)["top1"],
                "int8_ms": float(lat.int8_median_of_min_ms),
                "fp32_ms": float(lat.fp32_median_of_min_ms),
                "speedup": float(lat.speedup), "noisy": bool(lat.noisy),
                **rows.size[model], "training_minutes": rows.minutes[model],
                "int8_ms_predicted": rows.predicted.get((model, d.device), np.nan),
                "artifact": str(Path(d.int8_path).relative_to(run.path))})
    table = pd.DataFrame(out)
    return table.sort_values(["device", "int8_ms"], kind="stable").reset_index(drop=True)


#: This host's rows beside the paper's: a found SEQnet-A<i> stands where the paper's
#: SEQnet@<device>-A<i> does.
PAPER_DEVICE = {"ort-vnni": "vnni", "tflite": "pixel4"}


def paper_counterpart(device: str, model: str) -> str:
    if model.startswith("SEQnet-A") and not model.endswith("alone"):
        return f"SEQnet@{PAPER_DEVICE[device]}-{model.split('-', 1)[1]}"
    return model


def beside_paper(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with the paper's INT8 top-1, INT8 latency and speedup of the same row (where
    the paper has one)."""
    paper = paper_rows().rename(columns={"int8_top1": "paper_top1_int8",
                                         "int8_ms": "paper_int8_ms",
                                         "speedup": "paper_speedup", "model": "paper_model"})
    out = table.assign(paper_model=[paper_counterpart(d, m)
                                    for d, m in zip(table.device, table.model)])
    out = out.merge(paper[["device", "paper_model", "paper_top1_int8", "paper_int8_ms",
                           "paper_speedup"]], on=["device", "paper_model"], how="left")
    return out.drop(columns=["paper_model"])


def paper_rows() -> pd.DataFrame:
    """The paper's Table 1 (the reference file), for beside this host's."""
    return paper_table1()


def goal_check(table: pd.DataFrame, goal: dict | None = None) -> pd.DataFrame:
    """The study's goal (:data:`GOAL`), part by part, from Table 1's measured rows: this host's
    value, the bar, and whether it is met; a part whose row is missing is not met ("no row")."""
    g = GOAL if goal is None else goal
    t = table[table.device == g["device"]].set_index("model")
    a0, base = (t.loc[m] if m in t.index else None for m in (g["seqnet"], g["baseline"]))
    s_, b_ = g["seqnet"], g["baseline"]
    parts = [
        (f"{s_} INT8 top-1 >= {b_}'s", "top1_int8", a0, base, lambda a, b: a >= b, "%"),
        (f"{s_} INT8 latency <= {b_}'s", "int8_ms", a0, base, lambda a, b: a <= b, "ms"),
        (f"{s_} INT8 speedup >= {g['seqnet_speedup_min']:g}x", "speedup", a0,
         g["seqnet_speedup_min"], lambda a, b: a >= b, "x"),
        (f"{b_} INT8 speedup <= {g['baseline_speedup_max']:g}x", "speedup", base,
         g["baseline_speedup_max"], lambda a, b: a <= b, "x")]
    rows = []
    for part, col, row, bar, test, unit in parts:
        value = np.nan if row is None else float(row[col])
        bar_value = (np.nan if bar is None else float(bar[col]) if isinstance(bar, pd.Series)
                     else float(bar))
        met = ("no row" if np.isnan(value) or np.isnan(bar_value) else
               "yes" if test(value, bar_value) else "no")
        rows.append({"part": part, "this host": value, "bar": bar_value, "unit": unit,
                     "met": met})
    return pd.DataFrame(rows)


def goal_met(check: pd.DataFrame) -> bool:
    return bool((check.met == "yes").all())


# ----------------------------------------------------------------------------- records


def control_goal_check(table: pd.DataFrame) -> pd.DataFrame | None:
    """The goal's parts for the control row (:data:`CONTROL_GOAL`), or None without it."""
    has = ((table.device == GOAL["device"]) & (table.model == CONTROL)).any()
    return goal_check(table, CONTROL_GOAL) if has else None


def summary_records(table: pd.DataFrame, comparison: pd.DataFrame, verdict: str,
                    goal: pd.DataFrame | None = None,
                    control_goal: pd.DataFrame | None = None) -> list[dict]:
    """``top1_int8/table1/<device>/<model>`` (with its ``artifact``), ``top1_fp32/...``,
    ``int8_ms/...``, ``speedup/...`` (beside the paper's row's speedup) per row of
    :func:`beside_paper`'s table, the search-against-random verdict, and the goal's check
    for SEQnet-A0 (and for the control, where there is one)."""
    out = []
    for r in table.to_dict("records"):
        where = f"table1/{r['device']}/{r['model']}"
        paper = r.get("paper_speedup")
        for name, value, unit in (("top1_int8", r["top1_int8"], "%"),
                                  ("top1_fp32", r["top1_fp32"], "%"),
                                  ("int8_ms", r["int8_ms"], "ms"),
                                  ("speedup", r["speedup"], "x")):
            # only a speedup stands beside the paper's (accuracy and ms are of another
            # dataset and device)
            beside = float(paper) if name == "speedup" and pd.notna(paper) else None
            rec = record(f"{name}/{where}", round(float(value), 3 if unit != "%" else 2), unit,
                         beside)
            if name in ("top1_int8", "int8_ms", "speedup"):
                rec["artifact"] = r["artifact"]
            out.append(rec)
    if len(comparison):
        out.append(record("search_gain_over_random/search/evolved-ort-vnni",
                          round(float(comparison.gain.mean()), 2), "points"))
    out.append(record("verdict/search_beats_random", verdict, "verdict"))
    if goal is not None:
        out.append(record(f"goal_met/table1/{GOAL['device']}/{GOAL['seqnet']}",
                          int(goal_met(goal)), "1 met, 0 not"))
    if control_goal is not None:
        out.append(record(f"goal_met/table1/{GOAL['device']}/{CONTROL}",
                          int(goal_met(control_goal)), "1 met, 0 not"))
    return out


def glue_values(cfg, plan_: SearchPlan, limits: pd.DataFrame, best: pd.DataFrame,
                comparison: pd.DataFrame, verdict: str, goal: pd.DataFrame,
                control_goal: pd.DataFrame | None = None) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    s = plan_.search
    if control_goal is None:
        control = "not asked (no control row in this run)"
    else:
        met = control_goal.met.tolist()
        control = (f"{'met' if goal_met(control_goal) else 'not met'} "
                   f"({met.count('yes')} of {len(met)} parts)")
    first = limits[limits.device == limits.device.iloc[0]]
    return {
        "se_search": f"population {s.population}, {s.generations} generations of "
                     f"{s.mutations} mutations and {s.crossovers} crossovers from the best "
                     f"{s.parents}: up to {s.evaluations} evaluations per search",
        "se_window": f"{plan_.window_fraction:g}",
        "se_limits": ", ".join(f"{r.limit} {r.c_ms:.3f} ms" for r in first.itertuples()),
        "se_fitness_images": f"{cfg.fitness_images or 'all'}",
        "se_evaluations": f"{int(best.evaluations.sum())}",
        "se_search_minutes": f"{best.minutes.sum():.1f}",
        "se_random_verdict": verdict,
        "se_compare_seeds": str(cfg.compare_seeds),
        "se_goal": "met" if goal_met(goal) else "not met",
        "se_goal_control": control,
        "se_goal_bars": f"at least {GOAL['seqnet_speedup_min']:g}x where MobileNetV3-Small's "
                        f"stays at or below {GOAL['baseline_speedup_max']:g}x",
        "se_random_gain": (f"{comparison.gain.mean():+.2f} points over {len(comparison)} "
                           "seeds" if len(comparison) else "not measured"),
        "se_listed": "; ".join(
            f"on {t}, the subnets searched under {t}'s own limits" if t == s_ else
            f"on {t}, the subnets searched under {s_}'s limits (this run searched no {t} "
            f"limits: -p search_devices {s_},{t} needs the predictor chapter's {t} predictor "
            f"of {plan_.hyperspace})"
            for t, s_ in listed_on(plan_).items())}
