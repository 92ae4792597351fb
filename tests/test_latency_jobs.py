"""The one measurement path: jobs compiled, timed by visits, checkpointed, resumed, re-timed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from spaceevo_lib.latency import RECORD_COLUMNS, Protocol, ProtocolMismatch
from spaceevo_lib.latency import jobs as J
from spaceevo_lib.predictor import build_unit
from spaceevo_lib.predictor.units import Unit, unit_spec
from spaceevo_lib.store import Run

FAST = Protocol(visits=2, warmup=1, warmup_ms=0, runs=5, budget_ms=0, idle_check_s=0.01)
UNITS = [Unit("FirstConv", "relu", 3, 8, 3, 0.0, 2, 16),
         Unit("MBv2Res", "relu6", 8, 8, 3, 4.0, 1, 8)]


def _jobs(protocol=FAST):
    return [J.Job.make("ort-vnni", build_unit, unit_spec(u), u.input_shape,
                       {"kind": "unit", "code": u.code}, protocol=protocol) for u in UNITS]


@pytest.fixture
def images():
    return np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def test_jobs_are_measured_once_and_resumed(runs, images, monkeypatch):
    run = Run("predictor", "smoke")
    out = J.run_jobs(_jobs(), images, run, "t", FAST, workers=0, progress=False)
    assert len(out) == 2 and set(RECORD_COLUMNS) <= set(out.columns)
    assert (out.fp32_min_ms <= out.fp32_median_ms).all()
    assert list(out.code) == ["FirstConv", "MBv2Res"]
    assert not (run.path / "t-models").exists()  # models are deleted after timing
    visits = run.load("t-visits")  # every visit of every job, by key
    assert set(visits.key) == set(out.key) and set(visits.visit) == {0, 1}

    def boom(*a, **k):
        raise AssertionError("nothing should be compiled again")
    monkeypatch.setattr(J, "_compile", boom)
    again = J.run_jobs(_jobs(), images, run, "t", FAST, workers=0, progress=False)
    assert list(again.key) == list(out.key)


def test_groups_are_checkpointed_one_by_one(runs, images, monkeypatch):
    run = Run("predictor", "smoke")
    real, calls = J.time_jobs, []

    def second_fails(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("runtime crashed")
        return real(*a, **k)
    monkeypatch.setattr(J, "time_jobs", second_fails)
    one = replace(FAST, group=1)
    with pytest.raises(RuntimeError, match="crashed"):
        J.run_jobs(_jobs(one), images, run, "g", one, progress=False)
    assert len(run.load("g")) == 1  # the first group's record survived
    assert not [p for p in run.path.iterdir() if ".part" in p.name]


def test_keys_follow_what_a_record_depends_on():
    a, b = _jobs(), _jobs(Protocol(visits=3, warmup=1, warmup_ms=0, runs=5, budget_ms=0))
    assert a[0].key != a[1].key and a[0].key != b[0].key
    assert [j.key for j in a] == [j.key for j in _jobs()]
    with pytest.raises(ValueError, match="share the key"):
        J.run_jobs(a + a[:1], np.zeros((1, 3, 8, 8), np.float32), None, "t")


def test_a_table_of_the_earlier_protocol_is_refused_and_left_alone(runs, images):
    run = Run("predictor", "smoke")
    old = pd.DataFrame({"key": ["x"], "fp32_min_ms": [1.0], "fp32_median_ms": [1.2]})
    run.save(old, "old")  # no protocol_version: made before visits existed
    files = sorted(p.name for p in run.path.rglob("*"))
    with pytest.raises(ProtocolMismatch, match="Delete that file"):
        J.run_jobs(_jobs(), images, run, "old", FAST, progress=False)
    assert run.load("old").equals(old)  # nothing half-written
    assert sorted(p.name for p in run.path.rglob("*")) == files  # and nothing new


def test_kept_models_are_timed_again(runs, images):
    run = Run("predictor", "smoke")
    first = J.run_jobs(_jobs(), images, run, "v", FAST, keep_models=True, progress=False)
    jobs, infos = J.load_compiled(run, "v", list(first.key), "ort-vnni")
    again, visits = J.time_jobs(jobs, infos, images, FAST)
    assert [r["key"] for r in again] == list(first.key)
    assert [r["int8_bytes"] for r in again] == list(first.int8_bytes)  # the very same models
    assert set(visits.key) == set(first.key)
    J.drop_models(run, "v")
    with pytest.raises(FileNotFoundError, match="keep_models"):
        J.load_compiled(run, "v", list(first.key), "ort-vnni")


def test_groups_bound_both_count_and_model_memory():
    jobs = [J.Job("ort-vnni", build_unit, (), (1, 3, 8, 8), (), (), f"k{i}") for i in range(7)]
    mb = 2 ** 20
    infos = {f"k{i}": {"fp32_bytes": 300 * mb, "int8_bytes": 100 * mb} for i in range(7)}
    groups = list(J._groups(jobs, infos, replace(FAST, group=3, group_mb=1000)))
    assert [len(g) for _, g in groups] == [2, 2, 2, 1]  # 400 MB each: two fit in 1,000 MB
    assert [s for s, _ in groups] == [0, 2, 4, 6]
    groups = list(J._groups(jobs, infos, replace(FAST, group=3, group_mb=10_000)))
    assert [len(g) for _, g in groups] == [3, 3, 1]


def test_job_keys_follow_the_registered_builder_name_not_its_module():
    """Moving a builder to another module keeps its key (stored measurements survive)."""
    spec = unit_spec(UNITS[0])
    before = J.Job.make("ort-vnni", build_unit, spec, UNITS[0].input_shape).key
    module, qualname = build_unit.__module__, build_unit.__qualname__
    try:
        build_unit.__module__, build_unit.__qualname__ = "spaceevo_lib.elsewhere", "moved"
        assert J.Job.make("ort-vnni", build_unit, spec, UNITS[0].input_shape).key == before
    finally:
        build_unit.__module__, build_unit.__qualname__ = module, qualname
    assert J.BUILDERS[build_unit.job_builder_name] is build_unit

    def unregistered(**kw):
        return None
    with pytest.raises(ValueError, match="not a registered job builder"):
        J.Job.make("ort-vnni", unregistered, spec, UNITS[0].input_shape)
    with pytest.raises(ValueError, match="is taken"):
        J.job_builder(build_unit.job_builder_name)(unregistered)
