"""The predictor chapter's procedure for one device: sample, measure, fit, validate.

:func:`build_predictor` runs the whole recipe (additivity set -> adaptive sampling rounds ->
regressor comparison -> final fit -> validation on held-out whole subnets) and returns a
:class:`PredictorResult` with every table the chapter shows. Everything measured is
checkpointed in the run (``units-<device>``, ``subnets-<device>`` ... tables), so a rerun
reuses it and an interrupted run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..latency.protocol import Protocol
from ..space.hyperspace import as_hyperspace
from ..latency.jobs import drift_normalized
from .model import (PRECISIONS, STATS, LatencyPredictor, best_family, compare_regressors,
                    error_metrics, frame_units, latency_column)
from .sampling import Measurer, located_units, neighbours, random_subnets, seqnets
from .units import baseline_units, subnet_units

#: The ``space`` of validation rows that are torchvision baselines.
BASELINE_SPACE = "torchvision"

log = logging.getLogger(__name__)


@dataclass
class PredictorResult:
    """What :func:`build_predictor` made for one device."""

    predictor: LatencyPredictor
    units: pd.DataFrame  # every measured unit (training table)
    additivity: pd.DataFrame  # per additivity subnet: measured whole vs sum of measured units
    rounds: pd.DataFrame  # per adaptive round: units measured, probe error before refitting
    comparison: pd.DataFrame  # regressor families, cross-validated on units
    validation: pd.DataFrame  # per held-out subnet and precision: measured vs predicted
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # per precision
    retest: pd.DataFrame = field(default_factory=pd.DataFrame)  # first vs second timing


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


def build_predictor(device: str, hyperspace: str, run, images: np.ndarray, *,
                    protocol: Protocol = Protocol(), additivity_subnets: int = 6,
                    rounds: int = 2, probe_units: int = 30, refine_units: int = 20,
                    validation_subnets: int = 100, include_seqnets: bool = True,
                    retest_subnets: int = 20, baselines: Sequence[str] = ("mobilenet_v2",),
                    regressor: str = "auto", stat: str = "auto",
                    workers: int = 0, seed: int = 0,
                    device_options: dict | None = None, progress: bool = True
                    ) -> PredictorResult:
    """Sample, measure, fit and validate the predictor of ``device`` for ``hyperspace``.

    The validation set is ``validation_subnets`` subnets in all: the published SEQnets of the
    hyperspace (if ``include_seqnets``) and random ones for the rest, plus the torchvision
    ``baselines`` made of the hyperspaces' units (at the largest resolution). Sampling streams are
    seeded separately, so adding adaptive rounds never changes the validation subnets. The
    first ``retest_subnets`` of them are timed a second time, after all the others: how well
    two measurements of the same model agree bounds how well any predictor can be validated.
    """
    if stat != "auto":
        latency_column("fp32", stat)  # validates the statistic before any work
    sample_stat = "min" if stat == "auto" else stat  # what adaptive sampling looks at
    m = Measurer(device, run, images, protocol, workers, seed, progress,
                 tuple(sorted((device_options or {}).items())))
    rng_add, rng_val, rng_ad = (np.random.default_rng([seed, i]) for i in (1, 2, 3))

    # validation subnets first: they are fixed by the seed and never used for fitting
    val_pairs, val_names = [], []
    if include_seqnets:
        for name, sp, sub in seqnets(hyperspace)[:validation_subnets]:
            val_pairs.append((sp, sub))
            val_names.append(name)
    n_random = max(0, validation_subnets - len(val_pairs))
    val_pairs += random_subnets(hyperspace, n_random, rng_val)
    val_names += ["random"] * n_random

    nominal: dict = {}

    def norm(df: pd.DataFrame) -> pd.DataFrame:
        """Divide the machine's drift out (the first table fixes the nominal speed)."""
        if not len(df) or "ref_fp32_min_ms" not in df:
            return df
        out, used = drift_normalized(df, nominal or None)
        nominal.update(used)
        return out

    # 1. additivity set: whole + every unit
    add_pairs = random_subnets(hyperspace, additivity_subnets, rng_add)
    located = located_units(add_pairs)
    units_df = norm(m.units([u for u, _, _ in located]))
    whole_df = norm(m.subnets(add_pairs, table="additivity"))

    family = "kernel+gbr" if regressor == "auto" else regressor
    # 2. adaptive rounds
    round_rows = []
    for r in range(1, rounds + 1):
        pred = LatencyPredictor(device, hyperspace, family, seed, stat=sample_stat).fit(
            units_df, whole_df)
        known = set(frame_units(units_df))
        pool = [x for x in located_units(random_subnets(hyperspace, 8, rng_ad))
                if x[0] not in known]
        pick = rng_ad.permutation(len(pool))[:probe_units]
        probe = [pool[i] for i in pick]
        probe = list({u: (u, sp, st) for u, sp, st in probe}.values())
        probe_df = norm(m.units([u for u, _, _ in probe]))
        lat = dict(zip(frame_units(probe_df), probe_df[latency_column("int8", sample_stat)]))
        err = np.array([abs(pred.predict_units([u], "int8")[0] / lat[u] - 1) for u, _, _ in probe])
        worst = [probe[i] for i in np.argsort(-err)[:max(1, len(probe) // 4)]]
        known |= set(lat)
        new = []
        per = max(1, refine_units // max(1, len(worst)))
        for u, sp, st in worst:
            if st == "head":
                continue
            new += neighbours(sp, st, u.code, rng_ad, per, known | set(new))
        refine_df = norm(m.units(new[:refine_units])) if new else probe_df.iloc[:0]
        units_df = pd.concat([units_df, probe_df, refine_df], ignore_index=True)
        units_df = units_df.drop_duplicates("key").reset_index(drop=True)
        round_rows.append({"round": r, "probe_units": len(probe_df),
                           "probe_rmspe_pct": float(100 * np.sqrt(np.mean(err ** 2))),
                           "probe_within_10pct": float(100 * np.mean(err <= 0.10)),
                           "refined_units": len(refine_df), "total_units": len(units_df)})

    # validation networks measured whole (never used for fitting)
    val_df = norm(m.subnets(val_pairs, val_names, table="validation",
                            keep_models=retest_subnets > 0))
    if baselines:  # torchvision models at the hyperspace's largest resolution
        res = as_hyperspace(hyperspace).resolutions[-1]
        val_df = concat([val_df, norm(m.baselines(baselines, res, table="validation"))])
    # 3. the noise floor: the same compiled subnets timed again; with stat="auto" it picks
    # the statistic that repeats best (no prediction is involved in that choice)
    retest = pd.DataFrame()
    if retest_subnets > 0:
        again = norm(m.retest(val_pairs[:retest_subnets], val_names[:retest_subnets]))
        retest = retest_table(val_df, again, device, sample_stat)
    if stat == "auto":
        stat = most_repeatable(retest) if len(retest) else "min"
        if len(retest):
            retest["used"] = retest["statistic"] == stat
    additivity = additivity_table(units_df, whole_df, device, stat)
    # 4. regressor family, measured by cross-validation on the blocks
    comparison = compare_regressors(units_df, seed=seed, stat=stat)
    if regressor == "auto":
        family = best_family(comparison)
    predictor = LatencyPredictor(device, hyperspace, family, seed, stat=stat).fit(units_df,
                                                                                  whole_df)
    # 5. validation on the held-out networks
    validation = validation_table(predictor, val_df)
    metrics = metrics_table(validation, device)
    return PredictorResult(predictor, units_df, additivity, pd.DataFrame(round_rows),
                           comparison, validation, metrics, retest)


def network_units(space: str, subnet: str) -> list:
    """Units of a validation row: a subnet of a space, or a torchvision baseline (space
    ``torchvision``, subnet ``<name>@r<resolution>``)."""
    if space == BASELINE_SPACE:
        name, r = subnet.rsplit("@r", 1)
        return baseline_units(name, int(r))
    return subnet_units(space, subnet)


def validation_table(predictor: LatencyPredictor, measured: pd.DataFrame) -> pd.DataFrame:
    """One row per network and precision: measured and predicted ms, relative error (%)."""
    rows = []
    pairs = list(zip(measured["space"], measured["subnet"]))
    networks = [network_units(sp, sub) for sp, sub in pairs]
    for p in PRECISIONS:
        pred = predictor.predict_unit_lists(networks, p)
        for (sp, sub), name, true, hat, flops in zip(
                pairs, measured["name"], measured[latency_column(p, predictor.stat)], pred,
                measured["n_units"]):
            rows.append({"device": predictor.device, "precision": p, "name": name,
                         "space": sp, "subnet": sub, "n_units": int(flops),
                         "measured_ms": float(true), "predicted_ms": float(hat),
                         "error_pct": float(100 * (hat / true - 1))})
    return pd.DataFrame(rows)


def retest_table(first: pd.DataFrame, second: pd.DataFrame, device: str, stat: str = "min"
                 ) -> pd.DataFrame:
    """Per precision and statistic (:data:`~.model.STATS`): how the second timing of the same
    compiled subnets agrees with the first, in nn-Meter's metrics (the first as truth)."""
    both = first.merge(second, on="key", suffixes=("", "_2"))
    rows = []
    for p in PRECISIONS:
        for st in [s for s in STATS if latency_column(p, s) in both]:
            col = latency_column(p, st)
            m = error_metrics(both[col + "_2"].to_numpy(float), both[col].to_numpy(float))
            rows.append({"device": device, "precision": p, "statistic": st,
                         "used": st == stat, **m})
    return pd.DataFrame(rows)


def most_repeatable(retest: pd.DataFrame) -> str:
    """The statistic whose second timing agrees best with the first: highest mean share
    within +-10 % over the precisions, then lowest mean RMSPE."""
    g = retest.groupby("statistic").agg(within=("within_10pct", "mean"),
                                         rmspe=("rmspe_pct", "mean"))
    return str(g.sort_values(["within", "rmspe"], ascending=[False, True]).index[0])


def metrics_table(validation: pd.DataFrame, device: str) -> pd.DataFrame:
    rows = []
    for p, g in validation.groupby("precision", sort=False):
        rows.append({"device": device, "precision": p,
                     **error_metrics(g["predicted_ms"].to_numpy(), g["measured_ms"].to_numpy())})
    return pd.DataFrame(rows)


__all__ = ["PredictorResult", "additivity_table", "build_predictor", "metrics_table",
           "validation_table"]


# ----------------------------------------------------------------------------- chapter helpers


def concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def targets_table(targets: dict[str, str]) -> pd.DataFrame:
    """Device -> hyperspace of this run, with resolutions and head size."""
    from ..space import get_hyperspace
    rows = []
    for dev, name in targets.items():
        hs = get_hyperspace(name)
        rows.append({"device": dev, "hyperspace": name, "designed for": hs.device,
                     "resolutions": ", ".join(map(str, hs.resolutions)),
                     "candidate blocks": ", ".join(b.code for b in hs.blocks)})
    return pd.DataFrame(rows)


def additivity_summary(additivity: pd.DataFrame) -> pd.DataFrame:
    """Per device and precision: subnets, median / min / max of sum-of-blocks over whole, and
    the share within +-10 %."""
    g = additivity.groupby(["device", "precision"], sort=False)["sum_over_whole"]
    out = g.agg(subnets="count", median="median", min="min", max="max").reset_index()
    out["within_10pct"] = g.apply(lambda s: 100 * float(((s - 1).abs() <= 0.10).mean())).values
    return out


def random_subnet_string(space: str, seed: int) -> str:
    """A random subnet of ``space`` (at any of its hyperspace's resolutions), as a string."""
    from ..space.encoding import SpaceChoice
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

    from ..space.encoding import SpaceChoice
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


MEASUREMENT_TABLES = ("fusion", "units-", "additivity-", "validation-", "retest-")


def measurement_summary(run) -> tuple[int, float]:
    """(records, minutes from the first to the last) of the measurement tables in the run: the
    cost of a first run (a rerun reuses the records and only refits)."""
    stamps = []
    for f in sorted(run.path.glob("*.parquet")):
        if f.stem == "fusion" or f.stem.startswith(MEASUREMENT_TABLES[1:]):
            stamps.append(pd.to_datetime(pd.read_parquet(f, columns=["timestamp"])["timestamp"],
                                         utc=True))
    if not stamps:
        return 0, float("nan")
    allt = pd.concat(stamps)
    return len(allt), float((allt.max() - allt.min()).total_seconds() / 60)
