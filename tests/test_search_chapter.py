"""The SEQnet search chapter's rules and the scorecard's claim verdicts, on made-up numbers
(written before any result): windows, limits, naming, the search-against-random rule, the
paper's rows beside this host's, and every claim's verdict."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from spaceevo_lib.chapters import scorecard
from spaceevo_lib.chapters import search as chapter
from spaceevo_lib.data.paper import paper_reference

# ----------------------------------------------------------------------------- the search chapter


def test_the_window_follows_the_limit_and_the_space():
    inside = chapter.window_of(c=1.0, fraction=0.1, fastest=0.2, slowest=3.0)
    assert (inside["low"], inside["high"], inside["note"]) == (0.9, 1.0, "")
    above = chapter.window_of(c=5.0, fraction=0.1, fastest=0.2, slowest=3.0)
    assert above["high"] == 3.0 and above["low"] == pytest.approx(2.7) and above["note"]
    below = chapter.window_of(c=0.1, fraction=0.1, fastest=0.2, slowest=3.0)
    assert np.isnan(below["low"]) and below["note"] == "no subnet meets the limit"
    # a limit between c - d and the largest subnet keeps the paper's window
    edge = chapter.window_of(c=3.2, fraction=0.1, fastest=0.2, slowest=3.0)
    assert (edge["low"], edge["high"]) == pytest.approx((2.88, 3.2))


def test_search_against_random_passes_over_a_window_random_draws_cannot_reach(tmp_path):
    """A window found only through the space's largest subnet (too rare to draw) is skipped
    for the next window in which search found a subnet, not a crash (seen on an Intel host)."""
    from dataclasses import replace

    from spaceevo_lib.search import FitnessCache, SubnetSearchConfig
    from test_subnet_search import SPACE, toy_fitness, toy_latency

    class Toy:
        def predict(self, subs, dtype, space):
            return toy_latency(subs)

    lat = toy_latency([replace(s, resolution=32) for s in chapter.ends_of(SPACE, 32)])
    rare = (lat[1] * 0.9999, lat[1])  # only the largest subnet is inside
    common = (float(np.mean(lat)) * 0.8, float(np.mean(lat)))
    windows = pd.DataFrame([{"device": "d", "space": chapter.EVOLVED, "limit": lim,
                             "low": lo, "high": hi} for lim, (lo, hi) in
                            (("A0", rare), ("A1", common))])
    best = windows.assign(subnet="found")
    plan = chapter.SearchPlan(
        spaces={chapter.EVOLVED: SPACE}, search_devices=("d",), table_devices=("d",),
        search=SubnetSearchConfig(population=6, generations=2, parents=3, mutations=2,
                                  crossovers=2, max_tries=300),
        window_fraction=0.2, larger_limit=1.5, compare_seeds=2, fitness_images=0,
        baselines=(), control=False, fp32=None, lsq=None, int8_params={}, protocol=None)
    caches = {chapter.EVOLVED: FitnessCache(tmp_path / "f.json", {}, toy_fitness)}
    table = chapter.search_vs_random(plan, windows, best, caches, {"d": Toy()}, 32)
    assert list(table.limit) == ["A1", "A1"] and list(table.seed) == [0, 1]
    none = chapter.search_vs_random(plan, windows[:1], best[:1], caches, {"d": Toy()}, 32)
    assert not len(none) and chapter.search_verdict(none).startswith("not tested")


def test_limits_come_from_the_baselines_files_then_one_larger():
    lat = pd.DataFrame({"device": ["ort-vnni"] * 2 + ["tflite"] * 2,
                        "network": ["mobilenet_v3_small", "mobilenet_v3_large"] * 2,
                        "int8_median_of_min_ms": [0.3, 0.6, 0.5, 1.5]})
    t = chapter.limits_table(lat, ["ort-vnni"], 1.5)
    assert list(t.limit) == ["A0", "A1", "A2"]
    assert list(t.c_ms) == pytest.approx([0.3, 0.6, 0.9])
    assert "mobilenet_v3_small" in t.rule.iloc[0]
    with pytest.raises(Exception, match="no baseline file on tflite-noxnn"):
        chapter.limits_table(lat, ["tflite-noxnn"], 1.5)


def test_the_search_must_win_on_average_and_lose_on_no_seed():
    t = pd.DataFrame({"gain": [0.5, 0.0, 1.0]})
    assert chapter.search_verdict(t) == "beats random sampling"
    assert chapter.search_verdict(t.assign(gain=[2.0, -0.1, 1.0])) == \
        "does not beat random sampling"
    assert chapter.search_verdict(t.assign(gain=[0.0, 0.0, 0.0])) == \
        "does not beat random sampling"
    assert chapter.search_verdict(t.iloc[:0]).startswith("not tested")


def test_found_subnets_are_named_by_the_first_limit_that_found_them():
    best = pd.DataFrame({
        "device": ["ort-vnni"] * 5, "limit": ["A0", "A1", "A2", "A1", "A2"],
        "space": ["evolved-ort-vnni"] * 3 + ["mbv3-style"] * 2,
        "subnet": ["a", "b", "b", None, "c"], "int8_ms_predicted": [1, 2, 2, np.nan, 3]})
    found = chapter.seqnets(best, "ort-vnni")
    assert list(found.model) == ["SEQnet-A0", "SEQnet-A1", "mbv3-style-A2"]
    assert list(found.key) == list(found.model)
    # a second search device's finds keep their Table 1 names, apart by key
    both = pd.concat([best, best.assign(device="tflite")], ignore_index=True)
    found = chapter.seqnets(both, "ort-vnni")
    assert list(found.model) == ["SEQnet-A0", "SEQnet-A1", "mbv3-style-A2"] * 2
    assert list(found.key[3:]) == ["SEQnet-A0-tflite", "SEQnet-A1-tflite",
                                   "mbv3-style-A2-tflite"]


def test_each_table_lists_its_own_search_else_the_first():
    from types import SimpleNamespace as NS
    one = NS(search_devices=("ort-vnni",), table_devices=("ort-vnni", "tflite"))
    assert chapter.listed_on(one) == {"ort-vnni": "ort-vnni", "tflite": "ort-vnni"}
    two = NS(search_devices=("ort-vnni", "tflite"), table_devices=("ort-vnni", "tflite"))
    assert chapter.listed_on(two) == {"ort-vnni": "ort-vnni", "tflite": "tflite"}


def test_rows_stand_beside_the_papers_counterparts():
    table = pd.DataFrame({"device": ["ort-vnni", "ort-vnni", "tflite", "ort-vnni"],
                          "model": ["SEQnet-A0", "mobilenet_v3_small", "SEQnet-A1",
                                    "SEQnet-A0-alone"]})
    out = chapter.beside_paper(table)
    assert list(out.paper_int8_ms[:3]) == [4.4, 4.4, 14.7]  # @vnni-A0, MBv3-S, @pixel4-A1
    assert np.isnan(out.paper_int8_ms.iloc[3])  # the control has no paper row


# ----------------------------------------------------------------------------- claim verdicts


RULES = paper_reference()["verdict_rules"]


def _records(**values) -> pd.DataFrame:
    return pd.DataFrame([{"chapter": "search", "name": k, "value": v, "unit": "",
                          "paper": None} for k, v in values.items()])


def _table1(device="ort-vnni", **rows) -> dict:
    """rows: model -> (top1_int8, int8_ms, speedup)."""
    out = {}
    for model, (top1, ms, speedup) in rows.items():
        out[f"top1_int8/table1/{device}/{model}"] = top1
        out[f"int8_ms/table1/{device}/{model}"] = ms
        out[f"speedup/table1/{device}/{model}"] = speedup
    return out


def _verdict(values: dict, claim: str) -> pd.Series:
    v = scorecard.claim_verdicts(_records(**values))
    return v.set_index("claim").loc[claim]


BASE = {"mobilenet_v3_small": (60.0, 0.30, 1.0), "mobilenet_v3_large": (70.0, 0.60, 1.2)}


def _goal_table(**rows) -> pd.DataFrame:
    """rows: model -> (top1_int8, int8_ms, speedup), on ort-vnni; one tflite row that must
    not count."""
    out = [{"device": "ort-vnni", "model": m, "top1_int8": t, "int8_ms": ms, "speedup": sp}
           for m, (t, ms, sp) in rows.items()]
    out.append({"device": "tflite", "model": "SEQnet-A0", "top1_int8": 99.0, "int8_ms": 0.01,
                "speedup": 9.0})
    return pd.DataFrame(out)


def test_the_goal_needs_every_part_on_the_vnni_cpu():
    met = _goal_table(**{"SEQnet-A0": (61.0, 0.29, 1.6), "mobilenet_v3_small": (60.0, 0.30, 1.0)})
    check = chapter.goal_check(met)
    assert list(check.met) == ["yes"] * 4 and chapter.goal_met(check)
    assert check["this host"].tolist() == [61.0, 0.29, 1.6, 1.0]
    assert check.bar.tolist() == [60.0, 0.30, 1.5, 1.1]
    for changed, part in (({"SEQnet-A0": (59.0, 0.29, 1.6)}, 0),  # less accurate
                          ({"SEQnet-A0": (61.0, 0.31, 1.6)}, 1),  # slower
                          ({"SEQnet-A0": (61.0, 0.29, 1.4)}, 2),  # too little speedup
                          ({"mobilenet_v3_small": (60.0, 0.30, 1.2)}, 3)):  # baseline gains
        rows = {"SEQnet-A0": (61.0, 0.29, 1.6), "mobilenet_v3_small": (60.0, 0.30, 1.0),
                **changed}
        check = chapter.goal_check(_goal_table(**rows))
        assert check.met[part] == "no" and (check.met == "yes").sum() == 3
        assert not chapter.goal_met(check)
    missing = chapter.goal_check(_goal_table(mobilenet_v3_small=(60.0, 0.30, 1.0)))
    assert list(missing.met) == ["no row", "no row", "no row", "yes"]
    recs = chapter.summary_records(pd.DataFrame(columns=["device", "model", "top1_int8",
                                                         "top1_fp32", "int8_ms", "speedup",
                                                         "artifact", "paper_speedup"]),
                                   pd.DataFrame(), "holds", missing)
    assert recs[-1]["name"] == "goal_met/table1/ort-vnni/SEQnet-A0" and recs[-1]["value"] == 0
    # the control: the same parts asked of SEQnet-A0's architecture trained alone
    rows = {"SEQnet-A0": (20.0, 0.28, 1.4), "SEQnet-A0-alone": (72.0, 0.28, 1.6),
            "mobilenet_v3_small": (67.0, 0.29, 0.9)}
    table = _goal_table(**rows)
    assert list(chapter.goal_check(table).met) == ["no", "yes", "no", "yes"]
    control = chapter.control_goal_check(table)
    assert list(control.met) == ["yes"] * 4 and control.part[0].startswith("SEQnet-A0-alone")
    assert chapter.control_goal_check(_goal_table(**BASE)) is None
    recs = chapter.summary_records(pd.DataFrame(columns=["device", "model", "top1_int8",
                                                         "top1_fp32", "int8_ms", "speedup",
                                                         "artifact", "paper_speedup"]),
                                   pd.DataFrame(), "holds", chapter.goal_check(table), control)
    assert [(r["name"], r["value"]) for r in recs[-2:]] == [
        ("goal_met/table1/ort-vnni/SEQnet-A0", 0), ("goal_met/table1/ort-vnni/SEQnet-A0-alone", 1)]


def test_models_that_barely_learned_decide_no_accuracy_claim():
    chance = {"mobilenet_v3_small": (11.0, 0.30, 1.0), "mobilenet_v3_large": (12.0, 0.60, 1),
              "SEQnet-A0": (13.0, 0.29, 2.0), "SEQnet-A0-alone": (12.5, 0.29, 2.0),
              "mbv3-style-A1": (10.5, 1.0, 1.0)}
    for claim in ("top1_gain_same_latency", "speedup_same_accuracy"):
        v = _verdict(_table1(**chance), claim)
        assert v.verdict == "not tested here" and "barely trained" in v.why


def test_an_accuracy_claim_waits_for_comparable_training():
    rows = {**BASE, "SEQnet-A0": (65.0, 0.29, 2.0), "SEQnet-A1": (72.0, 0.58, 2.1)}
    far = _table1(**rows, **{"SEQnet-A0-alone": (75.0, 0.29, 2.0)})  # 10 points apart
    v = _verdict(far, "top1_gain_same_latency")
    assert v.verdict == "not tested here" and "not at this budget" in v.why
    near = _table1(**rows, **{"SEQnet-A0-alone": (66.0, 0.29, 2.0)})
    assert _verdict(near, "top1_gain_same_latency").verdict == "holds"
    one = _table1(**{**rows, "SEQnet-A1": (69.0, 0.58, 2.1)},
                  **{"SEQnet-A0-alone": (66.0, 0.29, 2.0)})
    assert _verdict(one, "top1_gain_same_latency").verdict == "partly"
    slow = _table1(**{**rows, "SEQnet-A0": (65.0, 0.40, 2.0), "SEQnet-A1": (69.0, 0.58, 2)},
                   **{"SEQnet-A0-alone": (66.0, 0.40, 2.0)})  # A0 over MBv3-S's latency
    assert _verdict(slow, "top1_gain_same_latency").verdict == "fails"


def test_speedup_at_the_same_accuracy_against_the_hand_designed_space():
    rows = {"SEQnet-A0": (65.0, 0.3, 2.0), "SEQnet-A1": (70.0, 0.5, 2.0),
            "mbv3-style-A1": (66.0, 1.0, 1.0)}
    v = _verdict(_table1(**rows), "speedup_same_accuracy")
    assert v.verdict == "holds" and v["this host"] == "up to 2.00x"  # 1.0 / 0.5
    slower = {**rows, "mbv3-style-A1": (66.0, 0.6, 1.0)}
    assert _verdict(_table1(**slower), "speedup_same_accuracy").verdict == "partly"
    worse = {**rows, "mbv3-style-A1": (71.0, 0.6, 1.0)}
    assert _verdict(_table1(**worse), "speedup_same_accuracy").verdict == "fails"
    alone = {k: v for k, v in rows.items() if k.startswith("SEQnet")}
    assert _verdict(_table1(**alone), "speedup_same_accuracy").verdict == "not tested here"


def test_table1_speedups_are_decided_from_the_files():
    good = _table1(**BASE, **{"SEQnet-A0": (1, 1, 2.0), "SEQnet-A1": (1, 1, 1.6)})
    assert _verdict(good, "table1_speedups/ort-vnni").verdict == "holds"
    mid = _table1(**BASE, **{"SEQnet-A0": (1, 1, 1.3), "SEQnet-A1": (1, 1, 1.4)})
    assert _verdict(mid, "table1_speedups/ort-vnni").verdict == "partly"
    bad = _table1(**BASE, **{"SEQnet-A0": (1, 1, 0.9), "SEQnet-A1": (1, 1, 1.0)})
    assert _verdict(bad, "table1_speedups/ort-vnni").verdict == "fails"
    assert _verdict(bad, "table1_speedups/tflite").verdict == "not tested here"


def test_findings_chapter_verdicts_and_records():
    values = {"speedup/ort-vnni/op/se": 0.5, "speedup/ort-vnni/op/hardswish": 1.2,
              "speedup/tflite/op/se": 0.6, "speedup/tflite/op/hardswish": 0.1,
              "speedup/ort-vnni/op/conv": 2.0, "speedup/tflite/op/conv": 3.0,
              "verdict/fig1": "undecided at this budget", "verdict/quantized_for_all": "holds",
              "release_speedup/ort-vnni/SEQnet@vnni-A0": 1.8,
              "within_10pct/ort-vnni/int8/train-scale": 96.0,
              "within_10pct/tflite/int8/train-scale": 90.0}
    v = scorecard.claim_verdicts(_records(**values)).set_index("claim")
    assert v.verdict["finding_int8_slower_se_hardswish"] == "partly"
    assert v.verdict["finding_devices_disagree"] == "holds"
    assert v["this host"]["finding_devices_disagree"] == "hardswish"
    assert v.verdict["fig1"] == "not tested here"
    assert v.verdict["quantized_for_all"] == "holds"
    assert v.verdict["vnni_a0_speedup"] == "holds"  # 1.8 >= 0.8 * 2.04
    assert v.verdict["nnmeter_within_10pct"] == "partly"
    assert v.verdict["space_design_cost"] == "not tested here"
    # every claim of the reference file has a row, with the paper's words
    claims = {c["name"] for c in paper_reference()["claims"]}
    assert claims <= {c.split("/")[0] for c in v.index}
    assert (v.paper != "").all()
    recs = {r["name"]: r["value"] for r in scorecard.verdict_records(v.reset_index())}
    assert recs["verdict/quantized_for_all"] == 1.0 and recs["verdict/fig1"] is None
    assert recs["verdict/finding_int8_slower_se_hardswish"] == 0.5


def test_a_file_refuses_test_images_of_another_size():
    from spaceevo_lib.export.metadata import Preprocessing
    pre = Preprocessing("NCHW", (28, 28), (0.5,) * 3, (0.25,) * 3, classes=("a", "b"))
    with pytest.raises(ValueError, match="images are 32x32; the file takes 28x28"):
        pre.apply(np.zeros((2, 32, 32, 3), np.uint8))
