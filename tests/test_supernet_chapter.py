"""The supernet chapter's rules on made-up numbers (written before any result): the latency
window of Figure 1 and its verdict, the quantized-for-all verdict, rank
correlations with intervals, and subnets composed from own tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spaceevo_lib.blockkd.students import SubStage, parse_arch
from spaceevo_lib.chapters import supernet as chapter
from spaceevo_lib.space import as_hyperspace, as_space, sample_subnet
from spaceevo_lib.space.encoding import Subnet

SPACE = "onnxw-train-212121-000000"


def test_the_latency_window_is_the_one_both_spaces_fill_best():
    a = np.linspace(1.0, 2.0, 101)
    b = np.linspace(1.8, 3.0, 101)
    w = chapter.latency_window({"a": a, "b": b}, delta=0.1)
    assert w["low"] == pytest.approx(0.9 * w["high"])
    assert 1.8 <= w["high"] <= 2.2  # inside the overlap
    assert min(w["shares"].values()) > 0.05 and w["common"]
    disjoint = chapter.latency_window({"a": a, "b": b + 10}, delta=0.1)
    assert min(disjoint["shares"].values()) == 0.0 and not disjoint["common"]


def test_picked_subnets_lie_in_the_window_and_spread_covers_the_range():
    pool = pd.DataFrame({"subnet": [f"s{i}" for i in range(20)],
                         "int8_ms": np.linspace(1, 3, 20)})
    picked = chapter.pick_in_window(pool, {"low": 1.5, "high": 2.0}, 3)
    assert len(picked) == 3 and picked.int8_ms.between(1.5, 2.0).all()
    near = chapter.pick_nearest(pool, 1.0, 3)  # no common window: as close as it gets
    assert list(near.subnet) == ["s0", "s1", "s2"]
    s = chapter.spread(pool, 5)
    assert len(s) == 5 and s.int8_ms.iloc[0] == 1 and s.int8_ms.iloc[-1] == 3


def test_figure_1_holds_fails_or_is_undecided_by_the_bootstrap_interval():
    rng = np.random.default_rng(0)
    low, high = rng.normal(40, 1, 30), rng.normal(45, 1, 30)
    assert chapter.fig1_verdict(high, low)["verdict"] == "holds"
    assert chapter.fig1_verdict(low, high)["verdict"] == "fails"
    same = chapter.fig1_verdict(rng.normal(40, 3, 30), rng.normal(40, 3, 30))
    assert same["verdict"] == "undecided at this budget"
    assert same["ci_low"] < 0 < same["ci_high"]
    assert chapter.fig1_verdict(high, low[:1])["verdict"].startswith("undecided")


def _qfa(file, fakequant, fp32, ptq) -> pd.DataFrame:
    n = 8
    return pd.DataFrame({"top1_int8_ort_lsq_qdq": [file] * n,
                         "top1_int8_fakequant": [fakequant] * n,
                         "top1_fp32": [fp32] * n, "top1_int8_ort_ptq": [ptq] * n})


def test_quantized_for_all_holds_when_the_file_keeps_fake_quant_and_fp32_accuracy():
    v = chapter.qfa_verdict(_qfa(50.0, 50.3, 50.5, 45.0))
    assert v["verdict"] == "holds" and v["ptq_loses_more"]
    assert chapter.qfa_verdict(_qfa(50.0, 51.0, 50.5, 45.0))["verdict"] == "does not hold"
    assert chapter.qfa_verdict(_qfa(48.0, 48.0, 50.5, 45.0))["verdict"] == "does not hold"
    assert not chapter.qfa_verdict(_qfa(50.0, 50.0, 50.5, 50.4))["ptq_loses_more"]


def test_kendall_tau_comes_with_an_interval_that_is_wide_for_8_subnets():
    x = np.arange(8.0)
    perfect = chapter.kendall_with_interval(x, x)
    assert perfect["tau"] == pytest.approx(1.0) and perfect["ci_low"] == pytest.approx(1.0)
    assert perfect["n"] == 8
    rng = np.random.default_rng(1)
    noisy = chapter.kendall_with_interval(x, x + rng.normal(0, 2, 8))
    assert noisy["ci_low"] <= noisy["tau"] <= noisy["ci_high"]
    assert noisy["ci_high"] - noisy["ci_low"] > 0.4
    assert np.isnan(chapter.kendall_with_interval(x[:2], x[:2])["tau"])  # too few subnets
    assert np.isnan(chapter.kendall_with_interval(x, np.full(8, 10.0))["ci_low"])  # all ties


def test_subnets_composed_from_own_tables_know_their_nsr_sum_exactly(tmp_path):
    hs, sp = as_hyperspace(as_space(SPACE).hyperspace), as_space(SPACE)
    rng = np.random.default_rng(0)
    nsr = {}
    for i, (b, w) in enumerate(zip(sp.blocks, sp.windows), start=1):
        rows = []
        for j in range(4):
            sub = sample_subnet(hs, sp, rng, resolutions=(32,))
            arch = SubStage(16, sub.stage_blocks()[f"stage{i}"], 32).arch
            nsr[(i, arch)] = round(0.1 * i + 0.01 * j, 4)
            rows.append(f"{arch},1x16x8x8,{nsr[(i, arch)]},1.0,0.1,0.5,32")
        (tmp_path / f"stage{i}_{b}_{w}.csv").write_text("\n".join(rows) + "\n")
    pool = chapter.table_subnets(sp, tmp_path, 10, seed=0)
    assert len(pool) >= 5 and (pool.resolution == 32).all()
    for r in pool.itertuples():
        sub = Subnet.decode(r.subnet).validate(hs, sp)
        blocks = sub.stage_blocks()
        total = sum(nsr[(i, SubStage(16, blocks[f"stage{i}"], 32).arch)] for i in range(1, 7))
        assert r.nsr_sum == pytest.approx(total)
    assert parse_arch("3#24#6_5#32#0") == ((3, 24, 6.0), (5, 32, None))
    (tmp_path / "stage1_2_1.csv").unlink(missing_ok=True)
    with pytest.raises(Exception, match="run the block-wise chapter"):
        chapter.table_subnets(as_space(SPACE), tmp_path / "nothing", 10, seed=0)


def test_an_unknown_space_label_is_refused_before_any_result_is_read(tmp_path):
    with pytest.raises(ValueError, match="unknown space label 'evolved-tflite'"):
        chapter.spaces_of(["evolved-tflite"], "smoke", tmp_path)


def test_supernet_train_refuses_bad_parameters_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from spaceevo_lib.cli import main
    from spaceevo_lib.settings import RUNS_ENV
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    assert main(["supernet-train", "-p", "spaces", "evolved-tflite"]) == 2
    assert "evolved-tflite" in capsys.readouterr().err
    assert main(["supernet-train", "-p", "init", "blockkd", "-p", "profile", "smoke"]) == 2
    assert "spaceevo chapter blockkd" in capsys.readouterr().err  # no students at smoke yet
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
