"""The two phases every trained network of the study goes through, on the one engine: FP32
training, then LSQ+ fine-tuning from the FP32 weights (BN folded, quantizers initialised on
calibration images)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..quant.prepare import act_quantizers, quantize_model
from .config import TrainConfig
from .data import TrainingData
from .engine import Trainer


def train_fp32(model, arch: str, cfg: TrainConfig, data: TrainingData, checkpoint: Path,
               progress: bool = True):
    """Train in FP32 (resuming from ``checkpoint``); returns the per-epoch metrics."""
    trainer = Trainer(model, cfg, {k: v for k, v in data.loaders.items() if k != "test"},
                      arch=arch, checkpoint=checkpoint, progress=progress)
    return trainer.fit().assign(phase="fp32")


def train_lsq(fp32_model, arch: str, cfg: TrainConfig, data: TrainingData, checkpoint: Path,
              per_channel: bool = True, progress: bool = True):
    """LSQ+ fine-tuning of a trained FP32 network (BN folded, quantizers min-max initialised
    on one batch of calibration images); returns (quantized model, metrics, scales table:
    every activation quantizer's scale and zero point at initialisation and after training)."""
    q = quantize_model(fp32_model.eval(), per_channel=per_channel).train()
    with torch.no_grad():
        q(torch.from_numpy(data.calibration))  # min-max initialisation
    init = {k: (float(m.step), int(m.zero_point())) for k, m in act_quantizers(q)}
    trainer = Trainer(q, cfg, {k: v for k, v in data.loaders.items() if k != "test"},
                      arch=f"{arch}/lsq{'' if per_channel else '-per-tensor'}",
                      checkpoint=checkpoint, progress=progress)
    history = trainer.fit().assign(phase="lsq+")
    rows = [{"tensor": k, "scale_init": init[k][0], "scale": float(m.step),
             "zero_point_init": init[k][1], "zero_point": int(m.zero_point())}
            for k, m in act_quantizers(q)]
    return q.eval(), history, pd.DataFrame(rows)
