"""The chapter "Scorecard": every chapter's headline numbers beside the paper's, from the
chapters' ``summary.json``."""

from __future__ import annotations

import pandas as pd

from ..config import chapters
from ..data.paper import paper_reference
from ..store import MissingResultError, Run, record


def collect_summaries(profile: str, names: list[str] | None = None) -> pd.DataFrame:
    """All ``summary.json`` records of a profile, one row each, with the chapter they came from.

    Chapters that have not been run at this profile are skipped (listed in ``.attrs['missing']``).
    """
    rows, missing = [], []
    for name in names or [n for n in chapters() if n != "scorecard"]:
        try:
            records = Run(name, profile).read_summary()
        except MissingResultError:
            missing.append(name)
            continue
        rows += [{"chapter": name, **r} for r in records]
    df = pd.DataFrame(rows, columns=["chapter", "name", "value", "unit", "paper"])
    df.attrs["missing"] = missing
    return df


def against_paper(df: pd.DataFrame) -> pd.DataFrame:
    """The records the paper has a value for, with this host / paper as a ratio: one row per
    claim (record name). A claim recorded by several chapters (e.g. a SEQnet's speedup, measured
    by the latency chapter and shown again by the space chapter) keeps the first chapter's
    value in book order; ``also_in`` names the others."""
    out = df[df.paper.notna()].copy()
    out["value"] = pd.to_numeric(out["value"])
    out["paper"] = pd.to_numeric(out["paper"])
    also = out.groupby("name", sort=False)["chapter"].agg(lambda c: ", ".join(c.iloc[1:]))
    out = out.drop_duplicates("name", keep="first")
    out["also_in"] = out["name"].map(also)
    out["this host / paper"] = out["value"] / out["paper"]
    return out.reset_index(drop=True)


def summary_records(records: pd.DataFrame, cmp: pd.DataFrame) -> list[dict]:
    """How many records the book made, and how many stand beside a paper value."""
    return [record("records_with_paper_value", len(cmp), "records"),
            record("records", len(records), "records")]


# ----------------------------------------------------------------------------- verdicts

#: A verdict's label and its record value (null: not tested here).
SCORES = {"holds": 1.0, "partly": 0.5, "fails": 0.0, "not tested here": None}
#: What stands in for the paper's setting in every verdict (the introduction's table says
#: more): the verdicts are about this study's substitutes, not ImageNet on the paper's devices.
SUBSTITUTION = ("Imagenette at 32 px for ImageNet at 224 px; this host's CPU for the paper's "
                "VNNI CPU; TFLite on x86 for the Pixel 4; a few CPU epochs for 360 GPU epochs")


def _values(records: pd.DataFrame) -> dict:
    """name -> value of the first chapter (book order) recording it."""
    return dict(zip(records.drop_duplicates("name").name,
                    records.drop_duplicates("name").value))


def _row(claim: str, label: str, host: str, why: str) -> dict:
    return {"claim": claim, "verdict": label, "score": SCORES[label], "this host": host,
            "why": why}


def _table1(values: dict, device: str) -> pd.DataFrame:
    """Table 1's rows on ``device`` from the search chapter's records."""
    rows = {}
    for name, v in values.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[1] == "table1" and parts[2] == device:
            rows.setdefault(parts[3], {})[parts[0]] = v
    return pd.DataFrame.from_dict(rows, orient="index")


def _seqnets(t: pd.DataFrame, prefix: str = "SEQnet-A") -> list[str]:
    return [m for m in t.index if m.startswith(prefix) and m[len(prefix):].isdigit()]


def _barely_learned(t: pd.DataFrame, models: list[str], rules: dict) -> str:
    """Why an accuracy comparison of ``models`` decides nothing (empty when it may): a model
    under ``min_top1_int8`` has barely learned, and differences between such are noise."""
    low = [m for m in models if float(t.top1_int8[m]) < rules["min_top1_int8"]]
    if not low:
        return ""
    return (f"not at this budget: {', '.join(low)} below {rules['min_top1_int8']:g} % INT8 "
            "top-1 (barely trained)")


def verdict_top1_gain(values: dict, rules: dict, device: str = "ort-vnni") -> dict:
    """``top1_gain_same_latency``: each SEQnet-A<i> against the baseline whose latency set its
    limit (A0: MobileNetV3-Small, A1: MobileNetV3-Large), at no more INT8 latency (within the
    tolerance). Tested only when SEQnet-A0 is within ``comparable_training_points`` of its
    architecture trained alone: otherwise the gap measures the supernet's short training."""
    claim = "top1_gain_same_latency"
    t = _table1(values, device)
    pairs = [(s, b) for s, b in (("SEQnet-A0", "mobilenet_v3_small"),
                                 ("SEQnet-A1", "mobilenet_v3_large"))
             if s in t.index and b in t.index]
    if not pairs:
        return _row(claim, "not tested here", "-", "no SEQnet under a baseline's latency")
    if "SEQnet-A0-alone" not in t.index or "SEQnet-A0" not in t.index:
        return _row(claim, "not tested here", "-", "no control row to compare training with")
    weak = _barely_learned(t, [m for pair in pairs for m in pair] + ["SEQnet-A0-alone"],
                           rules)
    if weak:
        return _row(claim, "not tested here", "-", weak)
    gap = float(t.top1_int8["SEQnet-A0-alone"] - t.top1_int8["SEQnet-A0"])
    gains = {s: float(t.top1_int8[s] - t.top1_int8[b]) for s, b in pairs
             if t.int8_ms[s] <= t.int8_ms[b] * (1 + rules["same_latency_tolerance"])}
    host = ", ".join(f"{s} {g:+.1f} points" for s, g in gains.items()) or "-"
    if abs(gap) > rules["comparable_training_points"]:
        return _row(claim, "not tested here", host,
                    f"not at this budget: SEQnet-A0's architecture trained alone is "
                    f"{gap:+.1f} points from the supernet's, so SEQnets and baselines had "
                    "no comparable training")
    if not gains:
        return _row(claim, "fails", host, "no SEQnet at or under its baseline's latency")
    label = ("holds" if len(gains) == len(pairs) and min(gains.values()) > 0 else
             "partly" if max(gains.values()) > 0 else "fails")
    return _row(claim, label, host, "SEQnets against the baselines that set their limits")


def verdict_speedup_same_accuracy(values: dict, rules: dict, device: str = "ort-vnni"
                                  ) -> dict:
    """``speedup_same_accuracy``: for each best subnet of the hand-designed (all-MBv3Res)
    space, the fastest SEQnet at least as accurate in INT8; the largest latency ratio. Both
    supernets had the same training, so this is decided at any budget."""
    claim = "speedup_same_accuracy"
    t = _table1(values, device)
    seq, hand = _seqnets(t), _seqnets(t, "mbv3-style-A")
    if not seq or not hand:
        return _row(claim, "not tested here", "-", "no found subnet of both spaces")
    weak = _barely_learned(t, seq + hand, rules)
    if weak:
        return _row(claim, "not tested here", "-", weak)
    ratios = {}
    for m in hand:
        as_good = [s for s in seq if t.top1_int8[s] >= t.top1_int8[m]]
        if as_good:
            ratios[m] = float(t.int8_ms[m] / min(t.int8_ms[s] for s in as_good))
    if not ratios:
        return _row(claim, "fails", "-", "no SEQnet as accurate as an all-MBv3Res subnet")
    best = max(ratios.values())
    label = ("holds" if best >= rules["speedup_holds"] else "partly" if best > 1 else
             "fails")
    return _row(claim, label, f"up to {best:.2f}x", "SEQnets against the all-MBv3Res "
                "space's best subnets (same supernet training)")


def verdict_table1_speedups(values: dict, rules: dict, device: str) -> dict:
    """``table1_speedups`` on ``device``: every SEQnet's INT8-over-FP32 speedup (from its
    files) at least ``seqnet_speedup_min`` and above every baseline's holds; the SEQnets'
    median above the baselines' is partly."""
    claim = f"table1_speedups/{device}"
    t = _table1(values, device)
    seq = _seqnets(t)
    base = [m for m in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
            if m in t.index]
    if not seq or not base:
        return _row(claim, "not tested here", "-", "no SEQnet or no baseline on this device")
    s, b = t.speedup[seq].astype(float), t.speedup[base].astype(float)
    host = f"SEQnets {s.min():.2f}-{s.max():.2f}x, baselines {b.min():.2f}-{b.max():.2f}x"
    label = ("holds" if s.min() >= rules["seqnet_speedup_min"] and s.min() > b.max() else
             "partly" if s.median() > b.median() else "fails")
    return _row(claim, label, host, "speedups measured from the deployed files")


def verdict_from_chapter(values: dict, claim: str, name: str) -> dict:
    """A verdict a chapter recorded as words (the supernet chapter's ``verdict/fig1`` and
    ``verdict/quantized_for_all``), read and not recomputed."""
    v = values.get(name)
    if v is None:
        return _row(claim, "not tested here", "-", f"no record {name}")
    label = ("holds" if v == "holds" else "fails" if v in ("fails", "does not hold") else
             "not tested here")
    if str(v).startswith("not tested at this budget"):  # the subnets it compares had not learned
        return _row(claim, label, str(v), f"the chapter's own rule ({name}): subnets below the "
                    "reference file's min_top1_int8 decide nothing")
    return _row(claim, label, str(v), f"the chapter's own rule ({name})")


def verdict_release_speedup(values: dict, rules: dict, paper: float) -> dict:
    v = values.get("release_speedup/ort-vnni/SEQnet@vnni-A0")
    if v is None:
        return _row("vnni_a0_speedup", "not tested here", "-", "no latency chapter record")
    label = ("holds" if v >= rules["release_speedup_share"] * paper else
             "partly" if v > 1 else "fails")
    return _row("vnni_a0_speedup", label, f"{v:.2f}x", "SEQnet@vnni-A0 measured here")


def verdict_within_10pct(values: dict, rules: dict) -> dict:
    shares = {n: float(v) for n, v in values.items()
              if n.startswith("within_10pct/") and n.endswith("/train-scale")}
    if not shares:
        return _row("nnmeter_within_10pct", "not tested here", "-", "no predictor records")
    lo, hi = min(shares.values()), max(shares.values())
    label = ("holds" if lo >= rules["within_10pct_holds"] else
             "partly" if hi >= rules["within_10pct_holds"] else "fails")
    return _row("nnmeter_within_10pct", label, f"{lo:.0f}-{hi:.0f} %",
                "this host's training-scale predictors, both devices and precisions")


def verdict_findings(values: dict) -> list[dict]:
    """The latency chapter's operator speedups: SE and Hardswish slower in INT8 on the VNNI
    CPU; an operator INT8 speeds up on one device and slows on the other."""
    se, hs = (values.get(f"speedup/ort-vnni/op/{op}") for op in ("se", "hardswish"))
    if se is None or hs is None:
        first = _row("finding_int8_slower_se_hardswish", "not tested here", "-",
                     "no latency chapter records")
    else:
        slower = (se < 1) + (hs < 1)
        first = _row("finding_int8_slower_se_hardswish",
                     ("holds", "partly", "fails")[2 - slower],
                     f"SE {se:.2f}x, Hardswish {hs:.2f}x", "operator speedups, ort-vnni")
    ops = {n.split("/")[-1] for n in values if n.startswith("speedup/ort-vnni/op/")}
    split = sorted(op for op in ops if f"speedup/tflite/op/{op}" in values and
                   (values[f"speedup/ort-vnni/op/{op}"] > 1) !=
                   (values[f"speedup/tflite/op/{op}"] > 1))
    if not ops:
        second = _row("finding_devices_disagree", "not tested here", "-",
                      "no latency chapter records")
    else:
        second = _row("finding_devices_disagree", "holds" if split else "fails",
                      ", ".join(split) or "none", "operators faster in INT8 on one device "
                      "and slower on the other (ort-vnni, tflite)")
    return [first, second]


def claim_verdicts(records: pd.DataFrame, reference: dict | None = None) -> pd.DataFrame:
    """Every claim of the paper reference with its verdict on this host: holds, partly, fails
    or not tested here, by the rules above and the reference file's ``verdict_rules``."""
    ref = reference or paper_reference()
    rules, values = ref["verdict_rules"], _values(records)
    paper = {c["name"]: c for c in ref["claims"]}
    rows = [verdict_top1_gain(values, rules), verdict_speedup_same_accuracy(values, rules),
            _row("space_design_cost", "not tested here", "-",
                 "GPU hours and this host's CPU core-hours measure different hardware"),
            _row("vnni_a0_fp32_ms", "not tested here", _ms(values, "fp32"),
                 "absolute latency of another CPU"),
            _row("vnni_a0_int8_ms", "not tested here", _ms(values, "int8"),
                 "absolute latency of another CPU"),
            verdict_release_speedup(values, rules, paper["vnni_a0_speedup"]["value"]),
            verdict_within_10pct(values, rules),
            *[verdict_table1_speedups(values, rules, d) for d in ("ort-vnni", "tflite")],
            *verdict_findings(values),
            verdict_from_chapter(values, "fig1", "verdict/fig1"),
            verdict_from_chapter(values, "quantized_for_all", "verdict/quantized_for_all")]
    out = pd.DataFrame(rows)
    base = out.claim.str.split("/").str[0]
    out.insert(1, "paper", [paper[c]["text"] if c in paper else "" for c in base])
    out["substitution"] = SUBSTITUTION
    return out


def _ms(values: dict, precision: str) -> str:
    v = values.get(f"{precision}_ms/ort-vnni/SEQnet@vnni-A0")
    return "-" if v is None else f"{v:.2f} ms"


def verdict_records(verdicts: pd.DataFrame) -> list[dict]:
    """``verdict/<claim>``: 1 holds, 0.5 partly, 0 fails, null not tested here."""
    return [record(f"verdict/{r.claim}", None if pd.isna(r.score) else float(r.score),
                   "verdict") for r in verdicts.itertuples()]
