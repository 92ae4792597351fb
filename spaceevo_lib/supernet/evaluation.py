"""Subnets of a trained supernet, evaluated with inherited weights (paper-notes §7.2, §8).

A subnet's accuracy is measured as the reference's search and the paper's tables do: its
weights inherited from the supernet, its batch-norm statistics re-estimated on training images
(:func:`spaceevo_lib.nn.bn.recalibrate_bn`: the supernet's running statistics mix every
subnet trained), then top-1 on a held-out or test loader; on the LSQ+ supernet that is the
INT8 fake-quant top-1 (no per-subnet fine-tuning or quantization: "quantized-for-all").

The evaluation runs on the subnet's **extracted static network** (:func:`subnet_network`):
the same weights, and on the LSQ+ supernet the same per-tensor input and weight quantizers,
without the elastic layers' slicing on every call, and after BN re-estimation with BN folded
into the convolutions in channels-last layout (:func:`inference_form`), so a search pays less
per candidate; the elastic forward (:func:`elastic_subnet_accuracy`) gives the same top-1 up
to float rounding (tested; the chapter's diagnosis measures the difference on trained
supernets).
"""

from __future__ import annotations

import copy
import time
from typing import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..nn.bn import recalibrate_bn
from ..space.encoding import Subnet, as_subnet
from ..train.engine import evaluate
from .network import Supernet

#: What an evaluation computes, for the keys of cached scores: a change of it (the same top-1
#: only up to float rounding) must not reuse scores the earlier form computed.
EVALUATION_FORM = "static subnet, BN re-estimated, then folded, channels-last"

#: Images per forward pass when re-estimating BN statistics (64: at 32 px on 2 cores 1.3-2x
#: faster than 256, as for evaluation, :data:`spaceevo_lib.train.data.EVAL_BATCH`).
RECAL_BATCH = 64


def recalibration_batches(images: torch.Tensor, batch: int = RECAL_BATCH) -> list[torch.Tensor]:
    """Fixed training images (N, 3, H, W), normalised and not augmented, in batches."""
    return [images[i:i + batch] for i in range(0, len(images), batch)]


class Resized(nn.Module):
    """A static subnet that takes the loader's images and resizes them to its resolution as
    the supernet does (bicubic; an input of that size passes untouched); ``channels_last``:
    the images are handed on in that layout (the model's own, :func:`inference_form`)."""

    def __init__(self, model: nn.Module, resolution: int):
        super().__init__()
        self.model, self.resolution = model, int(resolution)
        self.channels_last = False  # (set by inference_form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        r = self.resolution
        if tuple(x.shape[-2:]) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


class QuantizedInput(nn.Module):
    """A conv or linear layer of an extracted subnet behind the LSQ+ supernet's per-tensor
    input quantizer (eval form), its weight already on the supernet's int8 grid: what the
    elastic ``QDynamicConv2d`` / ``QDynamicLinear`` computes for that setting."""

    def __init__(self, layer: nn.Module, input_quantizer: nn.Module):
        super().__init__()
        self.layer = layer
        self.input_quantizer = copy.deepcopy(input_quantizer).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.input_quantizer(x))


def fold_bn(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm into the convolution just before it in the same
    container (behind its input quantizer on an INT8 subnet: the weight is already on the
    int8 grid, so the fold scales the grid, it does not re-quantize), the BN replaced by
    an identity; returns how many were folded. The outputs are those of conv then BN up to
    float rounding (which an INT8 subnet's next quantizer may round the other way)."""
    folded = 0
    children = list(module.named_children())
    for (prev_name, prev), (name, child) in zip([("", None)] + children[:-1], children):
        if isinstance(child, nn.BatchNorm2d) and not child.training:
            holder = prev if isinstance(prev, QuantizedInput) else None
            conv = holder.layer if holder is not None else prev
            if isinstance(conv, nn.Conv2d) and conv.out_channels == child.num_features:
                fused = fuse_conv_bn_eval(conv, child)
                if holder is not None:
                    holder.layer = fused
                else:
                    setattr(module, prev_name, fused)
                setattr(module, name, nn.Identity())
                folded += 1
                continue
        folded += fold_bn(child)
    return folded


def inference_form(net: Resized) -> Resized:
    """``net`` (in eval mode, BN statistics final) with BN folded into its convolutions and
    in channels-last layout: on 2 cores an evaluation (BN re-estimation included) took 15-30 %
    less time than with conv + BN in NCHW (measured on the default supernets' subnets), same top-1 up to float rounding
    (tested against the elastic forward)."""
    fold_bn(net.model)
    net.channels_last = True
    return net.to(memory_format=torch.channels_last)


def is_quantized(supernet: nn.Module) -> bool:
    return any(hasattr(m, "input_quantizer") for m in supernet.modules())


@torch.no_grad()
def subnet_network(supernet: Supernet, subnet: Subnet | str,
                   recal_images: torch.Tensor | None, fast: bool = True) -> Resized:
    """``subnet``'s static network with the supernet's weights (on the LSQ+ supernet: behind
    its per-tensor quantizers), BN statistics re-estimated on ``recal_images`` (None: the
    supernet's running statistics), in eval mode, taking the loader's images; ``fast``: then
    in :func:`inference_form` (BN folded, channels-last), for evaluation only."""
    static = supernet.extract_subnet(subnet)
    if is_quantized(supernet):
        supernet.set_active_subnet(subnet)  # (paired_ops pairs the active subnet's layers)
        for name, op in supernet.paired_ops(static):
            wq = getattr(op, "weight_quantizer", None)
            if wq is None:
                continue  # BN, or a fixed channel projection (exact, not quantized)
            layer = static.get_submodule(name)
            layer.weight.copy_(wq.fake_quantized(layer.weight))
            parent, _, attr = name.rpartition(".")
            setattr(static.get_submodule(parent) if parent else static, attr,
                    QuantizedInput(layer, op.input_quantizer))
    net = Resized(static, static.resolution).eval()
    if recal_images is not None:
        recalibrate_bn(net, recalibration_batches(recal_images))
    return inference_form(net) if fast else net


@torch.no_grad()
def subnet_accuracy(supernet: Supernet, subnet: Subnet | str, recal_images: torch.Tensor,
                    loader) -> dict:
    """``subnet``'s top-1, top-5, loss and images on ``loader``: its static network
    (:func:`subnet_network`) with BN statistics re-estimated on ``recal_images``."""
    return evaluate(subnet_network(supernet, subnet, recal_images), loader)


@torch.no_grad()
def elastic_subnet_accuracy(supernet: Supernet, subnet: Subnet | str,
                            recal_images: torch.Tensor, loader) -> dict:
    """The same through the supernet's elastic forward: activate ``subnet``, re-estimate the
    supernet's BN statistics, evaluate (the supernet is left in eval mode)."""
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
        rows.append({"label": label, "subnet": as_subnet(sub).encode(),
                     "top1": r["top1"], "loss": r["loss"], "images": r["images"],
                     "seconds": time.perf_counter() - t0})
    supernet.sample_max()
    return pd.DataFrame(rows)


def subnets_evaluator(recal_images: torch.Tensor, random_subnets=()):
    """The trainer's per-epoch evaluator: held-out top-1 of the max and min subnets and, with
    ``random_subnets`` (fixed encodings), each of them and their median (``top1_random``),
    BN re-estimated for each: the training curves of both ends and of the middle."""
    random_subnets = list(random_subnets)

    def evaluate_all(supernet, loader) -> dict:
        core = getattr(supernet, "module", supernet)
        out = {}
        for kind in ("max", "min"):
            out[f"top1_{kind}"] = subnet_accuracy(core, getattr(core, f"sample_{kind}")(),
                                                  recal_images, loader)["top1"]
        if random_subnets:
            tops = [subnet_accuracy(core, s, recal_images, loader)["top1"]
                    for s in random_subnets]
            out.update({f"top1_random{i}": t for i, t in enumerate(tops)})
            out["top1_random"] = float(pd.Series(tops).median())
        core.sample_max()
        return out
    return evaluate_all
