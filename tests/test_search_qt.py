"""Q-T score, stage LUT tables and aging evolution over spaces (paper-notes §3.7, §4, §5)."""

from __future__ import annotations

import itertools
import math
import time
import zlib

import numpy as np
import pandas as pd
import pytest

from spaceevo_lib import settings
from spaceevo_lib.search import (
    LUT_MS_PER_MMAC,
    EvolutionConfig,
    LUTError,
    QTConfig,
    QTScorer,
    StageTables,
    aging_evolution,
    lut_ms_per_mmac,
    paper_other_latency,
    qt_score,
    uniform_spaces,
)
from spaceevo_lib.space import EncodingError, SpaceChoice, get_hyperspace, published_spaces

HS = "onnxw"
SPACE = SpaceChoice(HS, (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 3, 0))
# two rows per stage at r224: (nsr, latency_ms); stage i uses SPACE's (block, window)
ROWS = {1: [(0.10, 1.0), (0.30, 0.5)], 2: [(0.20, 1.5), (0.15, 2.5)],
        3: [(0.25, 1.0), (0.05, 3.0)], 4: [(0.30, 0.8), (0.40, 0.6)],
        5: [(0.12, 2.0), (0.22, 1.0)], 6: [(0.50, 0.7), (0.45, 1.2)]}
OTHER = {224: 1.25}


def frame(rows, resolution=224, **extra) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["nsr", "latency_ms"])
    df.insert(0, "resolution", resolution)
    return df.assign(**extra)


def tiny_tables(rows=ROWS, space=SPACE) -> StageTables:
    frames = {(s, space.blocks[s - 1], space.windows[s - 1]): frame(rows[s]) for s in rows}
    return StageTables.from_frames(HS, frames, resolutions=(224,))


def random_frames(hs: str, rng, n=30, resolutions=(160, 192, 224)) -> dict:
    """Small random tables for every (stage, block, window) of ``hs``."""
    spec = get_hyperspace(hs)
    out = {}
    for s, n_w in enumerate(spec.window_counts, start=1):
        for b in range(len(spec.blocks)):
            for w in range(n_w):
                res = np.repeat(resolutions, n)
                out[(s, b, w)] = pd.DataFrame({
                    "resolution": res,
                    "nsr": rng.uniform(0.05, 0.5, res.size) * (1 + 0.1 * b),
                    "latency_ms": rng.uniform(0.2, 3.0, res.size) * res / 224 * (1 + 0.3 * b)})
    return out


# ----------------------------------------------------------------------------- Q-T formula


def brute_force_qt(seed: int, cfg: QTConfig, T_list) -> float:
    """The §4.1 formula with loops, drawing rows in qt_score's documented order."""
    rng = np.random.default_rng(seed)
    n = cfg.n_samples
    n_batches = -(-n // cfg.batch)
    assert (rng.integers(1, size=n_batches) == 0).all()  # one resolution: r224 every batch
    idx = {s: rng.integers(len(ROWS[s]), size=n) for s in range(1, 7)}
    samples = []
    for j in range(n):
        loss = sum(ROWS[s][idx[s][j]][0] for s in range(1, 7))
        lat = sum(ROWS[s][idx[s][j]][1] for s in range(1, 7)) + OTHER[224]
        samples.append((loss, lat))
    total = 0.0
    for T in T_list:
        feasible = sorted(loss for loss, lat in samples if lat <= T)
        p = len(feasible) / n + cfg.eps
        top = (sum(feasible[:cfg.top_k]) / len(feasible[:cfg.top_k]) if feasible
               else cfg.no_feasible_loss)
        lam = max(1.0, (cfg.t / p) ** cfg.a)
        total += 1.0 / (lam * top)
    return total


def test_qt_score_matches_brute_force_on_tiny_table():
    # all 64 combinations: latency 5.35 .. 12.05 ms with other = 1.25; T=8 cuts many of them
    combos = [(sum(r[0] for r in c), sum(r[1] for r in c) + OTHER[224])
              for c in itertools.product(*(ROWS[s] for s in range(1, 7)))]
    lats = [lat for _, lat in combos]
    T_list = (8.0, 9.5, 4.0)  # 4.0: nothing feasible -> no_feasible_loss
    assert min(lats) < 8.0 < max(lats) and min(lats) > 4.0
    cfg = QTConfig(n_samples=1234, batch=100, top_k=7, t=0.5, a=0.3,
                   constraints_ms=((HS, T_list),))
    res = qt_score(tiny_tables(), SPACE, OTHER, cfg, np.random.default_rng(3),
                   keep_samples=True)
    assert res.score == pytest.approx(brute_force_qt(3, cfg, T_list), rel=1e-12)
    assert 0 < res.parts[0].n_feasible < cfg.n_samples  # some samples infeasible
    assert res.parts[0].penalty > 1  # P_8 < t: the penalty is active
    assert res.parts[2].n_feasible == 0 and res.parts[2].top_loss == cfg.no_feasible_loss
    # every sample is one of the 64 combinations
    got = set(zip(np.round(res.samples.loss, 9), np.round(res.samples.latency_ms, 9)))
    assert got <= {(round(a, 9), round(b, 9)) for a, b in combos}
    assert res.to_frame()["constraint_ms"].tolist() == list(T_list)


def test_qt_score_hand_computed_value():
    # t tiny -> lambda = 1 whenever anything is feasible; top_k = 1 -> L_T = the smallest
    # feasible loss, which 5000 samples of 64 equally likely combinations surely contain
    combos = [(sum(r[0] for r in c), sum(r[1] for r in c) + OTHER[224])
              for c in itertools.product(*(ROWS[s] for s in range(1, 7)))]
    best_under_8 = min(loss for loss, lat in combos if lat <= 8.0)
    cfg = QTConfig(n_samples=5000, top_k=1, t=1e-9, constraints_ms=((HS, (8.0, 4.0)),))
    res = qt_score(tiny_tables(), SPACE, OTHER, cfg, np.random.default_rng(0))
    hand = 1 / best_under_8 + 1 / 1e5
    assert res.score == pytest.approx(hand, rel=1e-12)
    assert [p.penalty for p in res.parts] == [1.0, 1.0]


def test_samples_keep_one_resolution_per_batch():
    rng = np.random.default_rng(1)
    frames = random_frames(HS, rng, n=10)
    tables = StageTables.from_frames(HS, frames)
    cfg = QTConfig(n_samples=2050, batch=100)
    other = {160: 1.0, 192: 2.0, 224: 3.0}
    res = qt_score(tables, SPACE, other, cfg, np.random.default_rng(5), keep_samples=True)
    r = res.samples.resolution
    assert len(r) == 2050 and set(np.unique(r)) == {160, 192, 224}
    for start in range(0, 2050, 100):
        assert len(set(r[start:start + 100])) == 1
    # a sample at r160 is built from rows at r160 only: its latency is below the r224 bound
    assert res.samples.latency_ms[r == 160].max() <= 6 * 3.0 * 160 / 224 * 2.5 + 1.0


def test_qt_score_is_deterministic():
    tables = StageTables.from_frames(HS, random_frames(HS, np.random.default_rng(0)))
    cfg = QTConfig(n_samples=20_000)
    other = {160: 1.0, 192: 1.3, 224: 1.6}
    a = qt_score(tables, SPACE, other, cfg, np.random.default_rng(11), keep_samples=True)
    b = qt_score(tables, SPACE, other, cfg, np.random.default_rng(11), keep_samples=True)
    c = qt_score(tables, SPACE, other, cfg, np.random.default_rng(12))
    assert a.score == b.score and a.parts == b.parts
    assert np.array_equal(a.samples.loss, b.samples.loss)
    assert np.array_equal(a.samples.latency_ms, b.samples.latency_ms)
    assert c.score != a.score
    # the callable and the mapping forms of other_latency agree
    d = qt_score(tables, SPACE, other.__getitem__, cfg, np.random.default_rng(11))
    assert d.score == a.score
    scorer = QTScorer(tables, other, cfg, seed=11)
    assert scorer(SPACE) == a.score == scorer(SPACE.encode())


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def quiet_dir(tmp_path, monkeypatch):
    """cwd and store in an empty folder: the failing calls must leave it empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(settings.RUNS_ENV, str(tmp_path / "runs"))
    yield tmp_path
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad, match", [
    (lambda f: f.drop(columns="latency_ms"), r"stage1_0_0: missing column.*latency_ms"),
    (lambda f: f.assign(nsr=[0.1, np.nan]), r"stage1_0_0: column 'nsr' has 1 NaN"),
    (lambda f: f.assign(latency_ms=[1.0, -0.5]), r"stage1_0_0: 1 row\(s\) with latency_ms <= 0"),
    (lambda f: f.assign(resolution=192), r"stage1_0_0: no rows at resolution\(s\) \[224\]"),
    (lambda f: f.iloc[:0], r"stage1_0_0: no rows"),
])
def test_malformed_tables_raise(quiet_dir, bad, match):
    frames = {(1, 0, 0): bad(frame(ROWS[1]))}
    with pytest.raises(LUTError, match=match):
        StageTables.from_frames(HS, frames, resolutions=(224,))


def test_missing_resolution_among_several(quiet_dir):
    f = pd.concat([frame(ROWS[1], 160), frame(ROWS[1], 224)])
    with pytest.raises(LUTError, match=r"onnxw stage1_0_0: no rows at resolution\(s\) \[192\]"):
        StageTables.from_frames(HS, {(1, 0, 0): f})


def test_unknown_encodings_raise(quiet_dir):
    tables = tiny_tables()
    cfg = QTConfig(n_samples=100)
    with pytest.raises(EncodingError, match="blocks"):
        qt_score(tables, "onnxw-016345-012330", OTHER, cfg, np.random.default_rng(0))
    with pytest.raises(EncodingError, match="windows"):
        qt_score(tables, "onnxw-012345-052330", OTHER, cfg, np.random.default_rng(0))
    with pytest.raises(EncodingError, match="not in hyperspace 'onnxw'"):
        qt_score(tables, "mobilew-012345-012330", OTHER, cfg, np.random.default_rng(0))
    with pytest.raises(EncodingError, match=r"stage3 block must be one of .*got 9"):
        tables.table(3, 9, 0)
    with pytest.raises(EncodingError, match=r"stage1 window must be 0..1; got 2"):
        StageTables.from_frames(HS, {(1, 0, 2): frame(ROWS[1])}, resolutions=(224,))
    with pytest.raises(LUTError, match="onnxw stage1_1_0: no such table"):
        qt_score(tables, "onnxw-112345-012330", OTHER, cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="other_latency has no value for resolution 224"):
        qt_score(tables, SPACE, {160: 1.0}, cfg, np.random.default_rng(0))
    with pytest.raises(KeyError, match="no latency constraints for 'onnxw'"):
        qt_score(tables, SPACE, OTHER, QTConfig(constraints_ms=(("mobilew", (15.0,)),)),
                 np.random.default_rng(0))


# ----------------------------------------------------------------------------- evolution


def fake_score(sp: SpaceChoice) -> float:
    """A deterministic, rugged score: prefers block 1 and small windows, plus hash noise."""
    noise = zlib.crc32(sp.encode().encode()) / 2 ** 32
    return sum(b == 1 for b in sp.blocks) - 0.1 * sum(sp.windows) + noise


def test_evolution_invariants_and_determinism():
    cfg = EvolutionConfig(population=30, sample_size=8, max_evaluated=300, seed=4)
    calls = []

    def score(sp):
        calls.append(sp)
        return fake_score(sp)

    res = aging_evolution(HS, score, cfg)
    h = res.history
    assert len(h) == 300 == len(calls) and res.stop_reason == "max_evaluated"
    assert h["encoding"].is_unique  # nothing re-scored
    assert h["order"].tolist() == list(range(300)) and h["evaluated"].iloc[-1] == 300
    assert h["population_size"].max() == 30 and (h["population_size"].iloc[29:] == 30).all()
    assert res.final_population == tuple(h["encoding"].iloc[-30:])  # aging: oldest die
    n_uniform = len(uniform_spaces(HS))
    assert n_uniform == 24 and (h["origin"].iloc[:24] == "uniform").all()
    assert (h["origin"].iloc[24:30] == "random").all()
    assert set(h["origin"].iloc[30:]) <= {"block", "window"}
    for _, row in h.iloc[30:].iterrows():
        child, parent = SpaceChoice.decode(row.encoding), SpaceChoice.decode(row.parent)
        d_blocks = sum(a != b for a, b in zip(child.blocks, parent.blocks))
        d_windows = sum(a != b for a, b in zip(child.windows, parent.windows))
        assert (d_blocks, d_windows) == ((1, 0) if row.origin == "block" else (0, 1))
    assert (np.diff(h["best_so_far"]) >= 0).all()
    assert res.best_score == h["score"].max() and fake_score(res.best) == res.best_score
    top = res.top(5)
    assert list(top["score"]) == sorted(h["score"], reverse=True)[:5]
    assert top["stage1"].iloc[0].endswith(")") and "encoding" in top

    again = aging_evolution(HS, fake_score, cfg)
    pd.testing.assert_frame_equal(res.history, again.history)
    other = aging_evolution(HS, fake_score, EvolutionConfig(
        population=30, sample_size=8, max_evaluated=300, seed=5))
    assert not other.history["encoding"].equals(res.history["encoding"])


def test_evolution_quirk_and_options():
    quirk = (1, 2, 1, 2, 2, 2)
    cfg = EvolutionConfig(population=40, sample_size=10, max_evaluated=60, seed=0,
                          hard_coded_init_blocks=quirk, include_uniform_init=False)
    h = aging_evolution("mobilew", fake_score, cfg).history
    init = h.iloc[:40]
    assert (init["origin"] == "random").all()
    assert all(SpaceChoice.decode(e).blocks == quirk for e in init["encoding"])
    free = aging_evolution("mobilew", fake_score, EvolutionConfig(
        population=40, sample_size=10, max_evaluated=40, include_uniform_init=False)).history
    assert len({SpaceChoice.decode(e).blocks for e in free["encoding"]}) > 30
    with pytest.raises(ValueError, match="sample_size"):
        EvolutionConfig(population=10, sample_size=20)
    with pytest.raises(EncodingError):
        aging_evolution(HS, fake_score, EvolutionConfig(hard_coded_init_blocks=(9,) * 6))


def test_evolution_with_qt_scorer_on_synthetic_tables():
    tables = StageTables.from_frames(HS, random_frames(HS, np.random.default_rng(2), n=20))
    scorer = QTScorer(tables, {160: 0.5, 192: 0.7, 224: 0.9},
                      QTConfig(n_samples=2000, constraints_ms=((HS, (6.0,)),)), seed=0)
    cfg = EvolutionConfig(population=30, sample_size=10, max_evaluated=80, seed=1)
    a = aging_evolution(HS, scorer, cfg)
    b = aging_evolution(HS, scorer, cfg)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert np.isfinite(a.history["score"]).all() and a.best_score > 0


# ----------------------------------------------------------------------------- real LUTs


def reference_root():
    root = settings.data_dir() / "spaceevo-reference"
    if not (root / "block_lut" / HS).is_dir():
        pytest.skip(f"no published LUTs in {root}: set {settings.DATA_ENV} "
                    "(CI: ../shared/data) or run `spaceevo fetch spaceevo-reference`")
    return root


def test_published_spaces_score_on_real_luts(capsys):
    reference_root()
    spaces = published_spaces()
    assert len(spaces) == 5
    tables = {hs: StageTables(hs) for hs in ("onnxw", "mobilew")}
    cfg = QTConfig()
    lines = []
    for name, sp in spaces.items():
        other = paper_other_latency(sp.hyperspace)
        qt_score(tables[sp.hyperspace], sp, other, cfg, np.random.default_rng(0))  # load
        times = []
        for _ in range(5):  # best of 5: the machine may be busy; timing is not asserted
            t0 = time.perf_counter()
            res = qt_score(tables[sp.hyperspace], sp, other, cfg, np.random.default_rng(0))
            times.append(time.perf_counter() - t0)
        ms = min(times) * 1e3
        assert math.isfinite(res.score) and res.score > 0, (name, res)
        feasible = "/".join(str(p.n_feasible) for p in res.parts)
        lines.append(f"{name:24s} {sp.encode():22s} QT={res.score:.4f}  feasible {feasible:>11s}"
                     f"  qt_score {ms:.1f} ms")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_other_latency_estimate_constants_match_the_luts():
    reference_root()
    for (hs, stage, block), want in LUT_MS_PER_MMAC.items():
        got = lut_ms_per_mmac(StageTables(hs), stage, block)
        for r in (160, 192, 224):
            assert got[r] == pytest.approx(want[r], rel=1e-3), (hs, stage, block, r)


def test_paper_other_latency_estimate():
    est = paper_other_latency("onnxw")
    parts = est.to_frame()
    assert parts.loc[160, "first_conv"] == 0.409 and parts.loc[224, "first_conv"] == 0.786
    assert parts.loc[224, "logits"] == 0.169
    assert est(160) < est(192) < est(208) < est(224) == pytest.approx(parts.loc[224, "total"])
    assert paper_other_latency("mobilew")(224) > est(224)
    with pytest.raises(ValueError, match="covers resolutions 160..224"):
        est(256)
    with pytest.raises(ValueError, match="onnxw and mobilew"):
        paper_other_latency("onnxw-train")
