"""The latency predictor: units and their costs, fitting, save/load, validation, rejection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spaceevo_lib.chapters.predictor import additivity_summary, load_predictor
from spaceevo_lib.predictor import (HEAD, LatencyPredictor, UnitRegressor, error_metrics,
                                    scale_subnet, subnet_units, target_hyperspace, unit_cost)
from spaceevo_lib.predictor.units import network_units
from spaceevo_lib.predictor.validation import (additivity_table, most_repeatable,
                                               repeatability_table, validation_table)
from spaceevo_lib.predictor.fusion import ACTIVATIONS, PROBES, build_probe, fusion_table
from spaceevo_lib.predictor.model import (KERNEL_FEATURES, REGRESSORS, compare_regressors,
                                          frame_units, latency_column, units_frame)
from spaceevo_lib.predictor.sampling import random_subnet, random_subnets
from spaceevo_lib.predictor.units import KERNEL_FEATURES as UNIT_KERNEL_FEATURES
from spaceevo_lib.space import EncodingError, SpaceChoice, get_hyperspace, random_space

from conftest import needs_reference  # noqa: E402

HS = "onnxw-train"  # the training scale: every unit builds and runs in milliseconds


def _subnets(n: int, seed: int = 0, hs: str = HS):
    return random_subnets(hs, n, np.random.default_rng(seed))


def _true_costs() -> np.ndarray:
    """A made-up 'device': a cost per kernel feature (ms per million)."""
    rng = np.random.default_rng(3)
    return rng.uniform(0.01, 0.5, len(UNIT_KERNEL_FEATURES)) / 1e6


def _latency(units, costs, noise=0.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.array([sum(unit_cost(u)[k] * c for k, c in zip(UNIT_KERNEL_FEATURES, costs)) + 0.002
                  for u in units])
    return y * (1 + noise * rng.standard_normal(len(y)))


def _tables(n_subnets=6, noise=0.0, composition=1.0, seed=0, per_weight=0.0, per_unit=0.0):
    """A synthetic training set in the measurement tables' layout; whole networks cost
    ``composition`` x their units + ``per_weight`` ms per million weights + ``per_unit`` ms
    per unit."""
    pairs = _subnets(n_subnets, seed)
    units = list(dict.fromkeys(u for sp, sub in pairs for u in subnet_units(sp, sub)))
    costs = _true_costs()
    ut = units_frame(units)
    for p, scale in (("fp32", 2.0), ("int8", 1.0)):
        y = _latency(units, costs * scale, noise, seed)
        ut[latency_column(p, "min")] = y
        ut[latency_column(p, "median")] = y * 1.05
    lat = {p: dict(zip(units, ut[latency_column(p, "min")])) for p in ("fp32", "int8")}
    whole = pd.DataFrame({"space": [s for s, _ in pairs], "subnet": [n for _, n in pairs],
                          "key": [f"k{i}" for i in range(len(pairs))]})
    for p in ("fp32", "int8"):
        nets = [subnet_units(s, n) for s, n in pairs]
        parts = np.array([sum(lat[p][u] for u in us) for us in nets]) * composition
        parts += np.array([per_weight * sum(unit_cost(u)["params"] for u in us) / 1e6
                           + per_unit * len(us) for us in nets])
        whole[latency_column(p, "min")] = parts
        whole[latency_column(p, "median")] = np.array(parts) * composition * 1.05
    return ut, whole, costs


# ----------------------------------------------------------------------------- units


def test_subnet_units_follow_the_network_and_end_with_the_head():
    sp, sub = _subnets(1)[0]
    units = subnet_units(sp, sub)
    assert units[0].code == "FirstConv" and units[0].cin == 3 and units[0].stride == 1  # the
    # training scale's stem (32-px images)
    assert units[-1].code == HEAD and units[-1].fe > 0 and units[-1].fm > 0
    assert len(units) == sum(int(d) for d in sub.split("_")[0][1:].split("#")) + 1
    for a, b in zip(units, units[1:-1]):  # each block takes the previous block's output
        assert b.cin == a.cout and b.hw == -(-a.hw // a.stride)


@pytest.mark.parametrize("hs", ["onnxw-train", "mobilew-train"])
def test_analytic_costs_equal_the_built_modules_counts(hs):
    from spaceevo_lib.predictor import build_unit
    from spaceevo_lib.predictor.units import unit_spec
    from spaceevo_lib.nn.flops import count_macs, count_params
    seen = set()
    for sp, sub in _subnets(12, seed=1, hs=hs):
        for u in subnet_units(sp, sub):
            if u.group in seen:
                continue
            seen.add(u.group)
            m = build_unit(**unit_spec(u)).eval()
            c = unit_cost(u)
            assert c["macs"] == count_macs(m, u.input_shape), u
            assert c["params"] == count_params(m), u
    assert len(seen) >= 6  # most block types were checked


@needs_reference
def test_seqnets_map_to_the_training_scale_hyperspace():
    from spaceevo_lib.predictor.sampling import seqnets
    nets = seqnets("onnxw-train")
    assert [n for n, _, _ in nets] == [f"SEQnet@vnni-A{i}" for i in range(5)]
    res = get_hyperspace("onnxw-train").resolutions
    assert all(int(sub.rsplit("_r", 1)[1]) in res for _, _, sub in nets)


def test_scale_subnet_refuses_an_unrelated_hyperspace():
    sp, sub = _subnets(1, hs="onnxw")[0]
    with pytest.raises(ValueError, match="not a scaled copy of onnxw"):
        scale_subnet(sub, sp, "mobilew-train")


# ----------------------------------------------------------------------------- fitting


@pytest.mark.parametrize("family", REGRESSORS)
def test_every_family_fits_a_tiny_table(family):
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS, family).fit(ut, whole)
    pairs = list(zip(whole.space, whole.subnet))
    pred = p.predict(pairs, "int8")
    assert pred.shape == (len(pairs),) and np.all(pred > 0)


def test_kernel_model_recovers_the_costs_of_a_linear_device():
    ut, whole, costs = _tables(n_subnets=10)
    units, y = frame_units(ut), ut[latency_column("int8", "min")].to_numpy()
    reg = UnitRegressor("kernel").fit(units, y)
    assert set(reg.kernel_costs) == set(KERNEL_FEATURES)
    assert all(c >= 0 for c in reg.kernel_costs.values())  # costs, never negative
    assert np.allclose(reg.predict(units), y, rtol=0.01)  # some features are collinear, so
    # the individual costs need not be unique, but the fitted latencies are exact
    p = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    pairs = list(zip(whole.space, whole.subnet))
    m = error_metrics(p.predict(pairs, "int8"), whole[latency_column("int8", "min")])
    assert m["within_5pct"] == 100.0, m


def test_scalar_composition_is_the_median_whole_over_parts():
    ut, whole, _ = _tables(composition=1.25)
    p = LatencyPredictor("ort-vnni", HS, "kernel", composition="scalar").fit(ut, whole)
    assert p.composition["int8"][0] == pytest.approx(1.25, rel=1e-3)
    add = additivity_table(ut, whole, "ort-vnni")
    assert np.allclose(add.sum_over_whole, 1 / 1.25, rtol=1e-3)
    s = additivity_summary(add)
    assert set(s.precision) == {"fp32", "int8"} and (s.within_10pct_of_median == 100).all()


def test_learned_composition_recovers_weight_streaming_and_call_costs():
    ut, whole, _ = _tables(n_subnets=16, composition=1.1, per_weight=0.05, per_unit=-0.001)
    p = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    a, b, c, d = p.composition["int8"]
    assert (a, b, c, d) == pytest.approx((1.1, 0.05, -0.001, 0.0), rel=0.02, abs=1e-4)
    pairs = list(zip(whole.space, whole.subnet))
    learned = error_metrics(p.predict(pairs, "int8"), whole[latency_column("int8", "min")])
    scalar = LatencyPredictor("ort-vnni", HS, "kernel", composition="scalar").fit(ut, whole)
    one = error_metrics(scalar.predict(pairs, "int8"), whole[latency_column("int8", "min")])
    assert learned["rmspe_pct"] < 1 < one["rmspe_pct"]
    assert p.composition_loo["int8"]["form"] == "four terms"
    with pytest.raises(ValueError, match="composition must be one of"):
        LatencyPredictor("ort-vnni", HS, composition="median")


def test_four_terms_are_kept_only_where_they_beat_one_factor_left_one_out():
    """Whole networks that are one factor times their blocks, plus timing noise: four terms
    fitted on ten of them chase the noise, leave-one-out shows it, and one factor is kept."""
    from spaceevo_lib.predictor.model import composition_loo
    ut, whole, _ = _tables(n_subnets=10, composition=1.2)
    rng = np.random.default_rng(0)
    for p in ("fp32", "int8"):
        col = latency_column(p, "min")
        whole[col] = whole[col] * (1 + 0.06 * rng.standard_normal(len(whole)))
    pred = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    for p in ("fp32", "int8"):
        loo = pred.composition_loo[p]
        assert loo["form"] == "one factor" and loo["one_factor"] <= loo["four_terms"]
        assert pred.composition[p][1:] == (0.0, 0.0, 0.0)
    # the scores are leave-one-out: a perfect one-factor set scores 0 for one factor
    x = np.c_[np.arange(1.0, 9.0), np.ones(8), np.arange(8.0), np.ones(8) * 2]
    assert composition_loo(x, 1.5 * x[:, 0])["one_factor"] == pytest.approx(0, abs=1e-9)


def test_the_statistic_chooses_the_columns():
    ut, whole, _ = _tables()
    a = LatencyPredictor("ort-vnni", HS, "kernel", stat="min").fit(ut, whole)
    b = LatencyPredictor("ort-vnni", HS, "kernel", stat="median").fit(ut, whole)
    pairs = list(zip(whole.space, whole.subnet))
    assert np.allclose(b.predict(pairs, "fp32") / a.predict(pairs, "fp32"), 1.05, rtol=0.02)
    with pytest.raises(ValueError, match="statistic must be one of"):
        LatencyPredictor("ort-vnni", HS, stat="norm")


def test_compare_regressors_reports_every_family_and_precision():
    ut, _, _ = _tables()
    cmp = compare_regressors(ut, folds=3)
    assert len(cmp) == 2 * len(REGRESSORS)
    assert cmp.unit_rmspe_pct.notna().all()


def test_fit_rejects_impossible_latencies():
    ut, whole, _ = _tables()
    ut.loc[0, latency_column("int8", "min")] = -1.0
    with pytest.raises(ValueError, match="finite and > 0"):
        LatencyPredictor("ort-vnni", HS).fit(ut, whole)


# ----------------------------------------------------------------------------- the search API


def test_batch_prediction_equals_one_by_one_and_takes_subnet_objects():
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS).fit(ut, whole)
    sp = SpaceChoice.decode(whole.space[0])
    rng = np.random.default_rng(5)
    subs = [random_subnet(sp, rng) for _ in range(20)]
    batch = p.predict(subs, "int8", space=sp)
    single = np.array([p.predict([s.encode()], "int8", space=sp.encode())[0] for s in subs])
    assert np.allclose(batch, single)
    assert p.predict([], "int8", space=sp).shape == (0,)


def test_descriptions_outside_the_hyperspace_are_refused_clearly():
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS).fit(ut, whole)
    sp, sub = whole.space[0], whole.subnet[0]
    with pytest.raises(EncodingError, match="r: onnxw-train allows resolutions"):
        p.predict([sub.rsplit("_r", 1)[0] + "_r999"], "int8", space=sp)
    d, k, w, e, r = sub.split("_")
    wide = "_".join([d, k, "w999#" + w[1:].split("#", 1)[1], e, r])  # first width not allowed
    with pytest.raises(EncodingError, match="w:"):
        p.predict([wide], "int8", space=sp)
    other = random_space(get_hyperspace("mobilew-train"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="covers hyperspace 'onnxw-train' only"):
        p.predict([random_subnet(other, np.random.default_rng(0))], "int8", space=other)
    with pytest.raises(ValueError, match="precision must be one of"):
        p.predict([sub], "int4", space=sp)
    with pytest.raises(TypeError, match="give \\(space, subnet\\) pairs"):
        p.predict([sub], "int8")


# ----------------------------------------------------------------------------- persistence


def test_save_and_load_refit_to_the_same_predictions(tmp_path):
    ut, whole, _ = _tables()
    p = LatencyPredictor("tflite", HS, "kernel+gbr", seed=2).fit(ut, whole)
    p.save(tmp_path)
    meta = json.loads((tmp_path / f"predictor-tflite@{HS}.json").read_text())
    assert meta["family"] == "kernel+gbr" and meta["hyperspace"] == HS
    assert not list(tmp_path.glob("*.pkl"))  # tables and JSON only: no pickles
    q = LatencyPredictor.load(tmp_path, f"predictor-tflite@{HS}")
    pairs = _subnets(5, seed=9)
    for prec in ("fp32", "int8"):
        assert np.allclose(p.predict(pairs, prec), q.predict(pairs, prec))


def test_load_predictor_by_device_name_and_a_clear_miss(runs):
    from spaceevo_lib.store import Run
    ut, whole, _ = _tables()
    LatencyPredictor("ort-vnni", HS).fit(ut, whole).save(Run("predictor", "smoke").path)
    assert load_predictor("ort-vnni", "train", "smoke").hyperspace == HS
    with pytest.raises(FileNotFoundError, match=f"saved: predictor-ort-vnni@{HS}"):
        load_predictor("tflite", "train", "smoke")
    with pytest.raises(KeyError, match="unknown scale"):
        load_predictor("ort-vnni", "cpu32", "smoke")


def test_a_predictor_of_an_older_protocol_is_refused(tmp_path):
    from spaceevo_lib.latency import ProtocolMismatch
    ut, whole, _ = _tables()
    path = LatencyPredictor("ort-vnni", HS).fit(ut, whole).save(tmp_path)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "protocol_version": 1}))
    with pytest.raises(ProtocolMismatch, match="Rerun the predictor chapter"):
        LatencyPredictor.load(tmp_path, path.stem)


# ----------------------------------------------------------------------------- validation


def test_error_metrics_are_nn_meters():
    m = error_metrics(np.array([1.0, 1.08, 1.2, 0.5]), np.array([1.0, 1.0, 1.0, 1.0]))
    assert m["n"] == 4
    assert m["within_5pct"] == 25.0 and m["within_10pct"] == 50.0 and m["within_15pct"] == 50.0
    assert m["rmspe_pct"] == pytest.approx(100 * np.sqrt((0 + 0.0064 + 0.04 + 0.25) / 4))
    assert m["rmse_ms"] == pytest.approx(np.sqrt((0 + 0.0064 + 0.04 + 0.25) / 4))


def test_a_unit_outside_the_fitted_range_is_named_by_its_feature():
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    fitted = p.units_table.iloc[0]
    inside = frame_units(p.units_table)[:5]
    assert p.out_of_range([inside]) == []
    p.check_range([inside])
    code = fitted["code"]
    top = p.units_table[p.units_table.code == code].cout.max()
    wide = inside[0]._replace(code=code, cout=int(top) + 8)
    msg = p.out_of_range([[wide]])
    assert len(msg) == 1 and f"a {code} block with cout = {int(top) + 8} is outside" in msg[0]
    with pytest.raises(ValueError, match=f"{code} block with cout"):
        p.check_range([inside, [wide]])
    unseen = inside[0]._replace(code="NoSuchBlock")
    assert "fitted on no NoSuchBlock block" in p.out_of_range([[unseen]])[0]


def test_the_share_within_10pct_carries_its_wilson_interval():
    from spaceevo_lib.predictor.model import wilson_interval
    lo, hi = wilson_interval(24, 25)  # Wilson (1927); the textbook value for 24 of 25
    assert lo == pytest.approx(80.46, abs=0.01) and hi == pytest.approx(99.29, abs=0.01)
    assert wilson_interval(25, 25)[1] == 100.0 and wilson_interval(0, 10)[0] == pytest.approx(0)
    lo60, hi60 = wilson_interval(57, 60)  # more networks, a narrower interval
    assert hi60 - lo60 < hi - lo
    m = error_metrics(np.array([1.0, 1.08, 1.2, 0.5]), np.ones(4))
    assert (m["within_10pct_ci_low"], m["within_10pct_ci_high"]) == wilson_interval(2, 4)


def test_the_target_applies_to_int8_everywhere_and_fp32_at_the_training_scale():
    from spaceevo_lib.chapters.predictor import side_by_side, summary_records, target_applies
    assert target_applies("int8", "onnxw") and target_applies("int8", "mobilew-train")
    assert target_applies("fp32", "onnxw-train") and not target_applies("fp32", "mobilew")
    keys = [("tflite", "mobilew", "fp32", 90.0), ("tflite", "mobilew", "int8", 96.0),
            ("tflite", "mobilew-train", "fp32", 94.0), ("tflite", "onnxw-train", "int8", 95.0)]
    repeat = pd.DataFrame([{"device": d, "hyperspace": h, "precision": p, "statistic": "min",
                            "n": 60, "within_10pct": 100.0, "rmspe_pct": 1.0, "used": True}
                           for d, h, p, _ in keys])
    metrics = pd.DataFrame([{"device": d, "hyperspace": h, "precision": p,
                             "composition": "learned", "n": 60, "within_10pct": w,
                             "within_10pct_ci_low": w - 8, "within_10pct_ci_high": w + 2,
                             "within_5pct": 50.0, "within_15pct": 100.0, "rmspe_pct": 4.0,
                             "rmse_ms": 0.01} for d, h, p, w in keys])
    side = side_by_side(repeat, metrics)
    assert side.target_met.tolist() == [None, True, False, True]  # judged on the point
    names = {r["name"]: r["value"] for r in summary_records(side, metrics)}
    assert names["within_10pct_ci_low/tflite/fp32/train-scale"] == 86.0
    assert names["within_10pct_ci_high/tflite/int8/onnxw-train"] == 97.0
    assert names["validated_subnets/tflite/int8"] == 60


def test_validation_and_split_half_repeatability_tables():
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    measured = whole.assign(name="random", n_units=[len(subnet_units(s, n)) for s, n in
                                                     zip(whole.space, whole.subnet)])
    v = validation_table(p, measured)
    assert len(v) == 2 * len(whole) and v.error_pct.abs().max() < 5
    rng = np.random.default_rng(0)
    for prec in ("fp32", "int8"):  # halves: min repeats within 2 %, the others by 20 %
        for st, spread in (("min", 0.02), ("median_of_min", 0.2), ("median", 0.2)):
            base = rng.uniform(1, 3, len(measured))
            measured[latency_column(prec, st, "a")] = base
            measured[latency_column(prec, st, "b")] = base * (1 + spread * rng.choice(
                [-1, 1], len(base)))
    r = repeatability_table(measured, "ort-vnni", HS)
    assert len(r) == 6 and set(r.statistic) == {"min", "median_of_min", "median"}
    assert (r[r.statistic == "min"].within_5pct == 100).all()
    assert (r[r.statistic != "min"].within_10pct == 0).all()
    assert most_repeatable(r) == "min"


def test_fusion_verdicts_follow_the_rule():
    rows = []
    for probe in PROBES:
        alone = {"relu": 0.05, "relu6": 0.05, "hswish": 0.05, "swish": 0.05}.get(probe)
        t = alone if alone else {"conv": 1.0, "conv+bn": 1.0, "conv+bn+relu": 1.0,
                                 "conv+bn+relu6": 1.01, "conv+bn+hswish": 1.05,
                                 "conv+bn+swish": 1.04}[probe]
        rows.append({"device": "d", "probe": probe, "fp32_median_ms": t, "int8_median_ms": t})
    table = fusion_table(pd.DataFrame(rows)).set_index(["precision", "operator"])
    assert table.loc[("int8", "bn"), "verdict"] == "folded"
    assert table.loc[("int8", "relu"), "verdict"] == "fused"
    assert table.loc[("int8", "relu6"), "verdict"] == "fused"
    assert table.loc[("int8", "hswish"), "verdict"] == "separate kernel"
    assert table.loc[("int8", "swish"), "verdict"] == "separate kernel"
    import torch
    for p in PROBES:
        m = build_probe(p, 8).eval()
        assert m(torch.zeros(1, 8, 6, 6)).shape == (1, 8, 6, 6)
    assert set(ACTIVATIONS) < set(PROBES)


def test_target_hyperspaces_follow_the_papers_pairing():
    assert target_hyperspace("ort-vnni", "paper") == "onnxw"
    assert target_hyperspace("ort-vnni", "train") == "onnxw-train"
    assert target_hyperspace("tflite-noxnn", "train") == "mobilew-train"
    with pytest.raises(KeyError, match="no hyperspace paired"):
        target_hyperspace("gpu", "paper")
    with pytest.raises(KeyError, match="unknown scale"):
        target_hyperspace("tflite", "huge")


def test_mobilenet_v2_is_priced_from_the_hyperspaces_units():
    from spaceevo_lib.nn.models import create_model
    from spaceevo_lib.predictor.units import BASELINES, baseline_units
    from spaceevo_lib.nn.flops import count_macs, count_params
    units = baseline_units("mobilenet_v2", 96)
    model = create_model("mobilenet_v2")
    assert sum(unit_cost(u)["macs"] for u in units) == count_macs(model, (1, 3, 96, 96))
    assert sum(unit_cost(u)["params"] for u in units) == count_params(model)
    assert units[-1].fm == 0 and {u.code for u in units[1:-1]} == {"MBv2"}
    assert BASELINES == ("mobilenet_v2",)
    with pytest.raises(KeyError, match="BasicBlock"):
        baseline_units("resnet18", 96)
    ut, whole, _ = _tables()
    p = LatencyPredictor("ort-vnni", HS, "kernel").fit(ut, whole)
    assert p.predict_unit_lists([units], "int8")[0] > 0
    # at the training scale: 10 classes and the stem at stride 1, as the subnets have
    small = baseline_units("mobilenet_v2", 32, 10, stem_stride=1)
    m32 = create_model("mobilenet_v2", n_classes=10, stem_stride=1)
    assert sum(unit_cost(u)["macs"] for u in small) == count_macs(m32, (1, 3, 32, 32))
    assert network_units("torchvision", "mobilenet_v2@r32/c10/s1") == small
    assert network_units("torchvision", "mobilenet_v2@r96") == units


def test_the_fast_space_path_gives_the_same_units_and_errors():
    from spaceevo_lib.predictor.units import SpaceUnits
    for sp, sub in _subnets(20, seed=4):
        assert SpaceUnits(sp)(sub) == subnet_units(sp, sub)
    sp, sub = _subnets(1)[0]
    with pytest.raises(EncodingError, match="r: onnxw-train allows resolutions"):
        SpaceUnits(sp)(sub.rsplit("_r", 1)[0] + "_r999")


def test_measurement_summary_counts_only_measurement_tables(runs):
    from spaceevo_lib.chapters.predictor import measurement_summary
    from spaceevo_lib.store import Run
    run = Run("predictor", "smoke")
    t = pd.DataFrame({"timestamp": ["2026-01-01T00:00:00+00:00", "2026-01-01T00:10:00+00:00"]})
    run.save(t, "units-ort-vnni")
    run.save(t.iloc[:1], "fusion")
    run.save(t.assign(timestamp="2027-01-01T00:00:00+00:00"), "metrics")  # derived: ignored
    assert measurement_summary(run) == (3, 10.0)


# ----------------------------------------------------------------------------- training scale


def test_training_scale_rule_is_applied_as_written():
    from spaceevo_lib.chapters.predictor import (CANDIDATES, FROZEN, MIN_TRAIN_IMAGES_PER_S,
                                                 scale_verdicts)
    t = pd.DataFrame({
        "scale": ["paper", "small", "mid", "big"],
        "max_speedup": [3.0, 1.4, 2.9, 3.2], "mobilenet_v3_small_speedup": [0.8, 0.9, 1.0, 0.9],
        "max_mflops": [5000.0, 20.0, 130.0, 400.0],
        "max_train_images_per_s": [np.nan, 200.0, 80.0, MIN_TRAIN_IMAGES_PER_S - 1]})
    v = scale_verdicts(t).set_index("scale")
    assert list(v.story_kept) == [True, False, True, True]  # small: max gains < 1.5x
    assert list(v.trainable) == [False, True, True, False]  # big: too slow to train here
    assert v.pick.sum() == 1 and v.loc["mid", "pick"]  # kept + trainable, the largest such
    nothing = scale_verdicts(t.assign(max_speedup=1.2)).set_index("scale")
    assert nothing.loc["small", "pick"] or nothing.loc["mid", "pick"]  # closest, said so
    assert FROZEN in {c.label for c in CANDIDATES}
    assert next(c for c in CANDIDATES if c.label == FROZEN).hyperspace() == \
        get_hyperspace("onnxw-train")  # the frozen candidate is the registered scale


def test_stem_stride_one_keeps_everything_else_of_a_torchvision_model():
    from spaceevo_lib.nn.models import create_model
    from spaceevo_lib.nn.flops import count_macs
    a, b = create_model("mobilenet_v3_small", 10), create_model("mobilenet_v3_small", 10,
                                                                 stem_stride=1)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert count_macs(b, (1, 3, 32, 32)) > 2 * count_macs(a, (1, 3, 32, 32))
    with pytest.raises(ValueError, match="stem_stride"):
        create_model("mobilenet_v2", stem_stride=3)


def test_seven_by_seven_depthwise_convs_are_priced_on_their_own():
    from spaceevo_lib.predictor.units import Unit
    base = dict(act="relu6", cin=32, cout=32, e=6.0, stride=1, hw=8, fe=0, fm=0)
    k5, k7 = unit_cost(Unit("MBv2Res", k=5, **base)), unit_cost(Unit("MBv2Res", k=7, **base))
    assert k5["dw7_count"] == k5["macs_dw7"] == 0
    assert k7["dw7_count"] == 1 and k7["macs_dw7"] == k7["macs_dw"] == 192 * 49 * 64
    stacked = unit_cost(Unit("MBv2K3Res", k=7, **base))  # three 3x3: not a 7x7 kernel
    assert stacked["dw7_count"] == 0 and stacked["macs_dw"] == 3 * 192 * 9 * 64


def test_depthwise_kernel_costs_show_a_slow_large_kernel():
    from spaceevo_lib.chapters.predictor import depthwise_kernel_costs
    from spaceevo_lib.predictor.units import Unit
    units = [Unit("MBv2Res", "relu6", c, c, k, 6.0, 1, 8, 0, 0)
             for k in (3, 5, 7) for c in (16, 32, 48)]
    t = units_frame(units)
    for p in ("fp32", "int8"):  # a device whose 7x7 depthwise costs 10x its MACs' worth
        t[latency_column(p, "min")] = [
            (unit_cost(u)["macs"] + 9 * unit_cost(u)["macs_dw7"]) / 1e9 for u in units]
    d = depthwise_kernel_costs(t, "dev", HS).set_index(["precision", "k"])
    assert d.loc[("int8", 5), "vs_k5"] == pytest.approx(1.0)
    assert d.loc[("int8", 7), "vs_k5"] > 2.5 and d.loc[("fp32", 3), "blocks"] == 3
    assert depthwise_kernel_costs(t.iloc[:0]).empty


def test_wholes_are_timed_with_their_own_protocol_and_blocks_with_half_the_visits(monkeypatch):
    """The ground truth (whole networks) gets the longer ``whole_protocol``; blocks, the many
    cheap training data, ``protocol`` at half its visits."""
    from spaceevo_lib.latency.protocol import Protocol
    from spaceevo_lib.predictor.build import PredictorSettings, build_predictor
    from spaceevo_lib.predictor.sampling import Measurer
    seen = {}

    class Stop(Exception):
        pass

    def units(self, units, table="units"):
        seen["units"] = self.protocol
        return pd.DataFrame({"key": []})

    def networks(self, jobs, table="wholes"):
        seen["wholes"] = self.protocol
        raise Stop

    monkeypatch.setattr(Measurer, "units", units)
    monkeypatch.setattr(Measurer, "networks", networks)
    blocks, wholes = Protocol(visits=8, budget_ms=20), Protocol(visits=8, budget_ms=50)
    with pytest.raises(Stop):
        build_predictor("ort-vnni", HS, None, np.zeros((1, 3, 32, 32), np.float32),
                        PredictorSettings(additivity_subnets=1, rounds=0, train_subnets=1,
                                          validation_subnets=1, baselines=(),
                                          include_seqnets=False),
                        protocol=blocks, whole_protocol=wholes)
    assert seen["wholes"] == wholes
    assert seen["units"].budget_ms == 20 and seen["units"].visits == 4


def test_a_cross_target_prices_another_devices_hyperspace_under_its_own_names():
    """tflite's predictor of onnxw-train (the search chapter's Table 1 (b)) is a target of its
    own: apart from tflite's mobilew-train in tables, settings and record names."""
    from spaceevo_lib import config
    from spaceevo_lib.chapters import predictor as chapter
    cfg = config.chapter_config("predictor", profile="smoke", cross_targets="tflite:onnxw",
                                cross_validation_subnets=30, device="ort-vnni,tflite")
    the_plan = chapter.plan(cfg)
    assert the_plan.targets[("tflite", "onnxw-train")] == "onnxw-train"
    assert the_plan.targets[("tflite", "train")] == "mobilew-train"
    assert the_plan.settings["onnxw-train"].validation_subnets == 30
    assert the_plan.settings["train"].validation_subnets == cfg.validation_subnets
    assert chapter.scale_suffix("onnxw-train", "tflite") == "/onnxw-train"
    assert chapter.scale_suffix("mobilew-train", "tflite") == "/train-scale"
    assert chapter.scale_suffix("onnxw", "ort-vnni") == ""
    none = chapter.plan(config.chapter_config("predictor", profile="smoke"))
    assert all(sc in ("train", "paper") for _, sc in none.targets)
    with pytest.raises(config.ParameterError):
        config.chapter_config("predictor", profile="smoke", cross_targets="tflite:nope")


def test_range_corners_reach_every_stages_extreme_widths_and_sides_for_every_block():
    """The range corners put every block type at each stage's narrowest and widest widths, at
    the smallest and the largest input side: the ends random subnets rarely reach."""
    from spaceevo_lib.predictor.sampling import located_units, range_corners
    from spaceevo_lib.space import get_hyperspace
    hs = get_hyperspace(HS)
    located = located_units(range_corners(hs))
    res_lo, res_hi = min(hs.resolutions), max(hs.resolutions)
    for b in hs.blocks:
        for stage in hs.searchable_stages:
            widths = hs.stage(stage).widths
            us = [u for u, _, st in located if st == stage and u.code == b.code]
            assert {min(widths), max(widths)} <= {u.cout for u in us}, (b.code, stage)
            before = hs.stride_before(int(stage[-1]))
            assert {-(-res_lo // before), -(-res_hi // before)} <= {u.hw for u in us}, stage
    # deterministic: no random draw involved
    assert range_corners(hs) == range_corners(HS)


def test_the_first_adaptive_round_probes_the_range_corners_and_marks_them(monkeypatch):
    """With ``range_corners`` the first round's probe holds every corner unit not yet measured
    (marked ``range`` in the units table), beside the random probe; without, only the random
    probe (the same units as before the corners existed)."""
    from spaceevo_lib.predictor.build import PredictorSettings, build_predictor
    from spaceevo_lib.predictor.sampling import Measurer, located_units, range_corners
    from spaceevo_lib.predictor.units import unit_cost, unit_spec

    class Stop(Exception):
        pass

    def run(corners: bool) -> pd.DataFrame:
        seen = []

        def units(self, us, table="units"):
            seen.extend(us)
            rows = [{"key": str(hash(u)), **unit_spec(u)} for u in us]
            df = pd.DataFrame(rows, columns=["key", *unit_spec(us[0]).keys()] if us else None)
            for p in ("fp32", "int8"):
                df[f"{p}_min_ms"] = [1e-3 + unit_cost(u)["macs"] / 1e8 for u in us]
            return df

        def networks(self, jobs, table="wholes"):
            raise Stop(seen)

        monkeypatch.setattr(Measurer, "units", units)
        monkeypatch.setattr(Measurer, "networks", networks)
        with pytest.raises(Stop) as stop:
            build_predictor("ort-vnni", HS, None, np.zeros((1, 3, 32, 32), np.float32),
                            PredictorSettings(additivity_subnets=1, rounds=1, probe_units=3,
                                              refine_units=0, train_subnets=1,
                                              validation_subnets=1, baselines=(),
                                              include_seqnets=False, range_corners=corners,
                                              regressor="kernel", stat="min"))
        return stop.value.args[0]

    corner_units = {u for u, _, _ in located_units(range_corners(HS))}
    with_corners, without = run(True), run(False)
    assert corner_units <= set(with_corners)
    assert not corner_units <= set(without)
    assert set(without) <= set(with_corners)  # the random probe is the same draw


def test_error_sources_without_range_corners_are_the_same_measurements_refitted():
    """The "before" rows refit the predictor on every unit but the range corners (same
    measurements otherwise) and add how far off the corner blocks are when never seen; a
    latency law the random units cannot reveal at the ends shows there."""
    from spaceevo_lib.predictor.build import without_range_corners
    from spaceevo_lib.predictor.model import frame_units
    from spaceevo_lib.predictor.sampling import located_units, random_subnets, range_corners
    from spaceevo_lib.predictor.units import subnet_units, unit_cost, unit_spec

    def ms(u):  # superlinear in width: the widest blocks cost more than a line predicts
        return 1e-3 + unit_cost(u)["macs"] / 1e8 * (1 + (u.cout / 100) ** 2)

    def table(us, sampled):
        df = pd.DataFrame([unit_spec(u) for u in us]).assign(sampled=sampled)
        df.insert(0, "key", [str(hash(u)) for u in us])
        for p in ("fp32", "int8"):
            df[f"{p}_min_ms"] = [ms(u) for u in us]
        return df

    rng = np.random.default_rng(0)
    random_units = list(dict.fromkeys(u for u, _, _ in located_units(
        random_subnets(HS, 12, rng))))
    corners = [u for u in dict.fromkeys(u for u, _, _ in located_units(range_corners(HS)))
               if u not in set(random_units)]
    units = pd.concat([table(random_units, "probe"), table(corners, "range")],
                      ignore_index=True)

    def wholes(pairs, role):
        rows = []
        for sp, sub in pairs:
            t = sum(ms(u) for u in subnet_units(sp, sub))
            rows.append({"space": sp, "subnet": sub, "name": "random", "role": role,
                         "n_units": len(subnet_units(sp, sub)),
                         **{f"{p}_min{h}_ms": t for p in ("fp32", "int8")
                            for h in ("", "_a", "_b")}})
        return pd.DataFrame(rows)

    fit_df, val_df = wholes(random_subnets(HS, 10, rng), "train"), wholes(
        random_subnets(HS, 6, rng), "validation")
    repeat = pd.DataFrame({"precision": ["fp32", "int8"], "statistic": "min", "used": True,
                           "within_10pct": 100.0, "rmspe_pct": 1.0})
    additivity = pd.DataFrame({"precision": ["fp32", "int8"], "sum_over_whole": 1.0})
    out = without_range_corners(units, fit_df, val_df, repeat, additivity, "kernel", 0, "min",
                                "ort-vnni", HS)
    assert set(out.units) == {"without range corners"}
    corner_rows = out[out.source == "range-corner blocks, predicted without them"]
    assert list(corner_rows.precision) == ["fp32", "int8"]
    # the corner blocks, predicted by regressors that never saw them, are worse than the
    # cross-validated blocks the regressors saw
    cv = out[out.source == "one block, predicted (cross-validated)"]
    assert (corner_rows.rmspe_pct.to_numpy() > cv.rmspe_pct.to_numpy()).all()
    assert len(frame_units(units)) == len(units)


def test_a_missed_target_is_traced_to_its_largest_error_source():
    """Only settings judged and missed are listed; each names the source (measurement, blocks,
    composition) with the largest RMSPE, from the fit with range corners."""
    from spaceevo_lib.chapters import predictor as chapter
    side = pd.DataFrame({"device": ["ort-vnni", "ort-vnni", "tflite"],
                         "hyperspace": ["onnxw-train", "onnxw-train", "mobilew"],
                         "precision": ["fp32", "int8", "fp32"],
                         "within_10pct": [42.0, 98.0, 80.0], "within_10pct_ci_low": [30.0] * 3,
                         "within_10pct_ci_high": [55.0] * 3,
                         "target_met": [False, True, None]})
    rows = []
    for units, comp in (("without range corners", 50.0), ("with range corners", 20.8)):
        for src, rmspe in (("ground truth: two halves of the visits", 5.3),
                           ("one block, predicted (cross-validated)", 15.7),
                           ("measured blocks x one factor (additivity set)", comp),
                           ("held-out networks, learned composition", 16.2)):
            rows.append({"device": "ort-vnni", "hyperspace": "onnxw-train", "precision": "fp32",
                         "source": src, "rmspe_pct": rmspe, "within_10pct": 50.0,
                         "units": units})
    out = chapter.misses(side, pd.DataFrame(rows))
    assert out[["device", "precision"]].values.tolist() == [["ort-vnni", "fp32"]]
    assert out["largest source"][0].startswith("composition")
    assert out["its rmspe_pct"][0] == 20.8
