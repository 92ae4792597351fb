"""Small, deterministic workloads that the kill tests run in a process of their own, and the
fakes they share with the block-wise distillation tests.

    python tests/kill_helpers.py blockkd OUT      # 4 stage students in 2 worker processes
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RES = (24, 28, 32)


class FakePredictor:
    """Prices a unit by its MACs (what the tables need of a predictor)."""

    def __init__(self, hyperspace):
        self.hyperspace, self.name = hyperspace, f"fake@{hyperspace}"

    def additive_ms(self, parts, precision="int8"):
        from spaceevo_lib.predictor.units import unit_cost
        return np.array([sum(unit_cost(u)["macs"] for u in p) / 1e6 * 0.01 + 0.001 * len(p)
                         for p in parts])


def tiny_bank():
    """The block-KD tests' feature bank: the training-scale teacher (seed 0, random weights) on
    48 seeded random images, 32 of them for training, at 24/28/32 px."""
    import torch

    from spaceevo_lib.blockkd import FeatureBank, stage_boundaries
    from spaceevo_lib.train.networks import teacher_network
    torch.manual_seed(0)
    teacher = teacher_network("mobilew-train", n_classes=10).eval()
    torch.manual_seed(1)
    x = torch.randn(48, 3, 32, 32)
    return FeatureBank.build(stage_boundaries(teacher), x, n_train=32, resolutions=RES)


def student_config(epochs: int):
    from spaceevo_lib.train.config import TrainConfig
    return TrainConfig(epochs=epochs, batch_size=16, optimizer="adamw", lr=0.005,
                       warmup_epochs=0.0, valid_size=0, grad_clip_value=1.0,
                       grad_clip_norm=None, label_smoothing=0.0, augment="none",
                       channels_last=False)


BLOCKKD_JOBS = [("onnxw-train", 1, b) for b in range(4)]


def blockkd(out: Path, workers: int = 2) -> None:
    """Four stage students of onnxw-train (2 FP32 + 2 LSQ+ epochs each) and their tables, in
    ``workers`` forked processes: what a chapter run does, at a tiny size."""
    from spaceevo_lib.blockkd import JobContext, JobSettings, run_jobs
    bank = tiny_bank()
    cfg = student_config(2)
    settings = JobSettings(fp32=cfg, int8=cfg, samples=3, recal_images=4, eval_images=4,
                           n_random=1)
    ctx = JobContext(Path(out), bank, bank, settings,
                     {"onnxw-train": FakePredictor("onnxw-train")})
    run_jobs(BLOCKKD_JOBS, ctx, workers=workers, progress=False)


def kill_when(cmd: list[str], ready, timeout: float = 120.0, env=None) -> int:
    """Start ``cmd`` in a process group of its own, SIGKILL the whole group (workers and
    kernels included) as soon as ``ready()`` is true; returns the killed process's return
    code (-9), or its own return code if it ended first."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready():
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    try:  # what the group left (forked workers whose parent died)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return rc


def visible_files(folder: Path) -> list[str]:
    """Files a user sees in ``folder`` (no hidden temporary files), relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in
                                              p.relative_to(folder).parts))


def partial_files(folder: Path) -> list[str]:
    """Temporary files of interrupted atomic writes (``.<name>.*.part<suffix>``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.part*"))


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    if sys.argv[1] == "blockkd":
        blockkd(Path(sys.argv[2]))
