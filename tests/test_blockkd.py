"""Block-wise distillation: the teacher cut, the NSR, the stage students and their resumable
training, the lookup-table format, own spaces and the chapter's verdict rules."""

import numpy as np
import pandas as pd
import pytest
import torch

from spaceevo_lib.blockkd import BlockKDError, FeatureBank, StageStudent, nsr, stage_boundaries
from spaceevo_lib.blockkd import jobs as kd
from spaceevo_lib.blockkd import spaces as own
from spaceevo_lib.chapters import blockkd as chapter
from spaceevo_lib.chapters.blockkd import verdicts
from spaceevo_lib.blockkd import tables as luts
from spaceevo_lib.blockkd import teacher as kd_teacher
from spaceevo_lib.blockkd.students import SubStage, initialise_quantizers, train_student
from spaceevo_lib.blockkd.teacher import check_teacher
from spaceevo_lib.data.reference import read_lut_csv
from spaceevo_lib.supernet.quantized import QDynamicConv2d, quantize_elastic
from spaceevo_lib.supernet.elastic import DynamicConv2d
from spaceevo_lib.train.config import TrainConfig
from spaceevo_lib.train.networks import teacher_network
from spaceevo_lib.train.sandwich import sandwich_loss

from kill_helpers import FakePredictor

RES = (24, 28, 32)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return teacher_network("mobilew-train", n_classes=10).eval()


@pytest.fixture(scope="module")
def bank(teacher):
    torch.manual_seed(1)
    x = torch.randn(48, 3, 32, 32)
    return FeatureBank.build(stage_boundaries(teacher), x, n_train=32, resolutions=RES)


def test_teacher_split_features_equal_the_whole_teachers_forward(teacher):
    split = stage_boundaries(teacher)
    x = torch.randn(4, 3, 32, 32)
    assert kd_teacher.split_agreement(teacher, split, x) == 0.0
    # boundary j is what stage j+1 of the teacher reads
    with torch.no_grad():
        h = teacher.stage0(teacher.first_conv(x))
        feats = split(x)
        assert torch.equal(feats[0], h)
        assert torch.equal(feats[1], teacher.stage1(h))
    assert [s for _, s in check_teacher(split, "onnxw-train", 32)] == [32, 16, 8, 4, 4, 2, 2]


def test_the_int8_teacher_is_cut_by_the_same_rule(teacher):
    from spaceevo_lib.quant import quantize_model
    x = torch.randn(8, 3, 32, 32)
    q = quantize_model(teacher).train()
    with torch.no_grad():
        q(x)
    q.eval()
    with torch.no_grad():
        f32, f8 = stage_boundaries(teacher)(x), stage_boundaries(q)(x)
    assert [t.shape for t in f32] == [t.shape for t in f8]
    for a, b in zip(f32, f8):  # the INT8 features are near the FP32 ones, not equal
        assert not torch.equal(a, b)
        assert float((a - b).pow(2).mean() / a.var()) < 0.05


def test_a_teacher_with_other_strides_is_refused():
    t = teacher_network("mobilew", n_classes=10).eval()  # paper scale: stem stride 2
    with pytest.raises(BlockKDError, match="strides do not match hyperspace 'mobilew-train'"):
        check_teacher(stage_boundaries(t), "mobilew-train", 32)


def test_nsr_on_a_hand_computed_example():
    y = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    s = torch.tensor([[[[2.0, 3.0]], [[1.0, -1.0]]]])
    var = torch.tensor([1.0, 4.0])
    # channel 0: mean((1, 0)^2) / 1 = 0.5; channel 1: mean((1, -1)^2) / 4 = 0.25
    assert float(nsr(s, y, var)) == pytest.approx((0.5 + 0.25) / 2)
    assert float(nsr(y, y, var)) == 0.0
    with pytest.raises(BlockKDError, match="does not match"):
        nsr(s[:, :1], y, var)


def test_bank_holds_every_boundary_and_the_teachers_variance(bank):
    assert bank.n_images == 48 and bank.resolutions == RES
    x_in, y_out = bank.pair(3, 32, slice(0, 5))
    assert x_in.shape[0] == 5 and y_out.shape[-1] == x_in.shape[-1] // 2  # stage3 stride 2
    held = bank.features[28][4][32:]
    want = held.transpose(0, 1).flatten(1).var(1, unbiased=False)
    assert torch.allclose(bank.variance[28][4], want)


def test_sandwich_runs_max_min_then_random_and_sums_their_losses(bank):
    st = StageStudent("onnxw-train", 6, 1, *bank.channels(6), RES)
    seen = []

    def pass_loss(net, kind, sub):
        seen.append((kind, sub))
        return torch.tensor(float(len(seen)))
    loss, parts = sandwich_loss(st, np.random.default_rng(0), pass_loss, n_random=2)
    assert [k for k, _ in seen] == ["max", "min", "random", "random"]
    assert seen[0][1].resolution == 32 and seen[1][1].resolution == 24
    assert seen[0][1].depth == max(st.stage_spec.depths)
    assert float(loss) == 10.0 and parts == {"max": 1.0, "min": 2.0, "random": 3.5}


def test_student_settings_stay_in_the_hyperspace_and_windows(bank):
    st = StageStudent("mobilew-train", 4, 2, *bank.channels(4), RES)
    rng = np.random.default_rng(0)
    window = st.stage_spec.window(1)
    for _ in range(20):
        sub = st.sample_random(rng, window=1)
        assert all(w in window for _, w, _ in sub.blocks)
        out = st(bank.pair(4, sub.resolution, slice(0, 2))[0])
        assert out.shape == bank.pair(4, sub.resolution, slice(0, 2))[1].shape
    assert SubStage(16, ((3, 24, 4.0), (5, 32, None)), 32).arch == "3#24#4_5#32#0"
    with pytest.raises(BlockKDError, match="stage must be 1..6"):
        StageStudent("mobilew-train", 7, 0, 8, 8, RES)


def test_elastic_quantization_swaps_every_conv_and_learns_its_scales(bank):
    st = StageStudent("onnxw-train", 5, 4, *bank.channels(5), RES)
    q = quantize_elastic(st).train()
    convs = [m for m in q.modules() if isinstance(m, QDynamicConv2d)]
    assert convs and len(convs) == sum(1 for m in st.modules()
                                       if type(m).__name__ == "DynamicConv2d")
    # every quantizer, also of convs only some settings use (shortcuts), is initialised
    assert initialise_quantizers(q, bank) == 0
    assert all(bool(c.input_quantizer.initialized) and bool(c.weight_quantizer.initialized)
               for c in convs)
    x, y = bank.pair(5, 32, slice(0, 8))
    loss = nsr(q(x), y, bank.variance[32][5])
    loss.backward()
    assert any(c.input_quantizer.scale.grad is not None and
               float(c.input_quantizer.scale.grad.abs()) > 0 for c in convs)
    q.eval()  # and every setting evaluates (no quantizer left uninitialised)
    rng = np.random.default_rng(0)
    for _ in range(10):
        sub = q.sample_random(rng)
        with torch.no_grad():
            q(bank.pair(5, sub.resolution, slice(0, 2))[0])


def test_quantizer_ranges_come_from_batch_statistics_not_stale_running_ones(bank):
    # after sandwich training, BN running statistics mix settings; ranges set from them made
    # deep INT8 students start 1e6 x worse than their FP32 selves (the chapter's first run)
    st = StageStudent("onnxw-train", 2, 5, *bank.channels(2), RES)
    q_clean = quantize_elastic(st)
    for m in st.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(1e-6)  # stale statistics that would blow activations up
    q_stale = quantize_elastic(st)
    initialise_quantizers(q_clean, bank)
    before = {k: v.clone() for k, v in q_stale.state_dict().items() if "running" in k}
    initialise_quantizers(q_stale, bank)
    after = q_stale.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # restored
    sc, ss = q_clean.state_dict(), q_stale.state_dict()
    for k in sc:
        if k.endswith(("input_quantizer.scale", "weight_quantizer.scale")):
            assert torch.allclose(sc[k], ss[k]), k


def _cfg(epochs):
    return TrainConfig(epochs=epochs, batch_size=16, optimizer="adamw", lr=0.005,
                       warmup_epochs=0.0, valid_size=0, grad_clip_value=1.0,
                       grad_clip_norm=None, label_smoothing=0.0, augment="none",
                       channels_last=False)


def test_a_killed_block_kd_run_resumes_bit_exact(bank, tmp_path):
    def fresh():
        torch.manual_seed(3)
        return StageStudent("onnxw-train", 6, 3, *bank.channels(6), RES)
    a = fresh()
    h_a = train_student(a, bank, _cfg(2), tmp_path / "a.pt", 4, 8)
    b = fresh()
    train_student(b, bank, _cfg(2), tmp_path / "b.pt", 4, 8, stop_after=1)  # killed
    b = fresh()  # a new process rebuilds the student and resumes from the checkpoint
    h_b = train_student(b, bank, _cfg(2), tmp_path / "b.pt", 4, 8)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    pd.testing.assert_frame_equal(h_a.drop(columns=["seconds", "images_per_s"]),
                                  h_b.drop(columns=["seconds", "images_per_s"]))
    assert {"train_nsr_max", "train_nsr_min", "train_nsr_random", "valid_nsr_max"} <= set(h_a)


def test_table_rows_round_trip_through_the_published_format(bank, tmp_path):
    st = StageStudent("onnxw-train", 2, 1, *bank.channels(2), RES)
    df = luts.sample_table(st, bank, window=1, samples=6, predictor=FakePredictor("onnxw-train"),
                           rng=np.random.default_rng(0), recal_images=4, eval_images=8)
    assert sorted(df.resolution.value_counts().to_dict().items()) == [(24, 2), (28, 2), (32, 2)]
    path = luts.write_table(df, tmp_path / "stage2_1_1.csv")
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 7 and first[1].startswith("1x") and first[0].count("#") >= 2
    back = read_lut_csv(path, (st_hs := luts.as_hyperspace("onnxw-train")).stride_before(2))
    assert list(back.columns) == ["arch", "depth", "cin", "hw", "resolution", "nsr", "mflops",
                                  "mparams", "latency_ms"]
    assert back.arch.tolist() == df.arch.tolist() and back.resolution.tolist() == \
        df.resolution.tolist()
    np.testing.assert_allclose(back.nsr, df.nsr, rtol=1e-5)
    assert st_hs.stride_before(2) == 2  # stem 1, stage0 1, stage1 2
    assert [luts.as_hyperspace("onnxw").stride_before(i) for i in range(1, 7)] == \
        [2, 4, 8, 16, 16, 32]  # (the published tables' strides)
    from spaceevo_lib.search.lut import StageTables
    t = StageTables.from_frames("onnxw-train", {(2, 1, 1): back}, RES)
    assert t.table(2, 1, 1).n_rows == 6


def _made_up_tables(folder, hyperspace, predictor, rows_per_table=3):
    """A complete folder of tables of ``hyperspace`` (every stage, block and window), rows
    of valid sub-stages priced by ``predictor``, as the sampling jobs write them."""
    from spaceevo_lib.blockkd.students import SubStage
    from spaceevo_lib.blockkd.teacher import expected_sides
    hs = luts.as_hyperspace(hyperspace)
    for s, n_w in enumerate(hs.window_counts, start=1):
        st, prev = hs.stage(f"stage{s}"), hs.stage(f"stage{s - 1}")
        for b in range(len(hs.blocks)):
            spec = hs.block(b)
            for w in range(n_w):
                subs = [SubStage(prev.widths[j % len(prev.widths)],
                                 ((spec.kernels[j % len(spec.kernels)], st.window(w)[0],
                                   spec.expand_choices[0]),) * min(st.depths), RES[j % 3])
                        for j in range(rows_per_table)]
                units = [luts.stage_units(hs.name, s, b, sub) for sub in subs]
                df = pd.DataFrame({
                    "arch": [x.arch for x in subs], "cin": [x.cin for x in subs],
                    "hw": [expected_sides(hs, x.resolution)[s - 1] for x in subs],
                    "resolution": [x.resolution for x in subs], "nsr": 0.5, "mflops": 1.0,
                    "mparams": 0.01, "latency_ms": predictor.additive_ms(units, "int8")})
                luts.write_table(df, folder / f"stage{s}_{b}_{w}.csv")


class _Doubled(FakePredictor):
    """Another device: twice the fake's price."""

    def additive_ms(self, parts, precision="int8"):
        return 2 * super().additive_ms(parts, precision)


def test_own_tables_are_priced_on_a_second_device_from_their_rows(tmp_path):
    own = FakePredictor("onnxw-train")
    _made_up_tables(tmp_path, "onnxw-train", own)
    before = luts.read_tables("onnxw-train", tmp_path, RES)
    with pytest.raises(BlockKDError, match="no tflite latency column"):
        luts.read_tables("onnxw-train", tmp_path, RES, device="tflite")
    with pytest.raises(BlockKDError, match="not 'onnxw-train'"):
        luts.price_tables("onnxw-train", tmp_path, "ort-vnni",
                          {"tflite": FakePredictor("mobilew-train")})
    # the own predictor priced again reproduces the own column: the rows say all it needs
    assert luts.price_tables("onnxw-train", tmp_path, "ort-vnni",
                             {"ort-vnni": own, "tflite": own}) == ["tflite"]
    again = luts.read_tables("onnxw-train", tmp_path, RES, device="tflite")
    for key in before.keys():
        np.testing.assert_allclose(again.table(*key).latency_ms[0],
                                   before.table(*key).latency_ms[0], atol=1e-5)
    # another device's predictor: its own column, the first one unchanged
    luts.price_tables("onnxw-train", tmp_path, "ort-vnni", {"tflite": _Doubled("onnxw-train")})
    first = tmp_path / "stage1_0_0.csv"
    stamp = first.stat().st_mtime_ns
    luts.price_tables("onnxw-train", tmp_path, "ort-vnni", {"tflite": _Doubled("onnxw-train")})
    assert first.stat().st_mtime_ns == stamp  # priced already: left as it is
    assert len(first.read_text().splitlines()[0].split(",")) == 8
    tfl = luts.read_tables("onnxw-train", tmp_path, RES, device="tflite")
    vnni = luts.read_tables("onnxw-train", tmp_path, RES, device="ort-vnni")
    for key in before.keys():
        for k in range(3):
            np.testing.assert_allclose(vnni.table(*key).latency_ms[k],
                                       before.table(*key).latency_ms[k])
            np.testing.assert_allclose(tfl.table(*key).latency_ms[k],
                                       2 * before.table(*key).latency_ms[k], atol=2e-5)


def test_a_predictor_that_would_extrapolate_prices_no_table(tmp_path):
    """Bad input: a second device's predictor fitted on too narrow a range names the block
    and the feature outside it, and no table gets a half-written column."""
    from spaceevo_lib.predictor.model import LatencyPredictor
    from spaceevo_lib.predictor.units import Unit

    _made_up_tables(tmp_path, "onnxw-train", FakePredictor("onnxw-train"))
    texts = {p: p.read_text() for p in sorted(tmp_path.glob("*.csv"))}

    class Narrow(_Doubled):
        RANGE_FEATURES = LatencyPredictor.RANGE_FEATURES
        check_range = LatencyPredictor.check_range
        out_of_range = LatencyPredictor.out_of_range
        name = "tflite@onnxw-train"
        units_table = pd.DataFrame([Unit("MBv1Dual", "relu", 16, 16, 3, 0.0, 1, 8)._asdict()])

    with pytest.raises(BlockKDError, match=r"cannot be priced on tflite.*outside the fitted "
                                           r"range of .* for MBv1Dual|fitted on no"):
        luts.price_tables("onnxw-train", tmp_path, "ort-vnni", {"tflite": Narrow("onnxw-train")})
    assert {p: p.read_text() for p in sorted(tmp_path.glob("*.csv"))} == texts


def test_a_hyperspace_evolved_under_another_devices_limits_answers_the_devices_question(
        tmp_path):
    """The 2 x 2 flow on made-up tables: onnxw-train's tables priced on tflite (twice the
    cost), evolved under tflite's limits, set beside the own device's evolutions; records."""
    from types import SimpleNamespace

    from spaceevo_lib.search.evolution import EvolutionConfig
    folder = tmp_path / "tables" / "onnxw-train"
    _made_up_tables(folder, "onnxw-train", FakePredictor("onnxw-train"))
    the_plan = SimpleNamespace(devices=["ort-vnni", "tflite"],
                               hyperspaces={"ort-vnni": "onnxw-train",
                                            "tflite": "mobilew-train"},
                               evolution=EvolutionConfig(population=6, sample_size=3,
                                                         max_evaluated=10),
                               evolution_seeds=[0, 1])
    students = SimpleNamespace(out=tmp_path, resolutions=RES)
    cross = {("tflite", "onnxw-train"): _Doubled("onnxw-train")}
    luts.price_tables("onnxw-train", folder, "ort-vnni", {"tflite": cross[("tflite",
                                                                            "onnxw-train")]})
    ev = chapter.evolve_on_other_devices(students, the_plan, cross, {"tflite": (1.0,)}, 200)
    assert ev[["hyperspace", "device", "seed"]].values.tolist() == [
        ["onnxw-train", "tflite", 0], ["onnxw-train", "tflite", 1]]
    assert all(e.startswith("onnxw-train-") for e in ev.encoding)
    again = chapter.evolve_on_other_devices(students, the_plan, cross, {"tflite": (1.0,)}, 200)
    pd.testing.assert_frame_equal(ev, again)  # seeded
    scores = {"ort-vnni": pd.DataFrame({
        "space": ["evolved (seed 0)", "evolved (seed 1)", "all MBv3Res"],
        "kind": ["evolved", "evolved", "hand-designed"],
        "encoding": ["onnxw-train-222222-000000"] * 2 + ["onnxw-train-000000-111111"],
        "qt_mean": [0.5, 0.4, 0.3]})}
    own = chapter.own_evolutions(the_plan, scores)
    assert own.seed.tolist() == [0, 1] and own.device.tolist() == ["ort-vnni"] * 2
    evolutions = pd.concat([own, ev], ignore_index=True)
    table = chapter.devices_table(the_plan, evolutions)
    asked = table[table.hyperspace == "onnxw-train"]
    assert len(asked) == 6 and {"picks on ort-vnni", "picks on tflite"} <= set(table)
    assert table[table.hyperspace == "mobilew-train"].differ.isna().all()  # not asked
    recs = {r["name"]: r["value"] for r in chapter.devices_records(evolutions, table)}
    assert recs["qt_best_space/own-ort-vnni/onnxw-train"] == "onnxw-train-222222-000000"
    assert "qt_best_space/own-tflite/onnxw-train" in recs
    assert recs["verdict/devices_differ/onnxw-train"] == \
        int(chapter.devices_differ({"a": own.encoding.tolist(),
                                    "b": ev.encoding.tolist()}).differ.any())
    assert "verdict/devices_differ/mobilew-train" not in recs


def test_tables_with_a_missing_stage_are_refused(tmp_path):
    (tmp_path / "stage1_0_0.csv").write_text("3#32#0,1x16x32x32,0.5,1.0,0.01,0.1,32\n")
    with pytest.raises(BlockKDError, match="incomplete"):
        luts.read_tables("onnxw-train", tmp_path, RES)


def test_a_predictor_of_another_hyperspace_is_refused():
    with pytest.raises(BlockKDError, match="not 'onnxw-train'"):
        luts.other_latency("onnxw-train", FakePredictor("mobilew-train"), RES)
    ms = luts.other_latency("onnxw-train", FakePredictor("onnxw-train"), RES)
    assert set(ms) == set(RES) and ms[24] < ms[32]


def test_latency_limits_and_their_bad_values():
    assert own.latency_limits(0.3, chapter.parse_multiples("1,1.5")) == (0.3, 0.45)
    for bad in ("", "a,1", "0,1", "-1"):
        with pytest.raises(ValueError, match="parameter 'latency_limits'"):
            chapter.parse_multiples(bad)


def test_table_resolutions_follow_the_papers_ratios():
    assert luts.table_resolutions(luts.as_hyperspace("mobilew-train")) == (24, 28, 32)


def test_published_spaces_map_to_the_training_scale():
    m = own.mapped_published("onnxw-train")
    assert m and all(sp.hyperspace == "onnxw-train" for sp in m.values())


def _scores(evolved, random, uniform, std=0.01):
    rows = [("evolved (seed 0)", "evolved", "e", evolved), ("random search (seed 0)", "random",
                                                            "r", random),
            ("uniform x", "uniform", "u", uniform)]
    return pd.DataFrame([{"space": a, "kind": k, "encoding": e, "qt_mean": v, "qt_std": std}
                         for a, k, e, v in rows])


def test_verdict_rules_on_made_up_scores():
    v = verdicts({"ort-vnni": _scores(1.2, 1.1, 1.0)})
    assert v.holds.tolist() == [True, True]
    v = verdicts({"ort-vnni": _scores(1.0, 1.1, 1.2)})
    assert v.holds.tolist() == [False, False]
    cost = pd.DataFrame({"se": [True, False], "int8_over_fp32": [1.5, 1.1]})
    v = verdicts({"tflite": _scores(1.2, 1.1, 1.0)}, cost)
    assert v.rule.str.contains("SE blocks").any() and v.holds.all()


def test_int8_cost_is_the_quantization_step_not_the_extra_training():
    from spaceevo_lib.chapters.blockkd import int8_cost
    recs = pd.DataFrame({"hyperspace": "h", "code": ["SE", "SE", "Plain", "Plain"],
                         "activation": "relu", "se": [True, True, False, False],
                         "stage": [1, 2, 1, 2], "fp32_nsr_max": [0.5, 0.4, 0.5, 0.4],
                         "ptq_nsr_max": [1.0, 0.8, 0.55, 0.44],  # SE: x2, plain: x1.1
                         "int8_nsr_max": [0.45, 0.36, 0.45, 0.36]})  # LSQ+: x0.9 for both
    cost = int8_cost(recs)
    assert cost.code.tolist() == ["SE", "Plain"]
    np.testing.assert_allclose(cost.int8_over_fp32, [2.0, 1.1])
    np.testing.assert_allclose(cost.lsq_over_fp32, [0.9, 0.9])
    v = verdicts({}, cost)
    assert v.holds.tolist() == [True]


def test_devices_compared_stage_by_stage():
    cmp = chapter.compare_devices({"ort-vnni": "onnxw-train-111111-000000",
                               "tflite": "mobilew-train-111112-000000"})
    assert cmp["same block"].tolist() == [True] * 5 + [False]


def test_devices_differ_only_where_one_device_is_unanimous_and_the_other_never_agrees():
    """Made-up evolutions of one hyperspace (onnxw-train), 3 seeds per
    device. Stage 1: all seeds of both pick block 1 (same). Stage 2: ort-vnni all pick 2,
    tflite never does (differ). Stage 3: ort-vnni all pick 0, one tflite seed picks 0 too
    (not differ: a seed agrees). Stage 4: neither device is unanimous (not differ). Stage 5:
    tflite all pick 0, as two ort-vnni seeds do (not differ)."""
    vnni = ["onnxw-train-120100-000000", "onnxw-train-120200-000000",
            "onnxw-train-120010-000000"]
    tfl = ["onnxw-train-101100-000000", "onnxw-train-130000-000000",
           "onnxw-train-111200-000000"]
    table = chapter.devices_differ({"ort-vnni": vnni, "tflite": tfl})
    assert table.differ.tolist() == [False, True, False, False, False, False]
    assert chapter.devices_verdict(table) == 1
    hs = chapter.as_hyperspace("onnxw-train")
    assert table["ort-vnni"][1] == f"{hs.block(2).code} x3"
    same = chapter.devices_differ({"ort-vnni": vnni, "tflite": vnni[::-1]})
    assert chapter.devices_verdict(same) == 0
    with pytest.raises(ValueError, match="one hyperspace"):
        chapter.devices_differ({"ort-vnni": vnni, "tflite": ["mobilew-train-111111-000000"]})


def test_eval_weight_cache_equals_quantizing_the_slice_and_follows_updates():
    torch.manual_seed(3)
    conv = QDynamicConv2d.from_dynamic(DynamicConv2d(16, 24, 5)).train()
    conv(torch.randn(2, 16, 8, 8))  # (initialises both quantizers)
    conv.eval()
    for cin, cout, k in [(16, 24, 5), (8, 12, 3), (16, 4, 1)]:
        direct = conv.weight_quantizer(conv.active_weight(cin, cout, k))
        assert torch.equal(conv.active_weight_quantized(cin, cout, k), direct)
    before = conv.active_weight_quantized(8, 12, 3).clone()
    with torch.no_grad():
        conv.weight.mul_(0.5)  # an optimiser step bumps the version: the cache must follow
    after = conv.active_weight_quantized(8, 12, 3)
    assert not torch.equal(before, after)
    assert torch.equal(after, conv.weight_quantizer(conv.active_weight(8, 12, 3)))


def test_a_student_starts_as_the_teachers_mean_in_every_setting(bank):
    st = StageStudent("mobilew-train", 3, 1, *bank.channels(3), RES).start_at_teacher_mean(bank)
    y = bank.pair(3, 32, slice(0, bank.n_train))[1]
    rng = np.random.default_rng(0)
    st.eval()
    for sub in (st.sample_max(), st.sample_min(), st.sample_random(rng)):
        x = bank.pair(3, sub.resolution, slice(0, 2))[0]
        with torch.no_grad():
            out = st(x)
        assert torch.allclose(out, y.mean((0, 2, 3)).view(1, -1, 1, 1).expand_as(out))


def test_a_streamed_bank_gives_the_cached_banks_features_and_variance(teacher, bank):
    torch.manual_seed(1)
    x = torch.randn(48, 3, 32, 32)  # (the images of the bank fixture)
    streamed = kd_teacher.feature_bank(stage_boundaries(teacher), x, 32, RES, cache=False)
    assert isinstance(streamed, kd_teacher.StreamedFeatureBank)
    for r in RES:
        for j in range(7):
            torch.testing.assert_close(streamed.variance[r][j], bank.variance[r][j],
                                       rtol=1e-4, atol=1e-6)
    idx = torch.tensor([3, 40, 7])
    for stage in (1, 4, 6):
        for a, b in zip(streamed.pair(stage, 28, idx), bank.pair(stage, 28, idx)):
            torch.testing.assert_close(a, b)
    assert streamed.channels(5) == bank.channels(5)
    # a dataset of (image, label) items works as well as a tensor
    ds = torch.utils.data.TensorDataset(x, torch.zeros(48))
    torch.testing.assert_close(kd_teacher.feature_bank(stage_boundaries(teacher), ds, 32, RES,
                                                       cache=False).pair(2, 24, slice(32, 36))[1],
                               bank.pair(2, 24, slice(32, 36))[1])


def test_imagenet_teacher_images_are_a_seeded_subset_read_without_augmentation(tmp_path,
                                                                               monkeypatch):
    from test_data_imagenet import _tiny_folder
    _tiny_folder(tmp_path, per_class=4)
    monkeypatch.setenv("SPACEEVO_DATA_DIR", str(tmp_path))
    a = kd_teacher.teacher_images(32, 5, 2, seed=0, dataset="imagenet")
    b = kd_teacher.teacher_images(32, 5, 2, seed=0, dataset="imagenet")
    assert len(a) == 7 and a.indices == b.indices
    x = kd_teacher.take_images(a, slice(0, 7))
    assert x.shape == (7, 3, 32, 32) and torch.equal(x, kd_teacher.take_images(b, slice(0, 7)))
    with pytest.raises(BlockKDError, match="training split has 8"):
        kd_teacher.teacher_images(32, 8, 2, seed=0, dataset="imagenet")


def _ranked_jobs(rank, out, jobs, settings, banks, log):
    import os
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")  # (what torchrun sets)
    inner = kd.run_job

    def logged(job, ctx):
        with open(log, "a") as f:
            f.write(f"{rank} {job[1]} {job[2]}\n")
        return inner(job, ctx)
    kd.run_job = logged
    ctx = kd.JobContext(out, banks[0], banks[1], settings,
                        {"onnxw-train": FakePredictor("onnxw-train")})
    recs = kd.run_jobs(jobs, ctx, workers=2, progress=False, poll_seconds=0.1)
    recs.to_json(out / f"records{rank}.json")


def test_under_torchrun_each_rank_trains_its_share_and_returns_every_record(bank, tmp_path):
    import multiprocessing as mp
    jobs = [("onnxw-train", 1, b) for b in range(4)]
    cfg = _cfg(1)
    settings = kd.JobSettings(fp32=cfg, int8=cfg, samples=3, recal_images=4, eval_images=4,
                              n_random=1)
    log = tmp_path / "ran.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_ranked_jobs, args=(r, tmp_path, jobs, settings, (bank, bank),
                                                    log)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs)
    ran = sorted(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    assert ran == [(0, 1, 0), (0, 1, 2), (1, 1, 1), (1, 1, 3)]  # rank r: jobs r, r + 2
    r0, r1 = (pd.read_json(tmp_path / f"records{r}.json") for r in range(2))
    assert sorted(r0.block) == [0, 1, 2, 3] and r0.equals(r1)
    assert len(list((tmp_path / "tables" / "onnxw-train").glob("*.csv"))) == \
        4 * luts.as_hyperspace("onnxw-train").window_counts[0]


def test_the_chapter_says_where_the_features_live(teacher, bank):
    streamed = kd_teacher.feature_bank(stage_boundaries(teacher), torch.randn(40, 3, 32, 32),
                                       32, RES, cache=False)
    assert "on the fly" in kd_teacher.describe_banks((streamed, streamed))
    assert "kept in memory" in kd_teacher.describe_banks((bank, bank))


def test_a_retrained_teacher_gets_a_new_job_folder():
    """Students are keyed on the teacher's checkpoints too: a rerun of the INT8 chapter with
    another recipe must not reuse students distilled from the earlier teacher."""
    from spaceevo_lib.blockkd.jobs import JobSettings, job_folder_name
    from spaceevo_lib.train import TrainConfig
    s = JobSettings(fp32=TrainConfig(), int8=TrainConfig(), samples=1, recal_images=1,
                    eval_images=1)
    a, b = job_folder_name(s, "0" * 64), job_folder_name(s, "1" * 64)
    assert a != b and a == job_folder_name(s, "0" * 64) and a.startswith("blockkd-")
