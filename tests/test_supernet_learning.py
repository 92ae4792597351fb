"""What lets a supernet's middle learn, and the defects fixed on the way (issue "a supernet
whose subnets learn"): the parameter-free shortcut inside a stage, the fast evaluation through
the extracted static network, class-balanced image sets, checkpoints keyed by what made them,
the recipe's phases and the rules that pick the recipe and the BN images, and verdicts given
only on subnets that learned."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import needs_data
from spaceevo_lib.chapters import supernet as chapter
from spaceevo_lib.data.imagenette import class_balanced
from spaceevo_lib.nn import recalibrate_bn
from spaceevo_lib.nn.subnet import build_subnet
from spaceevo_lib.space import SpaceChoice, sample_subnet
from spaceevo_lib.space.encoding import max_subnet
from spaceevo_lib.supernet import Supernet
from spaceevo_lib.supernet.elastic import ChannelProjection, DynamicShortcut
from spaceevo_lib.supernet.evaluation import (elastic_subnet_accuracy, subnet_accuracy,
                                              subnet_network)
from spaceevo_lib.supernet.training import (Phase, phase_checkpoints, quantize_supernet,
                                            start_key, train_recipe)
from spaceevo_lib.train.config import TrainConfig
from spaceevo_lib.train.data import balanced_loader, labels_of

torch.set_num_threads(1)

SPACE = "onnxw-train-212121-000000"
WIDE = "onnxw-train-212121-111111"  # windows of 2-3 widths: per-block widths differ


def _narrowing_subnet(space: SpaceChoice) -> "Subnet":  # noqa: F821
    """The max subnet with the second block of stage1 narrower than the first."""
    sub = max_subnet(space.spec, space)
    stage1 = space.widths("stage1")
    start = sum(sub.depths[:2])  # first_conv, stage0
    widths = list(sub.widths)
    widths[start + 1] = stage1[0]
    return replace(sub, widths=tuple(widths))


# ----------------------------------------------------------------------------- the shortcut


def test_a_width_change_inside_a_stage_adds_the_input_without_parameters():
    """Blocks after a stage's first keep the first channels (or append zeros) when their width
    differs: the paper's learned 1x1 conv + BN there is what the max and min subnets never
    train. First blocks (stride or the previous stage's widths) keep the learned projection."""
    sp = SpaceChoice.decode(WIDE)
    net = Supernet(sp)
    for stage in net.stages.values():
        for i, block in enumerate(stage.blocks):
            sc = getattr(block, "shortcut", None)
            if sc is None:
                continue
            assert isinstance(sc, ChannelProjection if i > 0 else DynamicShortcut), (stage, i)
    x = torch.randn(2, 48, 8, 8)
    assert torch.equal(ChannelProjection()(x, 32), x[:, :32])
    wide = ChannelProjection()(x, 64)
    assert torch.equal(wide[:, :48], x) and not wide[:, 48:].any()
    paper = Supernet(sp, shortcut="learned")
    assert any(isinstance(getattr(b, "shortcut", None), DynamicShortcut)
               for st in paper.stages.values() for b in list(st.blocks)[1:])
    with pytest.raises(ValueError, match="shortcut must be one of"):
        Supernet(sp, shortcut="zero")


def test_the_extracted_subnet_keeps_the_papers_graph_with_a_fixed_projection():
    """Extracted, the parameter-free shortcut is a 1x1 conv of zeros and ones (what the
    runtimes and the latency predictor see for the paper's conv + BN after folding), and the
    static network computes what the supernet computes."""
    sp = SpaceChoice.decode(WIDE)
    torch.manual_seed(0)
    net = Supernet(sp)
    sub = _narrowing_subnet(sp)
    x = torch.randn(8, 3, 32, 32)
    net.set_active_subnet(sub)
    recalibrate_bn(net, [x])
    static = net.extract_subnet(sub)
    assert torch.allclose(static(x), net(x), atol=1e-5, rtol=1e-4)
    proj = static.stage1[1].shortcut
    assert len(proj) == 1 and isinstance(proj[0], torch.nn.Conv2d)
    w = proj[0].weight.detach()[:, :, 0, 0]
    assert torch.equal(w, torch.eye(w.shape[0], w.shape[1]))
    paper = build_subnet(sp, sub)  # what the paper's architecture trains alone
    assert isinstance(paper.stage1[1].shortcut[1], torch.nn.BatchNorm2d)


# ----------------------------------------------------------------------------- evaluation


def _loader(n: int = 48, side: int = 32, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, side, side, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_static_evaluation_gives_the_elastic_evaluations_top1(precision):
    """A subnet is evaluated through its extracted static network (in INT8 behind the LSQ+
    supernet's per-tensor quantizers): same logits as the elastic forward up to float noise,
    same top-1 on the same images, at every resolution (the input resized alike)."""
    sp = SpaceChoice.decode(WIDE)
    torch.manual_seed(1)
    net = Supernet(sp)
    recal = torch.randn(32, 3, 32, 32)
    if precision == "int8":
        net = quantize_supernet(net, recal[:16])
    rng = np.random.default_rng(0)
    loader = _loader()
    for sub in [_narrowing_subnet(sp)] + [sample_subnet(sp.spec, sp, rng) for _ in range(2)]:
        a = subnet_accuracy(net, sub, recal, loader)  # (BN folded, channels-last)
        b = elastic_subnet_accuracy(net, sub, recal, loader)
        # FP32: the same top-1; INT8: a float-rounding difference after the fold may flip a
        # later quantizer's rounding, and this untrained net's logits are near ties (on the
        # trained default supernets the two top-1s differ by at most 0.23 points)
        flips = 0 if precision == "fp32" else 2
        assert abs(a["top1"] - b["top1"]) <= 100 * flips / 48 + 1e-9
        assert a["images"] == b["images"] == 48
        x = next(iter(loader))[0]
        net.eval()
        exact = subnet_network(net, sub, recal, fast=False)
        assert torch.allclose(exact(x), net(x), atol=1e-4, rtol=1e-3)
        fast = subnet_network(net, sub, recal)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        if precision == "fp32":  # (INT8: a rounding flip at a later quantizer may differ)
            assert torch.allclose(fast(x), net(x), atol=1e-4, rtol=1e-3)


def test_folding_bn_keeps_conv_then_bn_outputs():
    """fold_bn folds a BN into the conv just before it, also behind an input quantizer,
    and leaves a BN with no conv before it alone."""
    from spaceevo_lib.supernet.evaluation import QuantizedInput, fold_bn
    from spaceevo_lib.quant.lsq import ActQuantizer
    torch.manual_seed(0)
    q = ActQuantizer().train()
    q(torch.randn(4, 3, 8, 8))
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 6, 3, padding=1),
                              torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                              QuantizedInput(torch.nn.Conv2d(6, 6, 1, bias=False), q),
                              torch.nn.BatchNorm2d(6))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        want = net(x)
        assert fold_bn(net) == 2
        assert isinstance(net[0], torch.nn.BatchNorm2d) and isinstance(net[2], torch.nn.Identity)
        assert torch.allclose(net(x), want, atol=1e-5)


# ----------------------------------------------------------------------------- image sets


def test_class_balanced_sets_cover_every_class_in_every_prefix():
    labels = np.repeat(np.arange(10), [50, 40, 60, 30, 50, 50, 20, 50, 50, 5])  # class-sorted
    pos = class_balanced(labels, 300, seed=1)
    assert len(pos) == len(set(pos)) == 300
    for k in (10, 64, 100):
        assert set(labels[pos[:k]]) == set(range(10)), k  # a prefix, e.g. recal[:64]
    assert np.bincount(labels[pos[:50]], minlength=10).tolist() == [5] * 10
    assert (labels[pos] == 9).sum() == 5  # a small class runs out, the others go on
    assert np.array_equal(pos, class_balanced(labels, 300, seed=1))
    assert len(class_balanced(labels, 10_000, seed=0)) == len(labels)


def test_a_fitness_loader_from_a_class_sorted_split_covers_every_class():
    """The search's fitness took the first images of the class-sorted held-out split (about
    half the classes); its loader is now class-balanced."""
    y = torch.arange(10).repeat_interleave(20)  # sorted by class, as the splits are
    ds = TensorDataset(torch.randn(200, 3, 4, 4), y)
    ds.y = y.numpy()
    loader = balanced_loader(DataLoader(ds, batch_size=32), 50, seed=0)
    got = labels_of(loader.dataset)
    assert len(got) == 50 and np.bincount(got, minlength=10).tolist() == [5] * 10
    assert loader.batch_size == 32
    assert len(balanced_loader(DataLoader(ds, batch_size=8), 0, seed=0).dataset) == 200


@needs_data
def test_calibration_images_are_class_balanced_from_the_first_image():
    """Quantizer initialisation and deployed files took ``calibration[:64]`` of class-sorted
    images (about one class); every prefix now covers every class."""
    from spaceevo_lib.data import load_imagenette
    from spaceevo_lib.data.imagenette import IMAGENET_MEAN, IMAGENET_STD
    from spaceevo_lib.train.data import load_training_data
    data = load_training_data(32, TrainConfig(epochs=2, valid_size=256), test_images=64,
                              calibration_images=200)
    arrays = load_imagenette(32)
    index = {img.tobytes(): i for i, img in enumerate(arrays.x_train)}
    mean, std = (np.asarray(v, np.float32).reshape(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    pixels = np.rint((data.calibration * std + mean) * 255).clip(0, 255).astype(np.uint8)
    cal_labels = [arrays.y_train[index[p.transpose(1, 2, 0).tobytes()]] for p in pixels]
    assert set(cal_labels[:10]) == set(range(10))
    assert set(cal_labels[:64]) == set(range(10))


# ----------------------------------------------------------------------------- checkpoints


def _phases(epochs: int = 2, lr: float = 0.05, max_first: bool = True) -> tuple[Phase, ...]:
    """max alone (1 epoch at 0.05), the sandwich (``epochs`` at ``lr``), LSQ+."""
    base = TrainConfig(epochs=epochs, lr=lr, warmup_epochs=0.0, batch_size=8, valid_size=0)
    out = [Phase("max", replace(base, epochs=1, lr=0.05), 0)] if max_first else []
    out += [Phase("sandwich", base, 2), Phase("lsq", replace(base, epochs=1, lr=0.005), 2)]
    return tuple(out)


def test_a_phase_trains_anew_when_its_settings_or_anything_before_it_change(tmp_path):
    start = start_key(SPACE, shortcut="fixed", init="scratch", seed=0)
    a = phase_checkpoints(tmp_path, "s", _phases(), start)
    assert a == phase_checkpoints(tmp_path, "s", _phases(), start)  # unchanged: reused
    more = phase_checkpoints(tmp_path, "s", _phases(epochs=3), start)
    assert more[0] == a[0] and more[1] != a[1] and more[2] != a[2]  # later phases anew
    other_lr = phase_checkpoints(tmp_path, "s", _phases(lr=0.1), start)
    assert other_lr[0] == a[0] and other_lr[1:] != a[1:]
    seed1 = phase_checkpoints(tmp_path, "s", _phases(),
                              start_key(SPACE, shortcut="fixed", init="scratch", seed=1))
    blockkd = phase_checkpoints(tmp_path, "s", _phases(),
                                start_key(SPACE, shortcut="fixed", init="blockkd", seed=0))
    assert all(x != y for x, y in zip(a, seed1)) and all(x != y for x, y in zip(a, blockkd))
    recipe = phase_checkpoints(tmp_path, "s", _phases(max_first=False), start)
    assert recipe[0] != a[1]  # the sandwich from another start


def test_standalone_checkpoints_are_keyed_by_the_subnet_and_its_settings(tmp_path):
    run = SimpleNamespace(path=tmp_path)
    sp = SpaceChoice.decode(SPACE)
    cfg = TrainConfig(epochs=2)
    a = chapter.standalone_checkpoint(run, sp, "s1", cfg)
    assert a == chapter.standalone_checkpoint(run, sp, "s1", cfg)
    assert a != chapter.standalone_checkpoint(run, sp, "s2", cfg)
    assert a != chapter.standalone_checkpoint(run, sp, "s1", replace(cfg, epochs=3))


def test_a_recipe_trains_its_phases_and_resumes_each_from_its_own_checkpoint(tmp_path):
    """max alone, then the sandwich, then LSQ+ on the quantized copy; a rerun with the same
    settings reuses every phase, one with more sandwich epochs keeps the max phase."""
    torch.manual_seed(0)
    loaders = {"train": DataLoader(TensorDataset(torch.randn(16, 3, 32, 32),
                                                 torch.randint(0, 10, (16,))), batch_size=8)}
    phases = _phases(epochs=1)
    start = start_key(SPACE, seed=0)
    paths = phase_checkpoints(tmp_path, "s", phases, start)
    fp32, q, h = train_recipe(Supernet(SPACE), phases, paths, lambda ph: loaders,
                              quant_images=torch.randn(8, 3, 32, 32))
    assert list(h.stage) == ["max", "sandwich", "lsq"] and all(p.is_file() for p in paths)
    assert "train_loss_min" not in h[h.stage == "max"].dropna(axis=1)  # the max subnet alone
    assert q is not None and any(hasattr(m, "input_quantizer") for m in q.modules())
    stamps = [p.stat().st_mtime_ns for p in paths]
    _, _, again = train_recipe(Supernet(SPACE), phases, paths, lambda ph: loaders,
                               quant_images=torch.randn(8, 3, 32, 32))
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # nothing trained again
    assert again.train_loss.tolist() == h.train_loss.tolist()


# ----------------------------------------------------------------------------- rules


def test_the_recipe_rule_takes_the_best_middle_and_breaks_near_ties_by_the_min_subnet():
    final = pd.DataFrame({"candidate": ["a", "b", "c"], "top1_random": [30.0, 29.5, 25.0],
                          "top1_min": [28.0, 31.0, 40.0], "top1_max": [40.0, 39.0, 50.0]})
    assert chapter.choose_recipe(final) == "b"  # within 1 point of a, higher min
    assert chapter.choose_recipe(final, tie=0.1) == "a"
    assert chapter.choose_recipe(final.iloc[[2]]) == "c"


def test_the_page_says_whether_the_run_trains_the_benchmarks_pick():
    from types import SimpleNamespace
    bench = {"chosen": "max-first", "candidates": {"max-first": {"recipe": "sandwich,max-first"},
                                                  "sandwich": {"recipe": "sandwich"}}}
    plan_ = SimpleNamespace(recipe=("sandwich", "max-first"), init="scratch", shortcut="fixed")
    assert chapter.follows_pick(plan_, bench) == "this run trains the benchmark's pick, max-first"
    other = SimpleNamespace(recipe=("sandwich",), init="blockkd", shortcut="fixed")
    said = chapter.follows_pick(other, bench)
    assert "differs" in said and "recipe: sandwich" in said and "init: blockkd" in said


def test_equal_minutes_size_each_phase_by_its_throughput():
    assert chapter.equal_minutes_epochs(10, {"sandwich": 50.0}, 7500) == {"sandwich": 4}
    two = chapter.equal_minutes_epochs(10, {"max": 100.0, "sandwich": 50.0}, 7500)
    assert two == {"max": 4, "sandwich": 2}  # 10 minutes, half of them on the max subnet
    # a max epoch of 2.16 and a sandwich epoch of 3.53 minutes (this host's evolved space):
    # rounding each phase alone gives 1 + 1 epochs (5.7 minutes for 8), the pair 2 + 1 (7.85)
    host = chapter.equal_minutes_epochs(8, {"max": 65.3, "sandwich": 40.0}, 8469)
    assert host == {"max": 2, "sandwich": 1}
    assert chapter.equal_minutes_epochs(0.1, {"sandwich": 1.0}, 7500) == {"sandwich": 1}


def _plan(phases) -> chapter.SupernetPlan:
    sp = SpaceChoice.decode(SPACE)
    return chapter.SupernetPlan(spaces={"evolved-ort-vnni": sp, "mbv3-style": sp},
                                init="blockkd", recipe=("sandwich", "max-first"),
                                shortcut="fixed", phases=phases, standalone=phases[0].cfg,
                                dropout=0.2, protocol=None)


def test_each_space_gets_the_same_fp32_minutes_not_the_same_epochs(tmp_path):
    """fp32_minutes sizes each space's FP32 phases by its own measured speed (the slower space
    trains fewer epochs), keeps the warm-up share and the LSQ+ phase, and the run records the
    epochs each space trained; 0 keeps the profile's epochs."""
    phases = tuple(replace(p, cfg=replace(p.cfg, epochs=4, warmup_epochs=0.2))
                   if p.kind == "sandwich" else p for p in _phases())
    plan_ = _plan(phases)
    speed = pd.DataFrame({"space": ["evolved-ort-vnni"] * 2 + ["mbv3-style"] * 2,
                          "phase": ["max", "sandwich"] * 2,
                          "images_per_s": [100.0, 50.0, 50.0, 25.0]})
    assert chapter.size_phases(plan_, speed, 0, 7500) is plan_
    sized = chapter.size_phases(plan_, speed, 10, 7500)
    fast, slow = sized.phases_of("evolved-ort-vnni"), sized.phases_of("mbv3-style")
    assert [p.cfg.epochs for p in fast] == [4, 2, 1] and [p.cfg.epochs for p in slow] == [2, 1, 1]
    assert fast[1].cfg.warmup_epochs == pytest.approx(0.1)  # 5 % of the sandwich's epochs
    assert fast[2] == phases[2] and slow[2] == phases[2]
    table = chapter.phases_table(sized)
    assert list(table.space.unique()) == ["evolved-ort-vnni", "mbv3-style"]
    paths = {k: phase_checkpoints(tmp_path, k, sized.phases_of(k), "start")
             for k in sized.spaces}
    stored = chapter.trained_record(sized, paths)
    assert stored["spaces"]["mbv3-style"]["fp32"]["epochs"] == 1
    assert stored["spaces"]["evolved-ort-vnni"]["fp32"]["epochs"] == 2
    assert paths["mbv3-style"][1] != paths["evolved-ort-vnni"][1].with_name(
        paths["evolved-ort-vnni"][1].name.replace("evolved-ort-vnni", "mbv3-style"))


def test_the_learning_bar_and_aims_are_checked_per_space_with_an_extrapolation():
    """The bar fixed before the results (max 35, min 30, random median 25 and within 5 of the
    min) and the aims (45, within 10 of the max): each row met or not, and a missed one the
    minutes its last segment implies."""
    ends = pd.DataFrame({"space": ["a"] * 5, "subnet": ["max", "min", "random0", "random1",
                                                         "random2"],
                         "top1_int8": [40.0, 31.0, 24.0, 27.0, 30.0]})
    history = pd.DataFrame({"space": ["a"] * 4, "phase": ["fp32", "fp32", "fp32", "lsq"],
                            "seconds": [60.0, 60.0, 120.0, 30.0],
                            "valid_top1_max": [20.0, 30.0, 36.0, 37.0],
                            "valid_top1_min": [15.0, 25.0, 29.0, 30.0]})
    t = chapter.learning_table(ends, history, random_slope=1.0).set_index(["subnet", "kind",
                                                                          "needs"])
    assert t.loc[("max subnet", "bar", 35.0), "met"] == "yes"
    assert t.loc[("min subnet", "bar", 30.0), "met"] == "yes"
    assert t.loc[("random median", "bar", 25.0), "met"] == "yes"  # median 27
    assert t.loc[("random median", "bar", 26.0), "met"] == "yes"  # min 31 - 5
    aim = t.loc[("random median", "aim", 45.0)]
    assert aim.met == "no" and aim["minutes more (extrapolation)"] == pytest.approx(18.0)
    assert t.loc[("random median", "aim", 30.0), "met"] == "no"  # max 40 - 10
    assert chapter.last_slopes(history, "a") == {"max": 3.0, "min": 2.0}  # per minute


def test_the_bn_image_count_is_the_fewest_within_the_margin_of_the_most():
    curve = pd.DataFrame({"images": [0, 0, 256, 256, 1000, 1000, 2000, 2000],
                          "top1_int8": [10, 12, 29, 30, 31.6, 31.4, 32.0, 31.8]})
    assert chapter.pick_recal_count(curve) == 1000
    assert chapter.pick_recal_count(curve, {"recal_points": 3.0}) == 256
    assert chapter.pick_recal_count(curve, {"recal_points": 0.0}) == 2000


def test_no_verdict_on_subnets_that_have_not_learned():
    rng = np.random.default_rng(0)
    low, high = rng.normal(15, 1, 30), rng.normal(20, 1, 30)  # below the 25 % bar
    v = chapter.fig1_verdict(high, low)
    assert v["verdict"].startswith("not tested at this budget")
    assert "hand-designed (INT8) 14.9 %" in v["verdict"]
    assert chapter.fig1_verdict(high + 20, low + 20)["verdict"] == "holds"
    qfa = pd.DataFrame({"top1_int8_ort_lsq_qdq": [20.0] * 4, "top1_int8_fakequant": [20.0] * 4,
                        "top1_fp32": [20.2] * 4, "top1_int8_ort_ptq": [18.0] * 4})
    assert chapter.qfa_verdict(qfa)["verdict"].startswith("not tested at this budget")
    assert chapter.qfa_verdict(qfa + 30)["verdict"] == "holds"
    ev = {"a": pd.DataFrame({"nsr_sum": np.arange(6.0), "top1_int8": 12 - np.arange(6.0)})}
    row = chapter.proxy_table(ev).iloc[0]
    assert not row.tested and row.tau == pytest.approx(1.0)
    assert chapter.learned({"x": 25.0}) == (True, "")


def test_vary_changes_only_the_dimension_asked_for():
    sp = SpaceChoice.decode(WIDE)
    base = max_subnet(sp.spec, sp)
    rng = np.random.default_rng(3)
    for dim in chapter.DIMENSIONS:
        subs = [chapter.vary(sp, dim, rng) for _ in range(12)]
        for s in subs:
            same = {"depth": ("resolution",), "kernel": ("depths", "widths", "expands"),
                    "expand": ("depths", "kernels", "widths"),
                    "width per block": ("depths", "kernels", "expands"),
                    "width per stage": ("depths", "kernels", "expands"),
                    "resolution": ("depths", "kernels", "widths", "expands")}[dim]
            for f in same:
                assert getattr(s, f) == getattr(base, f), (dim, f)
        assert any(s != base for s in subs), dim
    per_stage = chapter.vary(sp, "width per stage", rng).stage_blocks()
    assert all(len({w for _, w, _ in blocks}) == 1 for blocks in per_stage.values())


def test_weight_sharing_takes_subnets_inside_the_window_and_across_the_range():
    pool = pd.DataFrame({"subnet": [f"s{i}" for i in range(40)],
                         "int8_ms": np.linspace(1, 3, 40)})
    picks = chapter.ws_picks(pool, {"low": 1.5, "high": 2.0, "common": True}, 12, 6)
    assert len(picks) == 12 and picks.in_window.sum() >= 6
    assert picks.int8_ms.min() == 1 and picks.int8_ms.max() == 3
    none = chapter.ws_picks(pool, {"low": 0, "high": 0, "common": False}, 12, 6)
    assert len(none) == 12 and not none.in_window.any()
    # the in-window picks come from Figure 1's evaluated subnets when they are enough, and
    # those keep Figure 1's scores (only the others are evaluated)
    seen = pool[(pool.int8_ms >= 1.5) & (pool.int8_ms <= 2.0)].iloc[::2].assign(
        top1_int8=50.0, eval_seconds=1.0)
    picks = chapter.ws_picks(pool, {"low": 1.5, "high": 2.0, "common": True}, 12, 3,
                             prefer=seen)
    assert set(picks[picks.in_window].subnet) <= set(seen.subnet)
    asked = []
    fake = lambda lsq, picked, data, n: asked.append(list(picked.subnet)) or picked.assign(  # noqa
        top1_int8=20.0, eval_seconds=2.0)
    with mock.patch.object(chapter, "evaluate_pool", fake):
        scored = chapter.reuse_evaluations(None, picks, seen, None, 0)
    assert list(scored.subnet) == list(picks.subnet)
    assert set(asked[0]) == set(picks.subnet) - set(seen.subnet)
    assert (scored.top1_int8 == np.where(scored.subnet.isin(seen.subnet), 50.0, 20.0)).all()


def test_figure_1_pools_are_drawn_at_the_resolutions_the_sandwich_trains(tmp_path):
    """Only the min subnet trains below the hyperspace's sample resolutions: Figure 1 and the
    weight-sharing check draw their subnets at those."""
    from spaceevo_lib.blockkd.students import SubStage
    sp = SpaceChoice.decode(SPACE)
    rng = np.random.default_rng(0)
    for i, (b, w) in enumerate(zip(sp.blocks, sp.windows), start=1):
        rows = []
        for r in sp.spec.resolutions:
            for _ in range(3):
                sub = sample_subnet(sp.spec, sp, rng, resolutions=(r,))
                arch = SubStage(16, sub.stage_blocks()[f"stage{i}"], r).arch
                rows.append(f"{arch},1x16x8x8,0.5,1.0,0.1,0.5,{r}")
        (tmp_path / f"stage{i}_{b}_{w}.csv").write_text("\n".join(rows) + "\n")
    plan_ = SimpleNamespace(spaces={"a": sp})
    predictor = SimpleNamespace(predict=lambda subs, precision, space: np.ones(len(subs)))
    pools = chapter.fig1_pools(plan_, ["a"], tmp_path, predictor, 40, seed=0)
    assert set(pools["a"].resolution) <= set(sp.spec.sample_resolutions)
    assert min(sp.spec.resolutions) not in set(pools["a"].resolution)


def test_the_search_chapter_reads_the_trained_start_recipe_and_checkpoints(tmp_path):
    """The chapter stores what it trained (start, recipe, shortcut, each space's last FP32 and
    LSQ+ checkpoints with their epochs); the reader returns them instead of re-deriving a start
    by rule or guessing file names from parameters."""
    sp = SpaceChoice.decode(SPACE)
    plan_ = SimpleNamespace(init="blockkd", recipe=("sandwich", "teacher"), shortcut="fixed",
                            spaces={"evolved-ort-vnni": sp}, phases=_phases(),
                            phases_of=lambda label: _phases())
    paths = {"evolved-ort-vnni": phase_checkpoints(tmp_path, "evolved-ort-vnni", plan_.phases,
                                                   "start")}
    stored = chapter.trained_record(plan_, paths)
    res = chapter.SupernetResults(tmp_path, {"init": "scratch"},
                                  ({"name": "recal_images/supernet", "value": 1000},), stored)
    assert res.init == "blockkd" and res.recipe == ("sandwich", "teacher")  # not the params'
    assert res.spaces() == {"evolved-ort-vnni": sp} and res.recal_images == 1000
    f32, f8 = res.checkpoints("evolved-ort-vnni")
    assert f32 == paths["evolved-ort-vnni"][1] and f8 == paths["evolved-ort-vnni"][2]
    assert stored["spaces"]["evolved-ort-vnni"]["fp32"]["epochs"] == 2


def test_the_memory_layout_is_not_part_of_a_phase_key(tmp_path):
    """channels-last changes speed, not what is learned: a run stopped in one layout goes on
    in the other from the same checkpoint."""
    nhwc = tuple(replace(p, cfg=replace(p.cfg, channels_last=True)) for p in _phases())
    nchw = tuple(replace(p, cfg=replace(p.cfg, channels_last=False)) for p in _phases())
    assert phase_checkpoints(tmp_path, "s", nhwc, "k") == phase_checkpoints(tmp_path, "s", nchw,
                                                                            "k")


def test_the_ends_table_pays_fp32_for_the_max_and_min_only():
    """FP32 test top-1 is measured for the ends; the middle's FP32-against-INT8 gap is the
    diagnosis's table (d), so the random subnets are evaluated once (INT8), and neither the
    summary nor the records show an FP32 median of NaNs."""
    sub = SimpleNamespace(encode=lambda: "s")
    net = SimpleNamespace(sample_max=lambda: sub, sample_min=lambda: sub, space=None)
    calls = []
    acc = lambda n, s, r, loader: calls.append(n) or {"top1": 40.0 if n is net else 30.0}  # noqa
    data = SimpleNamespace(loaders={"test": None})
    with mock.patch.object(chapter, "subnet_accuracy", acc), \
            mock.patch.object(chapter, "recal_images", lambda d, n: None), \
            mock.patch.object(chapter, "random_subnets", lambda sp, n, seed, r: [sub] * n):
        lsq = SimpleNamespace()
        ends = chapter.ends_table({"a": (net, lsq)}, data, 0, 3, 0, 32)
    assert len(calls) == 2 * 2 + 3  # max and min twice, each random once
    assert ends[ends.subnet.str.startswith("random")].top1_fp32.isna().all()
    summary = chapter.ends_summary(ends)
    assert "random median fp32" not in summary and summary["random median int8"][0] == 30.0
    space = SimpleNamespace(encode=lambda: "enc")
    names = [r["name"] for r in chapter.summary_records(
        {"a": space}, ends, {"evaluated": {}, "window": {"common": False},
                             "verdict": {"verdict": "x"}}, pd.DataFrame(columns=["space", "tau"]),
        {"all": {"n": 0, "tau": np.nan}, "window": {"n": 0, "tau": np.nan}, "verdict": "x"},
        pd.DataFrame(), {"verdict": "x"}, 1.0, 256)]
    assert "median_top1_int8/supernet/a/random" in names
    assert "median_top1_fp32/supernet/a/random" not in names


def test_the_diagnosis_evaluates_on_class_balanced_held_out_images():
    y = np.repeat(np.arange(4), 25)  # a held-out split sorted by class
    ds = TensorDataset(torch.zeros(len(y), 1), torch.as_tensor(y))
    ds.y = y  # (how the study's image datasets expose their labels)
    data = SimpleNamespace(loaders={"valid": DataLoader(ds, batch_size=8), "test": "t"})
    data = chapter.TrainingData(data.loaders, None, None, None, None, 4)
    diag = chapter.diagnosis_data(data, 20, seed=0)
    labels = [int(b[1]) for b in diag.loaders["valid"].dataset]
    assert len(labels) == 20 and np.bincount(labels).tolist() == [5, 5, 5, 5]
    assert diag.loaders["test"] == "t" and data.loaders["valid"].dataset is ds
    assert chapter.diagnosis_data(data, 0, seed=0) is data
