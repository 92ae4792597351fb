"""Quantized-for-all, deployed: a subnet of the LSQ+ supernet as a learned-scale INT8 file.

The LSQ+ supernet (the reference's layout) fake-quantizes the **input** and the per-tensor
**weight** of every conv and linear layer and keeps batch norm unfolded. The deployed file
(:func:`spaceevo_lib.quant.deploy.export_qdq`, the INT8 chapter's learned-scale route) needs
the runtimes' layout: BN folded into the convolution, one quantizer per tensor at its producer,
per-channel weight scales. :func:`inherited_int8_network` maps one onto the other exactly:

* **BN folded** with the subnet's re-calibrated statistics. Folding multiplies output channel
  c by gamma_c / sigma_c, so the per-tensor weight scale s_w becomes the per-channel scale
  s_w * |gamma_c / sigma_c|: the folded weight has the same integers as the supernet's
  (round is odd-symmetric), i.e. the deployed weights are the trained INT8 weights.
* **Fixed channel projections** (a width change inside a stage, ``elastic.ChannelProjection``)
  are 1x1 convs of zeros and ones, exact on any int8 grid.
* **Activations**: a tensor that some conv or linear layer reads takes that layer's learned
  LSQ+ scale and offset (the supernet quantized it there); a tensor no such layer reads (a
  residual sum's operand, a gate, the product of a gated activation) has no learned range and
  is calibrated min-max on real training images, as post-training quantization would.

Nothing is retrained or fine-tuned per subnet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import fx

from ..export.metadata import Preprocessing
from ..nn.bn import recalibrate_bn
from ..quant.deploy import Deployed, deploy
from ..quant.lsq import ActQuantizer
from ..quant.prepare import QConv2d, QLinear, act_quantizers, quantize_model
from ..space.encoding import Subnet
from .elastic import ChannelProjection
from .evaluation import recalibration_batches
from .network import Supernet


@torch.no_grad()
def inherited_int8_network(qsupernet: Supernet, subnet: Subnet | str,
                           recal_images: torch.Tensor, calibration: torch.Tensor
                           ) -> tuple[fx.GraphModule, dict]:
    """The deployable INT8 network of ``subnet`` with the LSQ+ supernet's learned weights
    and scales (BN re-calibrated on ``recal_images`` first), and what came from where:
    ``{"learned_activations", "calibrated_activations", "weights"}`` counts. ``calibration``:
    normalised training images for the tensors no learned quantizer covers."""
    sub = qsupernet.set_active_subnet(subnet)
    recalibrate_bn(qsupernet, recalibration_batches(recal_images))
    static = qsupernet.extract_subnet(sub)  # raw FP32 weights, the subnet's BN statistics
    ops = dict(qsupernet.paired_ops(static))
    qnet = quantize_model(static, per_channel=True).eval()
    plain = dict(static.named_modules())
    counts = {"weights": 0, "learned_activations": 0, "calibrated_activations": 0}
    for name, m in qnet.named_modules():
        if not isinstance(m, (QConv2d, QLinear)):
            continue
        op = ops.get(name)
        if isinstance(op, ChannelProjection):  # fixed 0/1 weights: exact on any int8 grid
            m.weight_quantizer.initialise(m.weight)
            counts["weights"] += 1
            continue
        wq = getattr(op, "weight_quantizer", None)
        if wq is None or not bool(wq.initialized):
            raise ValueError(f"{name}: the supernet has no trained weight quantizer there; "
                             "is it the LSQ+ supernet?")
        w_raw, w_folded = plain[name].weight, m.weight
        # gamma / sigma per output channel, as folding applied it (read at each channel's
        # largest raw weight); the weight is then put on its grid exactly: the supernet's
        # integers (sign-flipped where gamma < 0) times the folded per-channel scale
        flat_raw, flat_fold = w_raw.flatten(1), w_folded.flatten(1)
        at = flat_raw.abs().argmax(1, keepdim=True)
        raw_at = flat_raw.gather(1, at).squeeze(1)
        factor = torch.where(raw_at != 0, flat_fold.gather(1, at).squeeze(1) /
                             raw_at.where(raw_at != 0, torch.ones_like(raw_at)),
                             torch.ones_like(raw_at))
        scale = wq.step * factor.abs().clamp_min(1e-12)
        shape = (-1, *([1] * (w_raw.dim() - 1)))
        ints = wq.integer_weight(w_raw).float() * factor.sign().where(factor != 0,
                                                                      torch.ones_like(factor)
                                                                      ).view(shape)
        m.weight.copy_(ints * scale.view(shape))
        m.weight_quantizer.scale.copy_(scale)
        m.weight_quantizer.initialized.fill_(True)
        counts["weights"] += 1
    for node in qnet.graph.nodes:
        if node.op != "call_module" or not isinstance(qnet.get_submodule(node.target),
                                                      ActQuantizer):
            continue
        aq = qnet.get_submodule(node.target)
        for user in node.users:
            op = ops.get(user.target) if user.op == "call_module" else None
            iq = getattr(op, "input_quantizer", None)
            if iq is not None and bool(iq.initialized):
                aq.scale.copy_(iq.scale)
                aq.offset.copy_(iq.offset)
                aq.initialized.fill_(True)
                counts["learned_activations"] += 1
                break
    missing = [q for _, q in act_quantizers(qnet) if not bool(q.initialized)]
    if missing:  # min-max on real images, in one pass (the learned ones keep their values)
        qnet.train()
        qnet(calibration)
        qnet.eval()
        counts["calibrated_activations"] = len(missing)
    return qnet, counts


def subnet_files(fp32: Supernet, lsq: Supernet | None, subnet: Subnet | str,
                 recal_images: torch.Tensor, calibration: np.ndarray, pre: Preprocessing,
                 routes: Sequence[str], out_dir: Path | str, name: str) -> list[Deployed]:
    """``subnet``'s deployed files, one pair per route, nothing retrained: the FP32
    supernet's weights (BN re-estimated on ``recal_images``) for the FP32 partner and the
    post-training routes, the LSQ+ supernet's learned weights and scales
    (:func:`inherited_int8_network`) for ``ort-lsq-qdq``. ``calibration``: the normalised
    training images post-training quantization calibrates on."""
    fp32.set_active_subnet(subnet)
    recalibrate_bn(fp32, recalibration_batches(recal_images))
    static32 = fp32.extract_subnet(subnet).eval()
    qnet = None
    if "ort-lsq-qdq" in routes:
        if lsq is None:
            raise ValueError("the learned-scale route needs the LSQ+ supernet")
        qnet, _ = inherited_int8_network(lsq, subnet, recal_images,
                                         torch.from_numpy(calibration[:64]))
    return [deploy(r, static32, qnet, calibration, pre, out_dir, name) for r in routes]
