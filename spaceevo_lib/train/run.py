"""One training run outside notebooks: a named network on Imagenette, selected on a held-out
split of the training set, reported on the test set. ``spaceevo train`` calls
:func:`train_network`; under ``torchrun`` every process calls it and rank 0 writes.

    spaceevo train mobilenet_v3_small -o epochs 3
    spaceevo train teacher -o epochs 18 --lsq -l epochs 2      # then LSQ+ fine-tuning
    torchrun --standalone --nproc_per_node=2 -m spaceevo_lib.cli train mobilenet_v3_small
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch

from .._io import atomic_write, write_json
from ..nn.bn import recalibrate_bn
from .config import TrainConfig
from .data import load_training_data
from .engine import Trainer, evaluate, process_group, rank
from .networks import build_network
from .recipes import train_lsq


def init_distributed() -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on
    GPUs); False when not launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or process_group() is not None:
        return process_group() is not None
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def train_network(name: str, out_dir: Path | str, cfg: TrainConfig, resolution: int = 32,
                  progress: bool = True, lsq: TrainConfig | None = None) -> dict:
    """Train ``name`` into ``out_dir`` (checkpoint, per-epoch metrics, result JSON); a rerun
    with the same folder resumes from the checkpoint. With ``lsq``, the trained network is then
    fine-tuned with LSQ+ (INT8) under those settings, as the INT8 chapter does (its own
    checkpoint ``lsq.pt``, its test top-1 under ``"lsq"``). Returns the result."""
    out = Path(out_dir)
    data = load_training_data(resolution, cfg)  # a missing or corrupt file stops here
    model, arch = build_network(name, resolution, data.n_classes)
    loaders = {k: v for k, v in data.loaders.items() if k != "test"}
    trainer = Trainer(model, cfg, loaders, arch=arch, checkpoint=out / "checkpoint.pt",
                      progress=progress)
    history = trainer.fit().assign(phase="fp32")
    if cfg.bn_recalibration_batches:
        recalibrate_bn(model, loaders["train"], cfg.bn_recalibration_batches)
    test = data.loaders["test"]
    result = {"network": name, "arch": arch, "resolution": resolution,
              "config": cfg.as_dict(), "epochs": trainer.epoch,
              "test": evaluate(model, test, data.n_classes),
              "valid": evaluate(model, loaders["valid"]) if "valid" in loaders else None}
    if lsq is not None:
        q, h, _ = train_lsq(model, arch, lsq, data, out / "lsq.pt", progress=progress)
        history = pd.concat([history, h], ignore_index=True)
        result["lsq"] = {"config": lsq.as_dict(), "test": evaluate(q, test, data.n_classes)}
    if rank() == 0:
        atomic_write(out / "metrics.csv", lambda p: history.to_csv(p, index=False))
        write_json(out / "result.json", result)
    return result


def main(name: str, out_dir: str, options: dict, resolution: int = 32,
         lsq_options: dict | None = None) -> int:
    cfg = TrainConfig.from_dict(options)  # unknown or bad options stop before any work
    lsq = None
    if lsq_options is not None:  # the FP32 run's data settings, then the LSQ+ ones
        keep = ("batch_size", "train_images", "valid_size", "seed", "augment", "channels_last")
        lsq = TrainConfig.from_dict({"warmup_epochs": 0.0, "lr": 0.005,
                                     **{k: getattr(cfg, k) for k in keep}, **lsq_options})
    joined = init_distributed()
    try:
        result = train_network(name, out_dir, cfg, resolution, lsq=lsq)
        writer = rank() == 0
    finally:
        if joined:
            torch.distributed.destroy_process_group()
    if writer:
        t = result["test"]
        line = {"network": name, "test_top1": round(t["top1"], 2),
                "test_top5": round(t["top5"], 2), "epochs": result["epochs"]}
        if "lsq" in result:
            line["lsq_test_top1"] = round(result["lsq"]["test"]["top1"], 2)
        print(json.dumps(line))
    return 0
