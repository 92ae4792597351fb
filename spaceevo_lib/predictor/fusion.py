"""Which operators does each runtime fuse? Decided by timing, as nn-Meter's fusion-rule tests do.

For a 3x3 depthwise convolution at a fixed shape (the convolution every mobile block puts an
activation after, and cheap enough that an activation's cost is visible beside it) we time the
convolution alone, with batch norm, and with batch norm plus each activation of the
hyperspaces, and each activation alone at the convolution's output shape. If adding an
operator to the convolution costs much less than running it alone, the runtime executes the
pair as one kernel (fused); if it costs about as much, the operator is a kernel of its own
and a predictor must count it. Verdict rule:
``fused`` when ``t(conv+op) - t(conv) < 0.5 * t(op alone)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from torch import nn

from ..latency.jobs import Job, job_builder, run_jobs
from ..latency.protocol import Protocol
from ..nn.blocks import act_layer

ACTIVATIONS = ("relu", "relu6", "hswish", "swish")
PROBES = ("conv", "conv+bn", *(f"conv+bn+{a}" for a in ACTIVATIONS), *ACTIVATIONS)


@job_builder("fusion-probe")
def build_probe(probe: str, channels: int, k: int = 3):
    """The module of one probe: ``conv`` (depthwise k x k), ``conv+bn``, ``conv+bn+<act>`` or
    ``<act>`` alone."""
    if probe in ACTIVATIONS:
        return nn.Sequential(act_layer(probe))
    parts = probe.split("+")
    if parts[0] != "conv" or probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; known: {', '.join(PROBES)}")
    layers = [nn.Conv2d(channels, channels, k, 1, k // 2, groups=channels,
                        bias="bn" not in parts)]
    if "bn" in parts:
        layers.append(nn.BatchNorm2d(channels))
    if len(parts) == 3:
        layers.append(act_layer(parts[2]))
    return nn.Sequential(*layers)


def fusion_jobs(device: str, channels: int, hw: int, protocol, options: dict | None = None):
    return [Job.make(device, build_probe, {"probe": p, "channels": channels},
                     (1, channels, hw, hw), {"kind": "fusion", "probe": p}, options, protocol)
            for p in PROBES]


def fusion_table(measured: pd.DataFrame, precisions: Sequence[str] = ("fp32", "int8")
                 ) -> pd.DataFrame:
    """Per device, precision and operator: its cost alone, its extra cost after conv (+BN),
    the share saved, and the verdict. BN is judged against the bare convolution."""
    rows = []
    for device, g in measured.groupby("device", sort=False):
        t = g.set_index("probe")
        for p in precisions:
            col = f"{p}_median_ms"
            conv, conv_bn = t.loc["conv", col], t.loc["conv+bn", col]
            rows.append({"device": device, "precision": p, "operator": "bn",
                         "alone_ms": np.nan, "conv_ms": conv, "extra_ms": conv_bn - conv,
                         "saved_pct": np.nan,
                         "verdict": "folded" if conv_bn - conv < 0.1 * conv else "separate"})
            for a in ACTIVATIONS:
                alone, extra = t.loc[a, col], t.loc[f"conv+bn+{a}", col] - conv_bn
                rows.append({"device": device, "precision": p, "operator": a,
                             "alone_ms": alone, "conv_ms": conv_bn, "extra_ms": extra,
                             "saved_pct": 100 * (1 - extra / alone),
                             "verdict": "fused" if extra < 0.5 * alone else "separate kernel"})
    return pd.DataFrame(rows)


def measure_fusion(devices, run, images: np.ndarray, protocol: Protocol = Protocol(),
                   channels: int = 64, hw: int = 56, workers: int = 0, seed: int = 0,
                   device_options: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Time the fusion probes (:mod:`.fusion`) on every device; returns the verdict table."""
    jobs = [j for d in devices
            for j in fusion_jobs(d, channels, hw, protocol, (device_options or {}).get(d))]
    measured = run_jobs(jobs, images, run, "fusion", protocol, workers, seed, progress=progress)
    return fusion_table(measured)
