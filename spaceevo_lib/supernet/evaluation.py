"""Subnets of a trained supernet, evaluated with inherited weights (paper-notes §7.2, §8).

A subnet's accuracy is measured as the reference's search and the paper's tables do: its
weights inherited from the supernet, its batch-norm statistics re-estimated on training images
(:func:`spaceevo_lib.nn.bn.recalibrate_bn`: the supernet's running statistics mix every
subnet trained), then top-1 on a held-out or test loader; on the LSQ+ supernet that is the
INT8 fake-quant top-1 (no per-subnet fine-tuning or quantization: "quantized-for-all").
"""

from __future__ import annotations

import time
from typing import Iterable

import pandas as pd
import torch

from ..nn.bn import recalibrate_bn
from ..space.encoding import Subnet
from ..train.engine import evaluate
from .network import Supernet

#: Images per forward pass when re-estimating BN statistics.
RECAL_BATCH = 256


def recalibration_batches(images: torch.Tensor, batch: int = RECAL_BATCH) -> list[torch.Tensor]:
    """Fixed training images (N, 3, H, W), normalised and not augmented, in batches."""
    return [images[i:i + batch] for i in range(0, len(images), batch)]


@torch.no_grad()
def subnet_accuracy(supernet: Supernet, subnet: Subnet | str, recal_images: torch.Tensor,
                    loader) -> dict:
    """Activate ``subnet``, re-estimate its BN statistics on ``recal_images``, evaluate on
    ``loader``: top-1, top-5, loss, images (the supernet is left in eval mode)."""
    supernet.set_active_subnet(subnet)
    recalibrate_bn(supernet, recalibration_batches(recal_images))
    return evaluate(supernet, loader)


def evaluate_subnets(supernet: Supernet, subnets: Iterable[Subnet | str],
                     recal_images: torch.Tensor, loader, labels: Iterable[str] | None = None
                     ) -> pd.DataFrame:
    """One row per subnet: its encoding, label, top-1 and the seconds its evaluation took
    (BN re-calibration included): what a search pays per candidate."""
    subnets = list(subnets)
    labels = list(labels) if labels is not None else [""] * len(subnets)
    rows = []
    for label, sub in zip(labels, subnets):
        t0 = time.perf_counter()
        r = subnet_accuracy(supernet, sub, recal_images, loader)
        rows.append({"label": label, "subnet": supernet.active_subnet.encode(),
                     "top1": r["top1"], "loss": r["loss"], "images": r["images"],
                     "seconds": time.perf_counter() - t0})
    supernet.sample_max()
    return pd.DataFrame(rows)


def max_min_evaluator(recal_images: torch.Tensor):
    """The trainer's per-epoch evaluator: held-out top-1 of the max and min subnets after BN
    re-calibration (the training curves of both ends of the space)."""
    def evaluate_ends(supernet, loader) -> dict:
        core = getattr(supernet, "module", supernet)
        out = {}
        for kind in ("max", "min"):
            sub = getattr(core, f"sample_{kind}")()
            out[f"top1_{kind}"] = subnet_accuracy(core, sub, recal_images, loader)["top1"]
        core.sample_max()
        return out
    return evaluate_ends
