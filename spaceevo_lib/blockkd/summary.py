"""The chapter's tables and verdicts from the students' records and the spaces' scores."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The chapter's rules, fixed before any result exists (tests check them on made-up tables):
#: a space search must beat random sampling of as many spaces and the best uniform space on
#: the same tables (Q-T mean above theirs by more than this margin, in units of their std),
#: and INT8 must cost squeeze-excite blocks more than the others (the paper's finding: median
#: INT8/FP32 NSR ratio of SE blocks above that of the others). The ratio is taken at the
#: quantization step (the same weights, min-max ranges, against the INT8 teacher): the first
#: run took it after LSQ+, whose extra epoch of training made every ratio fall below 1 and
#: measured training more than INT8.
THRESHOLDS = {"evolved_vs_random_std": 0.0, "evolved_vs_uniform_std": 0.0}


def int8_cost(records: pd.DataFrame) -> pd.DataFrame:
    """Per (hyperspace, block): median over stages of the max sub-stage's NSR as an FP32
    student, quantized (same weights, min-max ranges: ``ptq``) and after LSQ+, and of the
    ratios to FP32; worst quantization step first."""
    r = records.assign(ratio=records.ptq_nsr_max / records.fp32_nsr_max,
                       lsq_ratio=records.int8_nsr_max / records.fp32_nsr_max)
    out = (r.groupby(["hyperspace", "code", "activation", "se"], sort=False)
           .agg(fp32_nsr=("fp32_nsr_max", "median"), ptq_nsr=("ptq_nsr_max", "median"),
                lsq_nsr=("int8_nsr_max", "median"), int8_over_fp32=("ratio", "median"),
                lsq_over_fp32=("lsq_ratio", "median"), stages=("stage", "size"))
           .reset_index())
    return out.sort_values("int8_over_fp32", ascending=False).reset_index(drop=True)


def int8_cost_glue(cost: pd.DataFrame) -> dict:
    se = cost[cost.se].int8_over_fp32
    rest = cost[~cost.se].int8_over_fp32
    w = cost.iloc[0]
    return {"kd_ratio_se": f"{se.median():.2f}" if len(se) else "n/a",
            "kd_ratio_nose": f"{rest.median():.2f}" if len(rest) else "n/a",
            "kd_lsq_ratio": f"{cost.lsq_over_fp32.median():.2f}",
            "kd_worst_block": f"{w.code} ({w.activation}, {w.hyperspace}, ratio "
                              f"{w.int8_over_fp32:.2f})"}


def verdicts(scores: dict, cost: pd.DataFrame | None = None,
             thresholds: dict = THRESHOLDS) -> pd.DataFrame:
    """One row per rule and device: measured value, threshold, whether it holds."""
    rows = []
    for device, s in scores.items():
        evo = s[s.kind == "evolved"].sort_values("qt_mean", ascending=False).iloc[0]
        for kind, key, what in (("random", "evolved_vs_random_std", "best of random spaces"),
                                ("uniform", "evolved_vs_uniform_std", "best uniform space")):
            other = s[s.kind == kind].sort_values("qt_mean", ascending=False)
            if not len(other):
                continue
            o = other.iloc[0]
            margin = (evo.qt_mean - o.qt_mean) / max(float(o.qt_std), 1e-12)
            rows.append((device, f"evolved space beats the {what} (Q-T margin, in its std)",
                         float(margin), thresholds[key], bool(margin > thresholds[key])))
    if cost is not None and cost.se.any() and (~cost.se).any():
        d = float(cost[cost.se].int8_over_fp32.median() - cost[~cost.se].int8_over_fp32.median())
        rows.append(("both", "INT8 costs SE blocks more (median quantized/FP32 NSR ratio, SE "
                             "minus others)", d, 0.0, bool(d > 0)))
    return pd.DataFrame(rows, columns=["device", "rule", "measured", "threshold", "holds"])


def noxnn_comparison(profile: str) -> pd.DataFrame:
    """INT8 speedup per operator on TFLite with and without XNNPACK, from the latency chapter's
    records at ``profile`` (empty, with a note, when that chapter has not run)."""
    from ..store import Run
    try:
        recs = Run("latency", profile).read_summary()
    except Exception:
        return pd.DataFrame({"note": [f"the latency chapter has not run at {profile}"]})
    rows = {}
    for r in recs:
        parts = r["name"].split("/")
        if len(parts) == 4 and parts[0] == "speedup" and parts[2] == "op" \
                and parts[1] in ("tflite", "tflite-noxnn"):
            rows.setdefault(parts[3], {})[parts[1]] = r["value"]
    df = pd.DataFrame([{"operator": k, "tflite (XNNPACK) INT8 speedup": v.get("tflite", np.nan),
                        "tflite-noxnn (paper) INT8 speedup": v.get("tflite-noxnn", np.nan)}
                       for k, v in rows.items()])
    return df if len(df) else pd.DataFrame({"note": ["no per-operator TFLite records"]})


#: The paper's reported cost of block-wise distillation + tables for one hyperspace.
PAPER_GPU_HOURS = 25.0


def cost_table(records: pd.DataFrame) -> pd.DataFrame:
    """CPU core-hours of this run's students (training, tables) per hyperspace, beside the
    paper's GPU-hours."""
    rows = []
    for hs, r in records.groupby("hyperspace", sort=False):
        rows.append({"hyperspace": hs, "students": len(r), "table rows": int(r.rows.sum()),
                     "training core-hours": r.train_seconds.sum() / 3600,
                     "tables core-hours": (r.seconds - r.train_seconds).sum() / 3600,
                     "total core-hours": r.seconds.sum() / 3600,
                     "paper GPU-hours (ImageNet)": PAPER_GPU_HOURS})
    return pd.DataFrame(rows)
