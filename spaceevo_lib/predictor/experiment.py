"""The predictor chapter's procedure for one device and hyperspace: sample, measure, fit, validate.

:func:`build_predictor` runs the whole recipe and returns a :class:`PredictorResult` with
every table the chapter shows:

1. the **additivity set**: a few random subnets whose every unit is measured alone;
2. **adaptive sampling** of units (nn-Meter): probe new units, refine around the worst;
3. **whole networks in one batch**: the additivity subnets, the composition's training subnets
   and the held-out validation networks (published SEQnets, random subnets, torchvision
   MobileNetV2) are timed *together*, interleaved, so that no group of them falls into a
   slower phase of the machine than another (the chapter measured that this matters);
4. the ground-truth **statistic**, chosen by how well the two halves of every validation
   network's visits agree (no prediction involved);
5. regressor families cross-validated on units; the predictor fitted on the units and the
   training wholes (eq-composition in :mod:`.model`); validation on the held-out networks, for
   the learned composition and for the one-factor one.

Everything measured is checkpointed in the run (``units-<device>``, ``wholes-<device>``...), so
a rerun reuses it and an interrupted run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..latency.protocol import PRECISIONS, STATS, Protocol, latency_column
from ..space.encoding import SpaceChoice, min_subnet
from ..space.hyperspace import as_hyperspace
from .model import LatencyPredictor, best_family, compare_regressors, error_metrics, frame_units
from .sampling import (Measurer, located_units, neighbours, random_space, random_subnets,
                       seqnets)
from .units import baseline_units, subnet_units

#: The ``space`` of whole-network rows that are torchvision baselines.
BASELINE_SPACE = "torchvision"
ROLES = ("additivity", "train", "validation")

log = logging.getLogger(__name__)


@dataclass
class PredictorResult:
    """What :func:`build_predictor` made for one device and hyperspace."""

    predictor: LatencyPredictor
    units: pd.DataFrame  # every measured unit (training table)
    wholes: pd.DataFrame  # every whole network measured (column role)
    additivity: pd.DataFrame  # per additivity subnet: measured whole vs sum of measured units
    rounds: pd.DataFrame  # per adaptive round: units measured, probe error before refitting
    comparison: pd.DataFrame  # regressor families, cross-validated on units
    validation: pd.DataFrame  # per held-out network and precision: measured vs predicted
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # per precision, composition
    repeatability: pd.DataFrame = field(default_factory=pd.DataFrame)  # split halves
    sources: pd.DataFrame = field(default_factory=pd.DataFrame)  # error sources

    @property
    def scale_label(self) -> str:
        return self.predictor.hyperspace


def network_units(space: str, subnet: str) -> list:
    """Units of a whole-network row: a subnet of a space, or a torchvision baseline (space
    ``torchvision``, subnet ``<name>@r<resolution>[/c<classes>/s<stem stride>]``)."""
    if space == BASELINE_SPACE:
        head, *extra = subnet.split("/")
        name, r = head.rsplit("@r", 1)
        opts = {"n_classes": 1000, "stem_stride": 2}
        for tok in extra:
            opts["n_classes" if tok[0] == "c" else "stem_stride"] = int(tok[1:])
        return baseline_units(name, int(r), **opts)
    return subnet_units(space, subnet)


def additivity_table(units_table: pd.DataFrame, whole: pd.DataFrame, device: str = "",
                     stat: str = "min") -> pd.DataFrame:
    """Per subnet and precision: the measured whole subnet beside the sum of its separately
    measured units (``sum_over_whole`` = 1 means perfectly additive)."""
    units = frame_units(units_table)
    rows = []
    for p in PRECISIONS:
        lat = dict(zip(units, units_table[latency_column(p, stat)]))
        for _, w in whole.iterrows():
            us = subnet_units(w["space"], w["subnet"])
            parts = float(sum(lat[u] for u in us))
            whole_ms = float(w[latency_column(p, stat)])
            rows.append({"device": device, "precision": p, "subnet": w["subnet"],
                         "n_units": len(us), "whole_ms": whole_ms, "sum_ms": parts,
                         "sum_over_whole": parts / whole_ms})
    return pd.DataFrame(rows)


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
    from .units import unit_cost
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


def measure_fusion(devices, run, images: np.ndarray, protocol: Protocol = Protocol(),
                   channels: int = 64, hw: int = 56, workers: int = 0, seed: int = 0,
                   device_options: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Time the fusion probes (:mod:`.fusion`) on every device; returns the verdict table."""
    from ..latency.jobs import run_jobs
    from .fusion import fusion_jobs, fusion_table
    jobs = [j for d in devices
            for j in fusion_jobs(d, channels, hw, protocol, (device_options or {}).get(d))]
    measured = run_jobs(jobs, images, run, "fusion", protocol, workers, seed, progress=progress)
    return fusion_table(measured)


def training_subnets(hyperspace, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """The composition's training networks: random subnets, a quarter of them the *minimum*
    subnet of a random space, so that the fit sees the small end of the range (where the
    per-block isolation cost weighs most) and not only mid-sized networks."""
    hs = as_hyperspace(hyperspace)
    n_min = n // 4
    out = []
    for _ in range(n_min):
        sp = random_space(hs, rng)
        out.append((sp.encode(), min_subnet(hs, sp).encode()))
    return out + random_subnets(hs, n - n_min, rng)


def build_predictor(device: str, hyperspace: str, run, images: np.ndarray, *,
                    protocol: Protocol = Protocol(), whole_protocol: Protocol | None = None,
                    additivity_subnets: int = 6,
                    rounds: int = 2, probe_units: int = 30, refine_units: int = 20,
                    train_subnets: int = 30, validation_subnets: int = 40,
                    include_seqnets: bool = True, baselines: Sequence[str] = ("mobilenet_v2",),
                    regressor: str = "auto", stat: str = "auto", workers: int = 0,
                    seed: int = 0, device_options: dict | None = None, progress: bool = True,
                    keep_models: bool = False, table_suffix: str = "") -> PredictorResult:
    """Sample, measure, fit and validate the predictor of ``device`` for ``hyperspace``.

    The validation set is ``validation_subnets`` subnets in all (the published SEQnets of the
    hyperspace, mapped to its scale, if ``include_seqnets``, and random ones for the rest) plus
    the torchvision ``baselines`` (built at the hyperspace's largest resolution, with its stem
    stride and class count). Sampling streams are seeded separately, so adding adaptive
    rounds never changes the validation networks. ``table_suffix`` keeps the tables of two
    hyperspaces of one device apart in one run. ``keep_models`` keeps the compiled whole
    networks (for the protocol comparison, :func:`protocol_comparison`).

    Blocks are timed with ``protocol`` at half its visits (many, cheap, training data whose
    errors average out in a network's sum); whole networks, the ground truth, with
    ``whole_protocol`` (default: ``protocol``). The chapter gives wholes longer visits: at the
    training scale 8 visits of 20 ms left the two halves of ORT FP32 networks agreeing within
    +-10 % for fewer of them than 50 ms visits did (the chapter's repeatability table shows
    what this run reached).
    """
    if stat != "auto":
        latency_column("fp32", stat)  # validates the statistic before any work
    hs = as_hyperspace(hyperspace)
    sample_stat = "min" if stat == "auto" else stat  # what adaptive sampling looks at
    opts = tuple(sorted((device_options or {}).items()))
    m = Measurer(device, run, images, whole_protocol or protocol, workers, seed, progress, opts)
    mu = Measurer(device, run, images, replace(protocol, visits=max(2, protocol.visits // 2)),
                  workers, seed, progress, opts)
    sfx = table_suffix
    rng_add, rng_val, rng_ad, rng_tr = (np.random.default_rng([seed, i]) for i in (1, 2, 3, 4))

    # validation networks first: they are fixed by the seed and never used for fitting
    val_pairs, val_names = [], []
    if include_seqnets:
        for name, sp, sub in seqnets(hs)[:validation_subnets]:
            val_pairs.append((sp, sub))
            val_names.append(name)
    n_random = max(0, validation_subnets - len(val_pairs))
    val_pairs += random_subnets(hs, n_random, rng_val)
    val_names += ["random"] * n_random
    add_pairs = random_subnets(hs, additivity_subnets, rng_add)
    train_pairs = training_subnets(hs, train_subnets, rng_tr)

    # 1. the additivity set's units
    located = located_units(add_pairs)
    units_df = mu.units([u for u, _, _ in located], table=f"units{sfx}")

    family = "kernel+gbr" if regressor == "auto" else regressor
    # 2. adaptive rounds (unit-level: no whole network is needed to see where blocks are off)
    round_rows = []
    for r in range(1, rounds + 1):
        pred = LatencyPredictor(device, hs.name, family, seed, stat=sample_stat).fit(units_df)
        known = set(frame_units(units_df))
        pool = [x for x in located_units(random_subnets(hs, 8, rng_ad)) if x[0] not in known]
        pick = rng_ad.permutation(len(pool))[:probe_units]
        probe = list({u: (u, sp, st) for u, sp, st in (pool[i] for i in pick)}.values())
        probe_df = mu.units([u for u, _, _ in probe], table=f"units{sfx}")
        lat = dict(zip(frame_units(probe_df), probe_df[latency_column("int8", sample_stat)]))
        err = np.array([abs(pred.predict_units([u], "int8")[0] / lat[u] - 1) for u, _, _ in probe])
        worst = [probe[i] for i in np.argsort(-err)[:max(1, len(probe) // 4)]]
        known |= set(lat)
        new: list = []
        per = max(1, refine_units // max(1, len(worst)))
        for u, sp, st in worst:
            if st != "head":
                new += neighbours(sp, st, u.code, rng_ad, per, known | set(new))
        refine_df = mu.units(new[:refine_units], table=f"units{sfx}") if new else probe_df.iloc[:0]
        units_df = pd.concat([units_df, probe_df, refine_df], ignore_index=True)
        units_df = units_df.drop_duplicates("key").reset_index(drop=True)
        round_rows.append({"round": r, "probe_units": len(probe_df),
                           "probe_rmspe_pct": float(100 * np.sqrt(np.mean(err ** 2))),
                           "probe_within_10pct": float(100 * np.mean(err <= 0.10)),
                           "refined_units": len(refine_df), "total_units": len(units_df)})

    # 3. every whole network in one batch, shuffled so that any group holds every role
    jobs = (m.subnet_jobs(add_pairs, roles=["additivity"] * len(add_pairs))
            + m.subnet_jobs(train_pairs, roles=["train"] * len(train_pairs))
            + m.subnet_jobs(val_pairs, val_names, ["validation"] * len(val_pairs))
            + (m.baseline_jobs(baselines, hs.resolutions[-1], **baseline_build(hs))
               if baselines else []))
    jobs = _dedupe(jobs)
    order = np.random.default_rng([seed, 5]).permutation(len(jobs))
    wholes = m.networks([jobs[i] for i in order], table=f"wholes{sfx}") if keep_models is False \
        else _networks_kept(m, [jobs[i] for i in order], f"wholes{sfx}")
    wholes = wholes.set_index("key").loc[[j.key for j in jobs]].reset_index()
    val_df = wholes[wholes.role == "validation"].reset_index(drop=True)
    fit_df = wholes[wholes.role != "validation"].reset_index(drop=True)

    # 4. the ground truth's statistic, from the agreement of split halves
    repeat = repeatability_table(val_df, device, hs.name)
    if stat == "auto":
        stat = most_repeatable(repeat)
    repeat["used"] = repeat["statistic"] == stat
    add_df = wholes[wholes.role == "additivity"]
    additivity = additivity_table(units_df, add_df, device, stat)
    # 5. regressor family by cross-validation on the blocks, then the final fits
    comparison = compare_regressors(units_df, seed=seed, stat=stat)
    if regressor == "auto":
        family = best_family(comparison)
    predictor = LatencyPredictor(device, hs.name, family, seed, stat=stat).fit(units_df, fit_df)
    scalar = LatencyPredictor(device, hs.name, family, seed, stat=stat,
                              composition="scalar").fit(units_df, fit_df)
    validation = validation_table(predictor, val_df)
    validation_scalar = validation_table(scalar, val_df)
    metrics = pd.concat([metrics_table(validation, device).assign(composition="learned"),
                         metrics_table(validation_scalar, device).assign(composition="scalar")],
                        ignore_index=True).assign(hyperspace=hs.name)
    sources = error_sources(repeat[repeat.used], comparison[comparison.family == family],
                            additivity, metrics, device, hs.name)
    validation["hyperspace"] = hs.name
    return PredictorResult(predictor, units_df, wholes, additivity, pd.DataFrame(round_rows),
                           comparison, validation, metrics, repeat, sources)


def baseline_build(hs) -> dict:
    """How the torchvision baselines are built for a hyperspace: its classes, and the
    training scale's stem stride 1 when its stem has stride 1."""
    stem = hs.stage("first_conv").stride
    return {"n_classes": hs.n_classes, "stem_stride": stem}


def _dedupe(jobs):
    seen, out = set(), []
    for j in jobs:
        if j.key not in seen:
            seen.add(j.key)
            out.append(j)
    return out


def _networks_kept(m: Measurer, jobs, table: str) -> pd.DataFrame:
    from ..latency.jobs import run_jobs
    return run_jobs(jobs, m.images, m.run, f"{table}-{m.device}", m.protocol, m.workers, m.seed,
                    keep_models=True, progress=m.progress)


def validation_table(predictor: LatencyPredictor, measured: pd.DataFrame) -> pd.DataFrame:
    """One row per network and precision: measured and predicted ms, relative error (%)."""
    rows = []
    pairs = list(zip(measured["space"], measured["subnet"]))
    networks = [network_units(sp, sub) for sp, sub in pairs]
    for p in PRECISIONS:
        pred = predictor.predict_unit_lists(networks, p)
        for (sp, sub), name, true, hat, n in zip(
                pairs, measured["name"], measured[latency_column(p, predictor.stat)], pred,
                measured["n_units"]):
            rows.append({"device": predictor.device, "precision": p, "name": name,
                         "space": sp, "subnet": sub, "n_units": int(n),
                         "measured_ms": float(true), "predicted_ms": float(hat),
                         "error_pct": float(100 * (hat / true - 1))})
    return pd.DataFrame(rows)


def repeatability_table(measured: pd.DataFrame, device: str, hyperspace: str = ""
                        ) -> pd.DataFrame:
    """Per precision and statistic (:data:`~spaceevo_lib.latency.protocol.STATS`): how the
    odd visits of every network agree with its even visits, in nn-Meter's metrics (half a as
    truth). Two halves of one measurement spread over the same period are two independent
    measurements: their agreement is what a predictor can be validated to."""
    rows = []
    for p in PRECISIONS:
        for st in STATS:
            a = measured[latency_column(p, st, "a")].to_numpy(float)
            b = measured[latency_column(p, st, "b")].to_numpy(float)
            rows.append({"device": device, "hyperspace": hyperspace, "precision": p,
                         "statistic": st, **error_metrics(b, a)})
    return pd.DataFrame(rows)


def most_repeatable(repeat: pd.DataFrame) -> str:
    """The statistic whose halves agree best: highest mean share within +-5 % over the
    precisions (+-10 % is often 100 % for several), then within +-10 %, then lowest RMSPE."""
    g = repeat.groupby("statistic").agg(w5=("within_5pct", "mean"),
                                        w10=("within_10pct", "mean"),
                                        rmspe=("rmspe_pct", "mean"))
    return str(g.sort_values(["w5", "w10", "rmspe"], ascending=[False, False, True]).index[0])


def metrics_table(validation: pd.DataFrame, device: str) -> pd.DataFrame:
    rows = []
    for p, g in validation.groupby("precision", sort=False):
        rows.append({"device": device, "precision": p,
                     **error_metrics(g["predicted_ms"].to_numpy(), g["measured_ms"].to_numpy())})
    return pd.DataFrame(rows)


def error_sources(repeat: pd.DataFrame, units_cv: pd.DataFrame, additivity: pd.DataFrame,
                  metrics: pd.DataFrame, device: str, hyperspace: str) -> pd.DataFrame:
    """Where a predicted network's error comes from, each as a share within +-10 % and RMSPE:
    the ground truth's own repeatability (split halves), one block predicted alone
    (cross-validated), the sum of *measured* blocks times one factor (the additivity set: what
    composition alone costs), and the held-out networks with one factor and with the learned
    composition."""
    rows = []

    def add(p: str, source: str, within: float, rmspe: float) -> None:
        rows.append({"device": device, "hyperspace": hyperspace, "precision": p,
                     "source": source, "within_10pct": float(within),
                     "rmspe_pct": float(rmspe)})

    for p in PRECISIONS:
        r = repeat[repeat.precision == p].iloc[0]
        add(p, "ground truth: two halves of the visits", r.within_10pct, r.rmspe_pct)
        u = units_cv[units_cv.precision == p].iloc[0]
        add(p, "one block, predicted (cross-validated)", u.unit_within_10pct, u.unit_rmspe_pct)
        a = additivity[additivity.precision == p]["sum_over_whole"].to_numpy()
        if len(a):
            rel = a / np.median(a) - 1
            add(p, "measured blocks x one factor (additivity set)",
                100 * np.mean(np.abs(rel) <= 0.10), 100 * np.sqrt(np.mean(rel ** 2)))
        for kind, label in (("scalar", "held-out networks, one composition factor"),
                            ("learned", "held-out networks, learned composition")):
            mm = metrics[(metrics.precision == p) & (metrics.composition == kind)].iloc[0]
            add(p, label, mm.within_10pct, mm.rmspe_pct)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the protocols


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
    from ..latency.jobs import load_compiled, time_jobs
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
            import subprocess
            import sys
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        return False


__all__ = ["PredictorResult", "additivity_table", "build_predictor", "metrics_table",
           "protocol_comparison", "repeatability_table", "validation_table"]


# ----------------------------------------------------------------------------- chapter helpers


def concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def targets_table(targets: dict[tuple[str, str], str]) -> pd.DataFrame:
    """(device, scale) -> hyperspace of this run, with resolutions and candidate blocks."""
    from ..space import get_hyperspace
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
    from .sampling import random_subnet
    return random_subnet(SpaceChoice.decode(space), np.random.default_rng(seed)).encode()


def demo_predictions(predictor: LatencyPredictor, space: str, subnets) -> pd.DataFrame:
    """Predicted FP32 and INT8 latency and the predicted speedup of a few subnets."""
    from .units import subnet_mflops
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
    import time

    from .sampling import random_subnet
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
