"""Parallel-compile, serial-time measurement jobs: records, resume, retest."""

from __future__ import annotations

import numpy as np
import pytest

from spaceevo_lib.latency import RECORD_COLUMNS, Protocol
from spaceevo_lib.latency import jobs as J
from spaceevo_lib.predictor import build_unit
from spaceevo_lib.predictor.units import Unit, unit_spec
from spaceevo_lib.store import Run

FAST = Protocol(warmup=1, runs=5, rounds=2, retries=0)
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

    def boom(*a, **k):
        raise AssertionError("nothing should be compiled again")
    monkeypatch.setattr(J, "_compile", boom)
    again = J.run_jobs(_jobs(), images, run, "t", FAST, workers=0, progress=False)
    assert list(again.key) == list(out.key)


def test_keys_follow_what_a_record_depends_on():
    a, b = _jobs(), _jobs(Protocol(warmup=1, runs=6, rounds=2, retries=0))
    assert a[0].key != a[1].key and a[0].key != b[0].key
    assert [j.key for j in a] == [j.key for j in _jobs()]
    with pytest.raises(ValueError, match="share the key"):
        J.run_jobs(a + a[:1], np.zeros((1, 3, 8, 8), np.float32), None, "t")


def test_retime_reuses_kept_models(runs, images):
    run = Run("predictor", "smoke")
    first = J.run_jobs(_jobs(), images, run, "v", FAST, keep_models=True, progress=False)
    assert all((run.path / "v-models" / k / "compiled.json").exists() for k in first.key)
    second = J.retime_jobs(_jobs(), images, run, "retest", "v", FAST, progress=False)
    assert list(second.key) == list(first.key)
    assert not (run.path / "v-models").exists()
    assert (second.fp32_bytes == first.fp32_bytes).all()  # the very same models


def test_drift_normalisation_divides_the_reference_out():
    import pandas as pd
    df = pd.DataFrame({"fp32_min_ms": [2.0, 4.0], "int8_min_ms": [1.0, 2.0],
                       "ref_fp32_min_ms": [1.0, 2.0], "ref_int8_min_ms": [0.5, 1.0]})
    out, nominal = J.drift_normalized(df)  # the second job ran in a phase twice as slow
    assert nominal == {"fp32": 1.5, "int8": 0.75}
    assert list(out.fp32_norm_ms) == [3.0, 3.0] and list(out.int8_norm_ms) == [1.5, 1.5]
    again, _ = J.drift_normalized(df, {"fp32": 1.0, "int8": 1.0})
    assert list(again.fp32_norm_ms) == [2.0, 2.0]


def test_a_reference_job_is_timed_around_every_job(runs, images):
    run = Run("predictor", "smoke")
    ref = J.Job.make("ort-vnni", build_unit, unit_spec(UNITS[1]), UNITS[1].input_shape,
                     protocol=FAST)
    out = J.run_jobs(_jobs()[:1], images, run, "r", FAST, progress=False, reference=ref)
    assert (out.ref_key == ref.key).all()
    assert (out.ref_fp32_min_ms > 0).all() and (out.ref_int8_min_ms > 0).all()
