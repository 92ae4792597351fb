"""Runs killed the way a user kills them (SIGKILL to every process of the run: a closed laptop,
Ctrl-C twice, an out-of-memory kill) and started again: they finish with what an uninterrupted
run gives, and leave no partial file where a user would see it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import needs_data, stage_book
from kill_helpers import BLOCKKD_JOBS, kill_when, partial_files, visible_files

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).with_name("spaceevo")


def _same_state(a: Path, b: Path) -> bool:
    sa = torch.load(a, weights_only=True)["model"]
    sb = torch.load(b, weights_only=True)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_block_kd_jobs_killed_mid_way_finish_with_the_same_tables(tmp_path):
    """Four stage students in two worker processes; the run (parent and workers) is killed
    once a student has checkpointed, then started again."""
    run = [sys.executable, str(HERE / "kill_helpers.py"), "blockkd"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(run + [str(ref)], check=True, timeout=300)

    def a_student_checkpointed():
        return any((cut / "students").glob("*/*/*.pt"))
    assert kill_when(run + [str(cut)], a_student_checkpointed) == -signal.SIGKILL
    assert len(list(cut.glob("students/*/*/done.json"))) < len(BLOCKKD_JOBS)  # mid-way

    subprocess.run(run + [str(cut)], check=True, timeout=300)
    tables = visible_files(ref / "tables")
    assert tables and visible_files(cut / "tables") == tables
    for t in tables:
        assert (cut / "tables" / t).read_bytes() == (ref / "tables" / t).read_bytes(), t
    for done in ref.glob("students/*/*/done.json"):
        a = json.loads(done.read_text())
        b = json.loads((cut / done.relative_to(ref)).read_text())
        for rec in (a, b):
            del rec["seconds"], rec["train_seconds"]
        assert a == b
    assert partial_files(cut) == []


@needs_data
def test_spaceevo_train_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    opts = ["-o", "epochs", "3", "-o", "train_images", "512", "-o", "valid_size", "64",
            "-o", "batch_size", "32", "-o", "warmup_epochs", "0"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train = [str(CLI), "train", "mobilenet_v3_small", *opts, "--out"]
    subprocess.run(train + [str(ref)], check=True, timeout=300, capture_output=True)

    # killed as the first epoch's checkpoint lands: inside the second epoch
    assert kill_when(train + [str(cut)], lambda: (cut / "checkpoint.pt").exists()) \
        == -signal.SIGKILL
    assert visible_files(cut) == ["checkpoint.pt"]  # no result, no partial file in view
    torch.load(cut / "checkpoint.pt", weights_only=True)  # the checkpoint there is whole

    subprocess.run(train + [str(cut)], check=True, timeout=300, capture_output=True)
    assert _same_state(ref / "checkpoint.pt", cut / "checkpoint.pt")
    a, b = (json.loads((d / "result.json").read_text()) for d in (ref, cut))
    assert a["test"] == b["test"] and a["epochs"] == b["epochs"] == 3
    assert partial_files(cut) == []


@needs_data
def test_a_chapter_killed_mid_epoch_reruns_to_the_same_weights(tmp_path):
    """The INT8 chapter through papermill (the kernel is killed with the runner), at a tiny
    size: MobileNetV3-Small only, 3 FP32 epochs on 512 images."""
    params = {"profile": "smoke", "networks": "mobilenet_v3_small", "baseline_epochs": 3,
              "train_images": 512, "valid_size": 64, "lsq_epochs": 1, "test_images": 64,
              "calibration_images": 16, "visits": 2, "budget_ms": 1.0}
    code = ("import json, sys; from pathlib import Path; from spaceevo_lib import book; "
            "book.run_chapter('int8', json.loads(sys.argv[2]), root=Path(sys.argv[1]), "
            "progress=False)")

    def chapter(root: Path) -> list[str]:
        stage_book(root)
        return [sys.executable, "-c", code, str(root), json.dumps(params)]

    import os
    runs = {}
    for name in ("ref", "cut"):
        runs[name] = tmp_path / name / "runs" / "smoke" / "int8"
    env = {name: {**os.environ, "SPACEEVO_RUNS_DIR": str(tmp_path / name / "runs")}
           for name in runs}
    subprocess.run(chapter(tmp_path / "ref"), check=True, timeout=600, env=env["ref"],
                   capture_output=True)
    fp32 = runs["cut"] / "mobilenet_v3_small-fp32.pt"
    assert kill_when(chapter(tmp_path / "cut"), fp32.exists, env=env["cut"]) == -signal.SIGKILL
    assert not (runs["cut"] / "results.parquet").exists()  # stopped inside the FP32 training
    assert [f for f in visible_files(runs["cut"]) if f.endswith(".pt")] == [fp32.name]

    subprocess.run(chapter(tmp_path / "cut"), check=True, timeout=600, env=env["cut"],
                   capture_output=True)
    for ckpt in ("mobilenet_v3_small-fp32.pt", "mobilenet_v3_small-lsq.pt"):
        assert _same_state(runs["ref"] / ckpt, runs["cut"] / ckpt), ckpt
    a, b = (pd.read_parquet(runs[n] / "results.parquet") for n in ("ref", "cut"))
    pd.testing.assert_series_equal(a.top1, b.top1)
    assert partial_files(runs["cut"]) == []
