"""The predictor chapter's tables and headline numbers."""

from __future__ import annotations

import pandas as pd

from ..store import record

METRICS = (("rmse_ms", "ms"), ("rmspe_pct", "%"), ("within_5pct", "%"), ("within_10pct", "%"),
           ("within_15pct", "%"))
#: The issue's target: share of held-out subnets within +-10 % on ort-vnni INT8.
TARGET_WITHIN_10PCT = 95.0


def summary_records(metrics: pd.DataFrame) -> list[dict]:
    """``<metric>/<device>/<precision>`` for every validated device and precision, e.g.
    ``within_10pct/ort-vnni/int8``; the +-10 % shares carry nn-Meter's 99 % as reference."""
    from ..report.paper import paper_value
    nnmeter = paper_value("nnmeter_within_10pct")
    out = []
    for _, r in metrics.iterrows():
        for name, unit in METRICS:
            out.append(record(f"{name}/{r['device']}/{r['precision']}", float(r[name]), unit,
                              nnmeter if name == "within_10pct" else None))
        out.append(record(f"validated_subnets/{r['device']}/{r['precision']}", int(r["n"]),
                          "subnets"))
    return out


def failures(validation: pd.DataFrame, limit: float = 10.0) -> pd.DataFrame:
    """Held-out subnets predicted more than ``limit`` % off, worst first."""
    bad = validation[validation["error_pct"].abs() > limit]
    return bad.reindex(bad["error_pct"].abs().sort_values(ascending=False).index)


def error_by(validation: pd.DataFrame, column: str, bins: int = 4) -> pd.DataFrame:
    """Mean and spread of the relative error by quantile bins of ``column`` (e.g. the
    measured latency): where the predictor is biased."""
    v = validation.copy()
    v["bin"] = pd.qcut(v[column], bins, duplicates="drop")
    return (v.groupby(["device", "precision", "bin"], observed=True)["error_pct"]
            .agg(["count", "mean", "std"]).round(1).reset_index())
