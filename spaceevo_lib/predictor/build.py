"""A latency predictor for one device and hyperspace: sample, measure, fit, validate.

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

How much is sampled and measured is a :class:`PredictorSettings` (one per scale in the
predictor chapter). Everything measured is checkpointed in the run (``units-<device>``,
``wholes-<device>``...), so a rerun reuses it and an interrupted run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..latency.jobs import run_jobs
from ..latency.protocol import Protocol, latency_column
from ..space.encoding import min_subnet, random_space
from ..space.hyperspace import as_hyperspace
from .model import (PRECISIONS, LatencyPredictor, best_family, compare_regressors,
                    error_metrics, frame_units)
from .sampling import (Measurer, located_units, neighbours, random_subnets,
                       range_corners, seqnets)
from .validation import (additivity_table, error_sources, metrics_table, most_repeatable,
                         repeatability_table, validation_table)

ROLES = ("additivity", "train", "validation")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictorSettings:
    """How much one predictor samples and measures (the predictor chapter keeps one per scale).

    ``additivity_subnets`` random subnets are measured whole and block by block;
    ``rounds`` of adaptive sampling each measure ``probe_units`` new random blocks and up to
    ``refine_units`` around the worst-predicted ones; with ``range_corners`` the first round's
    probe also holds every block type at each stage's extreme widths and sides
    (:func:`~.sampling.range_corners`); ``train_subnets`` whole networks fit the
    composition; ``validation_subnets`` held-out networks (the published SEQnets of the
    hyperspace first if ``include_seqnets``, then random ones) plus the torchvision
    ``baselines`` validate it. ``regressor`` and ``stat`` are a family and a statistic, or
    ``auto`` (chosen by cross-validation and by split-half repeatability)."""

    additivity_subnets: int = 6
    rounds: int = 2
    probe_units: int = 30
    refine_units: int = 20
    range_corners: bool = True
    train_subnets: int = 30
    validation_subnets: int = 40
    include_seqnets: bool = True
    baselines: tuple[str, ...] = ("mobilenet_v2",)
    regressor: str = "auto"
    stat: str = "auto"


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


def build_predictor(device: str, hyperspace: str, run, images: np.ndarray,
                    settings: PredictorSettings = PredictorSettings(), *,
                    protocol: Protocol = Protocol(), whole_protocol: Protocol | None = None,
                    workers: int = 0, seed: int = 0, device_options: dict | None = None,
                    progress: bool = True, keep_models: bool = False,
                    table_suffix: str = "") -> PredictorResult:
    """Sample, measure, fit and validate the predictor of ``device`` for ``hyperspace``.

    ``settings`` says how much (:class:`PredictorSettings`). Torchvision baselines are built
    at the hyperspace's largest resolution, with its stem stride and class count. Sampling
    streams are seeded separately, so adding adaptive rounds never changes the validation
    networks. ``table_suffix`` keeps the tables of two hyperspaces of one device apart in one
    run. ``keep_models`` keeps the compiled whole networks (to time them again with another
    protocol).

    Blocks are timed with ``protocol`` at half its visits (many, cheap, training data whose
    errors average out in a network's sum); whole networks, the ground truth, with
    ``whole_protocol`` (default: ``protocol``). The predictor chapter gives wholes longer
    visits: at the training scale 8 visits of 20 ms left the two halves of ORT FP32 networks
    agreeing within +-10 % for fewer of them than 50 ms visits did.
    """
    st = settings
    stat, regressor = st.stat, st.regressor
    additivity_subnets, rounds, probe_units = st.additivity_subnets, st.rounds, st.probe_units
    refine_units, train_subnets = st.refine_units, st.train_subnets
    validation_subnets, include_seqnets, baselines = (st.validation_subnets,
                                                      st.include_seqnets, st.baselines)
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
    units_df = mu.units([u for u, _, _ in located], table=f"units{sfx}").assign(
        sampled="additivity")

    family = "kernel+gbr" if regressor == "auto" else regressor
    # 2. adaptive rounds (unit-level: no whole network is needed to see where blocks are off)
    round_rows = []
    for r in range(1, rounds + 1):
        pred = LatencyPredictor(device, hs.name, family, seed, stat=sample_stat).fit(units_df)
        known = set(frame_units(units_df))
        pool = [x for x in located_units(random_subnets(hs, 8, rng_ad)) if x[0] not in known]
        pick = rng_ad.permutation(len(pool))[:probe_units]
        corners = ([x for x in located_units(range_corners(hs)) if x[0] not in known]
                   if r == 1 and st.range_corners else [])
        probe = list({u: (u, sp, stage) for u, sp, stage
                      in corners + [pool[i] for i in pick]}.values())
        probe_df = mu.units([u for u, _, _ in probe], table=f"units{sfx}")
        corner_set = {u for u, _, _ in corners}
        probe_df["sampled"] = ["range" if u in corner_set else "probe"
                               for u in frame_units(probe_df)]
        lat = dict(zip(frame_units(probe_df), probe_df[latency_column("int8", sample_stat)]))
        err = np.array([abs(pred.predict_units([u], "int8")[0] / lat[u] - 1) for u, _, _ in probe])
        worst = [probe[i] for i in np.argsort(-err)[:max(1, len(probe) // 4)]]
        known |= set(lat)
        new: list = []
        per = max(1, refine_units // max(1, len(worst)))
        for u, sp, stage in worst:
            if stage != "head":
                new += neighbours(sp, stage, u.code, rng_ad, per, known | set(new))
        refine_df = (mu.units(new[:refine_units], table=f"units{sfx}") if new
                     else probe_df.iloc[:0]).assign(sampled="refine")
        units_df = pd.concat([units_df, probe_df, refine_df], ignore_index=True)
        units_df = units_df.drop_duplicates("key").reset_index(drop=True)
        in_corner = np.array([u in corner_set for u, _, _ in probe], bool)
        round_rows.append({"round": r, "probe_units": len(probe_df),
                           "range_units": int(in_corner.sum()),
                           "probe_rmspe_pct": float(100 * np.sqrt(np.mean(err ** 2))),
                           "probe_within_10pct": float(100 * np.mean(err <= 0.10)),
                           "range_rmspe_pct": (float(100 * np.sqrt(np.mean(err[in_corner] ** 2)))
                                               if in_corner.any() else float("nan")),
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
    if (units_df.sampled == "range").any():
        sources = pd.concat([without_range_corners(units_df, fit_df, val_df, repeat, additivity,
                                                   family, seed, stat, device, hs.name),
                             sources.assign(units="with range corners")], ignore_index=True)
    validation["hyperspace"] = hs.name
    return PredictorResult(predictor, units_df, wholes, additivity, pd.DataFrame(round_rows),
                           comparison, validation, metrics, repeat, sources)


def without_range_corners(units_df: pd.DataFrame, fit_df: pd.DataFrame, val_df: pd.DataFrame,
                          repeat: pd.DataFrame, additivity: pd.DataFrame, family: str, seed: int,
                          stat: str, device: str, hyperspace: str) -> pd.DataFrame:
    """The error sources of the same predictor fitted without the range corners' units (the
    same measurements otherwise: "before" beside :func:`build_predictor`'s "after"), plus how
    far off those blocks are when the regressors never saw them (extrapolation)."""
    base = units_df[units_df.sampled != "range"]
    corners = units_df[units_df.sampled == "range"]
    comparison = compare_regressors(base, families=(family,), seed=seed, stat=stat)
    fits = {kind: LatencyPredictor(device, hyperspace, family, seed, stat=stat,
                                   composition=kind).fit(base, fit_df)
            for kind in ("learned", "scalar")}
    metrics = pd.concat([metrics_table(validation_table(p, val_df), device).assign(composition=k)
                         for k, p in fits.items()], ignore_index=True)
    sources = error_sources(repeat[repeat.used], comparison, additivity, metrics, device,
                            hyperspace)
    units = frame_units(corners)
    rows = []
    for p in PRECISIONS:
        m = error_metrics(fits["learned"].predict_units(units, p),
                          corners[latency_column(p, stat)].to_numpy(float))
        rows.append({"device": device, "hyperspace": hyperspace, "precision": p,
                     "source": "range-corner blocks, predicted without them",
                     "within_10pct": m["within_10pct"], "rmspe_pct": m["rmspe_pct"]})
    return pd.concat([sources, pd.DataFrame(rows)], ignore_index=True).assign(
        units="without range corners")


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
    return run_jobs(jobs, m.images, m.run, f"{table}-{m.device}", m.protocol, m.workers, m.seed,
                    keep_models=True, progress=m.progress)
