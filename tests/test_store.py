"""The artifact store: atomic writes, reuse of unchanged results, summaries."""

import json

import pandas as pd
import pytest

from spaceevo_lib import Run, chapter_config, record
from spaceevo_lib.store import MissingResultError


def test_run_folder_is_keyed_by_profile_and_chapter(runs):
    run = Run.for_config(chapter_config("data", profile="smoke"))
    assert run.path == runs / "smoke" / "data"
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["params"]["resolution"] == 32 and cfg["packages"]["numpy"]


def test_tables_round_trip_and_leave_no_temporary_files(runs):
    run = Run("data", "smoke")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for kind in ("parquet", "csv"):
        run.save(df, "t", kind)
        pd.testing.assert_frame_equal(run.load("t", kind), df)
    run.save({"k": 1}, "j", "json")
    assert run.load("j", "json") == {"k": 1}
    assert not [p for p in run.path.iterdir() if ".part" in p.name]


def test_torch_results_load_with_weights_only(runs):
    import torch
    run = Run("data", "smoke")
    run.save({"w": torch.ones(2)}, "state", "torch")
    assert torch.equal(run.load("state", "torch")["w"], torch.ones(2))


def test_cached_reuses_unchanged_and_recomputes_changed(runs):
    run = Run("data", "smoke")
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"n": [len(calls)]})

    assert run.cached("stats", compute, key={"n": 1}).n[0] == 1
    assert run.cached("stats", compute, key={"n": 1}).n[0] == 1  # reused
    assert run.cached("stats", compute, key={"n": 2}).n[0] == 2  # inputs changed
    assert len(calls) == 2


def test_a_stored_result_the_reuse_test_rejects_is_computed_again(runs):
    """Latency timed while the CPU was busy is not kept by the cache: the next build times
    it again (timed_files' ``reuse``)."""
    run = Run("data", "smoke")
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"ms": [1.0], "busy": [len(calls) == 1]})  # busy the first time

    def idle(t):
        return not t.busy.any()

    assert bool(run.cached("timing", compute, key={}, reuse=idle).busy[0])
    assert not bool(run.cached("timing", compute, key={}, reuse=idle).busy[0])  # re-timed
    assert not bool(run.cached("timing", compute, key={}, reuse=idle).busy[0])  # kept now
    assert len(calls) == 2


def test_failed_computation_writes_nothing(runs):
    run = Run("data", "smoke")

    def boom():
        raise RuntimeError("fails half way")

    with pytest.raises(RuntimeError):
        run.cached("broken", boom, key={})
    assert not run.path.exists() or not list(run.path.iterdir())


def test_missing_result_says_which_chapter_to_run(runs):
    with pytest.raises(MissingResultError, match="run the chapter 'data' at profile 'default'"):
        Run("data", "default").load("nothing")


def test_summary_records(runs):
    run = Run("data", "smoke")
    run.write_summary([record("images/train", 10, "images"), record("x", 1.5, "ms", paper=2.0)])
    assert run.read_summary()[1] == {"name": "x", "value": 1.5, "unit": "ms", "paper": 2.0}
    with pytest.raises(ValueError, match="unique"):
        run.write_summary([record("a", 1, "u"), record("a", 2, "u")])
    with pytest.raises(ValueError, match="not finite"):
        record("a", float("nan"), "u")
    with pytest.raises(ValueError, match="exactly"):
        run.write_summary([{"name": "a", "value": 1}])


def test_unknown_chapter_or_profile_is_rejected(runs):
    with pytest.raises(ValueError, match="unknown chapter"):
        Run("nope", "smoke")
    with pytest.raises(ValueError, match="unknown profile"):
        Run("data", "fast")


def test_a_writer_killed_outright_leaves_its_temporary_file_to_the_next_write(tmp_path):
    """SIGKILL skips the clean-up of an atomic write; the next write of the same file removes
    the hidden temporary file (and only that file's)."""
    from spaceevo_lib._io import write_json
    stale = tmp_path / ".result.x1y2.part.json"
    other = tmp_path / ".other.x1y2.part.json"
    stale.write_text("{")
    other.write_text("{")
    write_json(tmp_path / "result.json", {"ok": True})
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x1y2.part.json",
                                                          "result.json"]
