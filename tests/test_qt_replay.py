"""The replay layer of the Q-T chapter: cached, deterministic, verdicts computed by rule."""

import pytest

from spaceevo_lib import Run
from spaceevo_lib.data.reference import reference_dir
from spaceevo_lib.chapters.qt import (avoids_se_hswish_early, figure1_spaces, replay_hyperspace,
                                      replay_summary, replay_verdicts, top_tier_samples)
from spaceevo_lib.search import EvolutionConfig, QTConfig

pytestmark = pytest.mark.skipif(not (reference_dir() / "block_lut").is_dir(),
                                reason="no spaceevo-reference LUTs in the data directory")
QT = QTConfig(n_samples=3000)
EVO = EvolutionConfig(population=12, sample_size=4, max_evaluated=40)


def test_replay_is_cached_and_deterministic(runs):
    run = Run("qt", "smoke")
    a = replay_hyperspace("onnxw", QT, EVO, [0, 1], run=run)
    assert len(a.history) == 40 and set(a.scores.kind) == {"published", "uniform", "best found"}
    assert (run.path / "history_onnxw.parquet").is_file()
    b = replay_hyperspace("onnxw", QT, EVO, [0, 1], run=run)  # from the store
    assert a.scores.equals(b.scores)
    c = replay_hyperspace("onnxw", QT, EVO, [0, 1])  # recomputed, no store
    assert list(c.history.encoding) == list(a.history.encoding)


def test_verdicts_summary_and_figure1_inputs(runs):
    r = replay_hyperspace("onnxw", QT, EVO, [0, 1])
    v = replay_verdicts({"onnxw": r})
    assert set(v.holds) <= {"yes", "partly", "no"} and len(v) == 2 + 1 + 1
    names = {x["name"] for x in replay_summary({"onnxw": r})}
    assert {"qt/onnxw/onnxw-151122-023231", "qt_best/onnxw", "rank/onnxw/onnxw-151122-023231"} \
        <= names
    picks = figure1_spaces(r.scores)
    s = top_tier_samples("onnxw", picks, QT, per_space=20)
    assert set(s.space) <= set(picks) and (s.latency_ms <= 10.0).all()


def test_se_hswish_rule():
    assert avoids_se_hswish_early("onnxw-151122-023231")  # MBv3Res only in stages 5-6
    assert not avoids_se_hswish_early("onnxw-222222-000000")
