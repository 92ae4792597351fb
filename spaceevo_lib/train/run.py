"""One training run outside notebooks: a named network on Imagenette, selected on a held-out
split of the training set, reported on the test set. ``spaceevo train`` calls
:func:`train_network`; under ``torchrun`` every process calls it and rank 0 writes.

    spaceevo train mobilenet_v3_small -o epochs 3
    torchrun --standalone --nproc_per_node=2 -m spaceevo_lib.cli train mobilenet_v3_small
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._io import atomic_write, write_json
from .config import TrainConfig
from .engine import Trainer, _dist, evaluate, rank, recalibrate_bn, train_loader


def build_network(name: str, resolution: int, n_classes: int = 10):
    """A torchvision model by name (stem stride 1 at 32 px, the training scale's rule) or a
    subnet as ``<space encoding>:<subnet encoding>``; returns (model, architecture string)."""
    if ":" in name:
        from ..space.build import build_subnet
        space, subnet = name.split(":", 1)
        return build_subnet(space, subnet, n_classes=n_classes), name
    from ..nn.models import create_model
    stem = 1 if resolution <= 32 else 2
    return (create_model(name, num_classes=n_classes, stem_stride=stem).train(),
            f"{name}/c{n_classes}/s{stem}")


def init_distributed() -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on
    GPUs); False when not launched by torchrun."""
    import torch
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _dist() is not None:
        return _dist() is not None
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def train_network(name: str, out_dir: Path | str, cfg: TrainConfig, resolution: int = 32,
                  progress: bool = True) -> dict:
    """Train ``name`` into ``out_dir`` (checkpoint, per-epoch metrics, result JSON); a rerun
    with the same folder resumes from the checkpoint. Returns the result."""
    from torch.utils.data import DataLoader

    from ..data.imagenette import (ImagenetteDataset, load_imagenette, normalization,
                                   split_train, subset)
    out = Path(out_dir)
    data = load_imagenette(resolution)  # a missing or corrupt file stops here, clearly
    ms = normalization(data, "imagenet")
    train_idx, valid_idx = split_train(len(data.x_train), cfg.valid_size, cfg.seed)
    if cfg.train_images:  # a seeded subset of the rest
        train_idx = subset(train_idx, train_idx, cfg.train_images, cfg.seed)[0]
    train = ImagenetteDataset(data.x_train[train_idx], data.y_train[train_idx], cfg.augment, ms)
    loaders = {"train": train_loader(train, cfg.batch_size, cfg.seed)}
    if cfg.valid_size:
        loaders["valid"] = DataLoader(ImagenetteDataset(data.x_train[valid_idx],
                                                        data.y_train[valid_idx], "none", ms),
                                      batch_size=256)
    test = DataLoader(ImagenetteDataset(data.x_test, data.y_test, "none", ms), batch_size=256)
    model, arch = build_network(name, resolution, len(data.classes))
    trainer = Trainer(model, cfg, loaders, arch=arch, checkpoint=out / "checkpoint.pt",
                      progress=progress)
    history = trainer.fit()
    if cfg.bn_recalibration_batches:
        recalibrate_bn(model, loaders["train"], cfg.bn_recalibration_batches)
    result = {"network": name, "arch": arch, "resolution": resolution,
              "config": cfg.as_dict(), "epochs": trainer.epoch,
              "test": evaluate(model, test, len(data.classes)),
              "valid": evaluate(model, loaders["valid"]) if "valid" in loaders else None}
    if rank() == 0:
        atomic_write(out / "metrics.csv", lambda p: history.to_csv(p, index=False))
        write_json(out / "result.json", result)
    return result


def main(name: str, out_dir: str, options: dict, resolution: int = 32) -> int:
    cfg = TrainConfig.from_dict(options)  # unknown or bad options stop before any work
    joined = init_distributed()
    try:
        result = train_network(name, out_dir, cfg, resolution)
        writer = rank() == 0
    finally:
        if joined:
            import torch
            torch.distributed.destroy_process_group()
    if writer:
        t = result["test"]
        print(json.dumps({"network": name, "test_top1": round(t["top1"], 2),
                          "test_top5": round(t["top5"], 2), "epochs": result["epochs"]}))
    return 0
