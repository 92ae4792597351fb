"""``spaceevo train``: one command trains, evaluates and writes a run folder, the same under
torchrun; bad options stop before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spaceevo_lib.cli import main

QUICK = ["-o", "epochs", "1", "-o", "train_images", "64", "-o", "valid_size", "32",
         "-o", "batch_size", "16", "-o", "warmup_epochs", "0"]


def test_unknown_option_stops_with_the_known_ones(tmp_path, capsys):
    assert main(["train", "mobilenet_v3_small", "--out", str(tmp_path), "-o", "lrr", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown training option(s) 'lrr'" in err and "epochs" in err
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.slow
def test_train_writes_metrics_result_and_a_resumable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mobilenet_v3_small", "--out", str(out), *QUICK]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["arch"] == "mobilenet_v3_small/c10/s1" and result["epochs"] == 1
    assert 0 <= result["test"]["top1"] <= 100 and result["test"]["images"] > 1000
    assert (out / "metrics.csv").read_text().startswith("epoch,")
    # a rerun finds the finished checkpoint: no training, the same numbers
    assert main(["train", "mobilenet_v3_small", "--out", str(out), *QUICK]) == 0
    assert json.loads((out / "result.json").read_text())["test"] == result["test"]


def test_unknown_lsq_option_stops_before_any_work(tmp_path, capsys):
    assert main(["train", "mobilenet_v3_small", "--out", str(tmp_path), "--lsq",
                 "-l", "epochz", "1"]) == 2
    assert "unknown training option(s) 'epochz'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_train_then_lsq_fine_tuning(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mobilenet_v3_small", "--out", str(out), *QUICK, "--lsq",
                 "-l", "epochs", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert 0 <= result["lsq"]["test"]["top1"] <= 100 and (out / "lsq.pt").exists()
    assert result["lsq"]["config"]["train_images"] == 64  # the FP32 run's data settings
    metrics = (out / "metrics.csv").read_text()
    assert "lsq+" in metrics and "fp32" in metrics


@pytest.mark.slow
def test_the_same_command_runs_under_torchrun(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "spaceevo_lib.cli", "train", "mobilenet_v3_small", "--out", str(out), *QUICK],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 1 and (out / "checkpoint.pt").exists()
    assert proc.stdout.count('"test_top1"') == 1  # rank 0 alone reports and writes


def test_messages_name_what_the_user_typed(tmp_path, capsys):
    """An unknown network lists what a name may be (no Python quoting); an option the user
    did not type is said to be a default."""
    assert main(["train", "foo", "--out", str(tmp_path), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "unknown network 'foo'" in err and "'teacher'" in err and '"' not in err
    assert main(["train", "mobilenet_v3_small", "--out", str(tmp_path), "-o", "epochs", "1"]) == 2
    assert "'warmup_epochs'" in (err := capsys.readouterr().err) and "its default" in err
    assert not any(tmp_path.iterdir())
