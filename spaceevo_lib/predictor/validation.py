"""How good a latency predictor is, against what: held-out networks measured whole, the
ground truth's own repeatability (two halves of its visits), additivity of measured blocks, and
where a network's error comes from. Tables in nn-Meter's metrics (RMSE, RMSPE, share within
+-5 % and +-10 %)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..latency.protocol import PRECISIONS, STATS, latency_column
from .model import LatencyPredictor, error_metrics, frame_units
from .units import network_units, subnet_units


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
