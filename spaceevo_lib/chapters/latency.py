"""The chapter "INT8 vs FP32 latency": from latency records to its tables and to the paper's
findings, tested on data.

Every function takes the measurement table written by :func:`spaceevo_lib.latency.zoo.
measure_zoo` (one row per item and device). Findings are decided by rules stated in their
docstrings, so that the book's verdicts are computed, never typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.paper import paper_code_release, paper_setup
from ..latency.devices import PAPER_DEVICE
from ..latency.protocol import Protocol
from ..latency.records import recorded_values
from ..latency.zoo import zoo_items
from ..store import Run, record

FRIENDLY, UNFRIENDLY = 1.10, 0.95  # INT8 speedup thresholds used by the findings


@dataclass(frozen=True)
class LatencyPlan:
    """What the chapter's parameters decide: devices, timing protocol, INT8 formats, items."""

    devices: list[str]
    protocol: Protocol
    device_options: dict  # device -> options (the ONNX INT8 format)
    items: list  # zoo items to time


def plan(cfg) -> LatencyPlan:
    """The chapter's plan from its validated parameters."""
    return LatencyPlan(
        devices=cfg.device.split(","),
        protocol=Protocol(threads=cfg.threads, warmup=cfg.warmup, visits=cfg.visits,
                          runs=cfg.runs, budget_ms=cfg.budget_ms,
                          max_rel_spread=cfg.max_rel_spread, warmup_ms=cfg.warmup_ms),
        device_options={"ort-vnni": {"fmt": cfg.quant_format}},
        items=zoo_items(cfg.zoo))


def records_table(table: pd.DataFrame) -> pd.DataFrame:
    """Records of this run per item kind and device."""
    return table.groupby(["kind", "device"]).size().rename("records").reset_index()


def operator_table(ops: pd.DataFrame) -> pd.DataFrame:
    """Operators as rows, devices as columns: the INT8 speedup."""
    return ops.pivot_table(index="op_type", columns="device", values="speedup",
                           sort=False).reset_index()


def glue_values(cfg, table: pd.DataFrame) -> dict:
    """The settings and numbers the chapter's text cites, from this run."""
    return {"threads": cfg.threads, "visits": cfg.visits, "warmup_ms": f"{cfg.warmup_ms:g}",
            "runs": cfg.runs, "budget_ms": cfg.budget_ms,
            "max_rel_spread": f"{cfg.max_rel_spread:.0%}", "n_records": len(table),
            "n_noisy": int(table.noisy.sum()),
            "ort_version": recorded_values(table, "onnxruntime_version"),
            "litert_version": recorded_values(table, "litert_version"),
            "cpu_here": recorded_values(table, "cpu_model"),
            "paper_cpu": paper_setup("cpu_device"), "paper_mobile": paper_setup("mobile_device")}


def load_measurements(profile: str, root: Path | None = None) -> pd.DataFrame:
    """This chapter's latency records at ``profile`` (one row per item and device, the schema
    of :mod:`spaceevo_lib.latency.records`), for later chapters. MissingResultError names the
    chapter to run first."""
    return Run("latency", profile, root).load("measurements")


def _cols(df: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    base = ["device", "fp32_median_ms", "int8_median_ms", "speedup", "speedup_iqr", "noisy"]
    return df[extra + base].reset_index(drop=True)


def operator_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """INT8 speedup of each single operator on each device (Figure 2, left)."""
    return _cols(df[df.kind == "operator"], ["op_type", "p_channels", "p_hw"])


def conv1x1_sweep(df: pd.DataFrame) -> pd.DataFrame:
    """Conv1x1 INT8 speedup by channel count and feature-map size (Figure 2, right)."""
    out = _cols(df[df.kind == "conv1x1"], ["p_channels", "p_hw"])
    return out.astype({"p_channels": int, "p_hw": int}).sort_values(["device", "p_hw",
                                                                        "p_channels"])


def block_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """INT8 speedup of each hyperspace block, per hyperspace and stage."""
    return _cols(df[df.kind == "block"], ["p_hyperspace", "p_stage", "op_type", "p_hw",
                                          "p_cin", "p_cout", "p_e", "p_act"])


def model_table(df: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Whole models: FP32 ms, INT8 ms and speedup per device, beside the paper's Table 1."""
    m = _cols(df[df.kind == "model"], ["op_type", "p_resolution"]).rename(
        columns={"op_type": "model", "p_resolution": "resolution"})
    m["paper_device"] = m.device.map(PAPER_DEVICE)
    ref = paper.rename(columns={"device": "paper_device", "speedup": "paper_speedup",
                                "int8_ms": "paper_int8_ms"})
    m = m.merge(ref[["paper_device", "model", "paper_speedup", "paper_int8_ms"]],
                on=["paper_device", "model"], how="left")
    rel = paper_code_release().rename(columns={
        "device": "paper_device", "fp32_ms": "release_fp32_ms", "int8_ms": "release_int8_ms",
        "speedup": "release_speedup"})
    m = m.merge(rel, on=["paper_device", "model"], how="left")
    return m.drop(columns="paper_device").astype({"resolution": int})


def model_comparison(models: pd.DataFrame) -> pd.DataFrame:
    """:func:`model_table` narrowed to what the book shows, with readable headers."""
    cols = {"model": "model", "device": "device", "fp32_median_ms": "FP32 ms",
            "int8_median_ms": "INT8 ms", "speedup": "speedup (x)",
            "paper_speedup": "paper speedup (x)", "noisy": "noisy"}
    return models[list(cols)].rename(columns=cols)


def release_comparison(models: pd.DataFrame) -> pd.DataFrame:
    """SEQnet@vnni-A0 beside the one latency the paper's code release measured (onnxruntime)."""
    r = models[models.release_speedup.notna() & (models.device == "ort-vnni")]
    return pd.DataFrame({
        "model": r.model, "FP32 ms (this host)": r.fp32_median_ms,
        "FP32 ms (release)": r.release_fp32_ms, "INT8 ms (this host)": r.int8_median_ms,
        "INT8 ms (release)": r.release_int8_ms, "speedup (this host)": r.speedup,
        "speedup (release)": r.release_speedup}).reset_index(drop=True)


@dataclass(frozen=True)
class Finding:
    """One of the paper's claims, checked on this host's measurements."""

    claim: str
    device: str
    holds: str  # "yes", "no", "partly" or "not measured"
    evidence: str


def _speedup(table: pd.DataFrame, device: str, op: str) -> float | None:
    r = table[(table.device == device) & (table.op_type == op)]
    return float(r.speedup.iloc[0]) if len(r) else None


def finding_se_hardswish(df: pd.DataFrame, device: str = "ort-vnni") -> Finding:
    """SE and Hardswish are INT8-unfriendly: each single op's speedup is below 0.95x on
    ``device``, or the SE+Hardswish block (MBv3Res, onnxw) gains less from INT8 than the
    ReLU6 MBv2Res block at every measured stage. Both -> yes, one -> partly, none -> no."""
    claim = "SE and Hardswish make INT8 inference slow on the VNNI CPU"
    ops = operator_speedups(df)
    se, hs = _speedup(ops, device, "se"), _speedup(ops, device, "hardswish")
    blocks = block_speedups(df)
    b = blocks[(blocks.device == device) & (blocks.p_hyperspace == "onnxw")]
    piv = b.pivot_table(index="p_stage", columns="op_type", values="speedup")
    if se is None and hs is None and not {"MBv3Res", "MBv2Res"} <= set(piv.columns):
        return Finding(claim, device, "not measured", "no SE/Hardswish items were measured")
    parts, votes = [], []
    for name, v in (("SE", se), ("Hardswish", hs)):
        if v is not None:
            parts.append(f"{name} alone {v:.2f}x")
            votes.append(v < UNFRIENDLY)
    if {"MBv3Res", "MBv2Res"} <= set(piv.columns):
        worse = bool((piv.MBv3Res < piv.MBv2Res).all())
        parts.append("MBv3Res (SE+Hardswish) vs MBv2Res (ReLU6) block speedup: " + ", ".join(
            f"{s} {r.MBv3Res:.2f}x vs {r.MBv2Res:.2f}x" for s, r in piv.iterrows()))
        votes.append(worse)
    holds = "yes" if all(votes) else "partly" if any(votes) else "no"
    return Finding(claim, device, holds, "; ".join(parts))


def finding_conv1x1_channels(df: pd.DataFrame, device: str) -> Finding:
    """Conv1x1 speedup grows with channels: Spearman rank correlation of speedup with channel
    count >= 0.6 at every measured feature-map size -> yes; at some -> partly; else no."""
    claim = "Conv1x1 INT8 speedup grows with the channel count"
    s = conv1x1_sweep(df)
    s = s[s.device == device]
    if s.p_channels.nunique() < 3:
        return Finding(claim, device, "not measured", "fewer than 3 channel counts measured")
    parts, votes = [], []
    for hw, g in s.groupby("p_hw"):
        rho = g[["p_channels", "speedup"]].corr(method="spearman").iloc[0, 1]
        lo, hi = g.iloc[0], g.iloc[-1]
        parts.append(f"{hw}x{hw}: {lo.speedup:.2f}x at {lo.p_channels} ch -> {hi.speedup:.2f}x "
                     f"at {hi.p_channels} ch (Spearman {rho:.2f})")
        votes.append(rho >= 0.6)
    holds = "yes" if all(votes) else "partly" if any(votes) else "no"
    return Finding(claim, device, holds, "; ".join(parts))


def finding_devices_disagree(df: pd.DataFrame, a: str = "ort-vnni",
                             b: str = "tflite-noxnn") -> Finding:
    """Devices disagree on preferred operators: some operator is INT8-friendly (>= 1.10x) on
    one device and unfriendly (< 0.95x) on the other -> yes; otherwise, if the per-operator
    speedups rank differently (Spearman < 0.5) -> partly; else no."""
    claim = "Devices disagree on which operators are INT8-friendly"
    ops = operator_speedups(df)
    piv = ops[ops.device.isin([a, b])].pivot_table(index="op_type", columns="device",
                                                   values="speedup")
    if a not in piv or b not in piv:
        return Finding(claim, f"{a} vs {b}", "not measured", "both devices are needed")
    piv = piv.dropna()
    flips = [op for op, r in piv.iterrows()
             if (r[a] >= FRIENDLY and r[b] < UNFRIENDLY) or (r[b] >= FRIENDLY and r[a] < UNFRIENDLY)]
    rho = piv[[a, b]].corr(method="spearman").iloc[0, 1] if len(piv) > 2 else np.nan
    evidence = (f"Spearman rank correlation of per-operator speedups {rho:.2f}; "
                + ("opposite verdicts: " + ", ".join(
                    f"{op} ({piv.loc[op, a]:.2f}x vs {piv.loc[op, b]:.2f}x)" for op in flips)
                   if flips else "no operator is friendly on one device and unfriendly on the other"))
    holds = "yes" if flips else "partly" if rho < 0.5 else "no"
    return Finding(claim, f"{a} vs {b}", holds, evidence)


def finding_seqnets_quantize_better(df: pd.DataFrame, device: str) -> Finding:
    """SEQnets gain more from INT8 than MobileNetV3 (Table 1): every SEQnet measured on
    ``device`` has a higher speedup than every MobileNetV3 -> yes; some -> partly; none -> no.
    Only the SEQnets made for that device family are compared (vnni on ort-vnni, pixel4 on
    TFLite)."""
    claim = "SEQnets gain more from INT8 than MobileNetV3"
    family = "vnni" if device == "ort-vnni" else "pixel4"
    m = df[(df.kind == "model") & (df.device == device)]
    seq = m[m.op_type.str.startswith(f"SEQnet@{family}")]
    mbv3 = m[m.op_type.str.startswith("mobilenet_v3")]
    if seq.empty or mbv3.empty:
        return Finding(claim, device, "not measured", "needs SEQnets and MobileNetV3 models")
    best = mbv3.speedup.max()
    above = int((seq.speedup > best).sum())
    holds = "yes" if above == len(seq) else "partly" if above else "no"
    evidence = (", ".join(f"{r.op_type} {r.speedup:.2f}x" for r in seq.itertuples())
                + " vs " + ", ".join(f"{r.op_type} {r.speedup:.2f}x" for r in mbv3.itertuples()))
    return Finding(claim, device, holds, evidence)


def findings(df: pd.DataFrame) -> pd.DataFrame:
    """All the chapter's findings as a table (claim, device, holds, evidence)."""
    devices = list(dict.fromkeys(df.device))
    out = [finding_se_hardswish(df, "ort-vnni")] if "ort-vnni" in devices else []
    out += [finding_conv1x1_channels(df, d) for d in devices]
    other = "tflite-noxnn" if "tflite-noxnn" in devices else "tflite"
    if "ort-vnni" in devices and other in devices:
        out.append(finding_devices_disagree(df, "ort-vnni", other))
    out += [finding_seqnets_quantize_better(df, d) for d in devices]
    return pd.DataFrame([f.__dict__ for f in out])


def quality_table(df: pd.DataFrame) -> pd.DataFrame:
    """INT8 output agreement with FP32 per device and item kind (median and worst case)."""
    g = df.groupby(["device", "kind"])
    return pd.DataFrame({
        "records": g.size(),
        "median pearson r": g.int8_pearson_r.median(),
        "worst pearson r": g.int8_pearson_r.min(),
        "models: top-1 agreement": g.int8_top1_agreement.median(),
    }).reset_index()


def summary_records(df: pd.DataFrame, paper: pd.DataFrame) -> list[dict]:
    """Headline numbers: each model's and operator's INT8 speedup per device, with the
    paper's Table 1 speedup where it has one (``speedup/<device>/<model>``,
    ``speedup/<device>/op/<operator>``)."""
    out = []
    for r in model_table(df, paper).itertuples():
        p = None if pd.isna(r.paper_speedup) else float(r.paper_speedup)
        out.append(record(f"speedup/{r.device}/{r.model}", round(r.speedup, 3), "x", p))
        out.append(record(f"int8_ms/{r.device}/{r.model}", round(r.int8_median_ms, 3), "ms",
                          None if pd.isna(r.paper_int8_ms) else float(r.paper_int8_ms)))
    for r in model_table(df, paper).dropna(subset=["release_speedup"]).itertuples():
        if r.device == "ort-vnni":  # the code release measured onnxruntime only
            out.append(record(f"fp32_ms/{r.device}/{r.model}", round(r.fp32_median_ms, 3), "ms",
                              float(r.release_fp32_ms)))
            out.append(record(f"release_speedup/{r.device}/{r.model}", round(r.speedup, 3), "x",
                              float(r.release_speedup)))
    for r in operator_speedups(df).itertuples():
        out.append(record(f"speedup/{r.device}/op/{r.op_type}", round(r.speedup, 3), "x"))
    out.append(record("records/noisy", int(df.noisy.sum()), "records"))
    out.append(record("records/total", len(df), "records"))
    return out
