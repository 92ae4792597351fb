"""The predictor chapter's tables and headline numbers."""

from __future__ import annotations

import pandas as pd

from ..store import record

METRICS = (("rmse_ms", "ms"), ("rmspe_pct", "%"), ("within_5pct", "%"), ("within_10pct", "%"),
           ("within_15pct", "%"))
#: The target: share of held-out subnets within +-10 % on ort-vnni INT8 (nn-Meter reaches 99 %
#: on its devices); the training-scale predictors are held to it on both devices.
TARGET_WITHIN_10PCT = 95.0


def scale_suffix(hyperspace: str) -> str:
    """Record-name suffix of a hyperspace's scale: '' (paper) or '/train-scale'."""
    return "/train-scale" if hyperspace.endswith("-train") else ""


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
                                                   "within_10pct", "within_5pct", "rmspe_pct"]]
    out = r.merge(m, on=["device", "hyperspace", "precision"])
    applies = (out.device.eq("ort-vnni") & out.precision.eq("int8")) | \
        out.hyperspace.str.endswith("-train")
    out["target_pct"] = TARGET_WITHIN_10PCT
    out["target_met"] = [bool(w >= TARGET_WITHIN_10PCT) if a else None
                         for w, a in zip(out.within_10pct, applies)]
    return out


def summary_records(side: pd.DataFrame, metrics: pd.DataFrame) -> list[dict]:
    """``<metric>/<device>/<precision>[/train-scale]`` for every validated device, precision
    and scale (e.g. ``within_10pct/ort-vnni/int8``), ``repeat_within_10pct/...`` for the
    ground truth; the +-10 % shares carry nn-Meter's 99 % as reference."""
    from ..report.paper import paper_value
    nnmeter = paper_value("nnmeter_within_10pct")
    out = []
    for _, r in metrics[metrics.composition == "learned"].iterrows():
        tail = f"{r['device']}/{r['precision']}{scale_suffix(r['hyperspace'])}"
        for name, unit in METRICS:
            out.append(record(f"{name}/{tail}", float(r[name]), unit,
                              nnmeter if name == "within_10pct" else None))
        out.append(record(f"validated_subnets/{tail}", int(r["n"]), "networks"))
    for _, r in side.iterrows():
        tail = f"{r['device']}/{r['precision']}{scale_suffix(r['hyperspace'])}"
        out.append(record(f"repeat_within_10pct/{tail}", float(r["repeat_within_10pct"]), "%"))
    return out


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
    from .model import COMPOSITION_TERMS
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
