"""The training scale: which copy of the paper's hyperspaces the training chapters can afford.

The paper's INT8 story is that networks of its evolved spaces gain ~2-3x from INT8 on the VNNI
CPU while MobileNetV3 gains ~1.1x. A training scale must keep that story *and* be trainable on
a 2-core machine: 32-px Imagenette, widths cut, maybe a stride removed. :data:`CANDIDATES` are
the copies the predictor chapter compares; for each, the min and max subnet of the published
VNNI space (mapped to that scale) and torchvision's MobileNetV3-Small (same stem rule, same
resolution) are timed on ``ort-vnni`` beside their 224-px originals, and the max subnet's
training speed is measured. :func:`scale_verdicts` applies the rule written before the
numbers exist; the frozen choice (``onnxw-train`` in ``configs/hyperspaces.yaml``) is shown
beside what the rule picks on this host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from ..latency.jobs import job_builder

#: The rule (issue "latency ground truth"): the story is kept when the max subnet gains at
#: least this much from INT8 on ort-vnni ...
STORY_MAX_SPEEDUP = 1.5
#: ... while MobileNetV3-Small gains at most this much.
STORY_MNV3_SPEEDUP = 1.1
#: Trainable: the max subnet trains at least this many 32-px images per second on 2 cores
#: (an Imagenette epoch of ~9,500 images in about 3 minutes for the heaviest subnet).
MIN_TRAIN_IMAGES_PER_S = 50.0


@dataclass(frozen=True)
class ScaleCandidate:
    """A training-scale copy of a paper hyperspace (arguments of ``scaled_hyperspace``)."""

    label: str
    width_divisor: float
    max_resolution: int
    stem_stride: int

    def hyperspace(self, base: str = "onnxw"):
        """The candidate's hyperspace, registered (so that its encodings decode) under
        ``<base>-<label>``; ``train`` is exactly the registered ``<base>-train``."""
        from ..space.hyperspace import register_hyperspace, scaled_hyperspace
        strides = {} if self.stem_stride == 2 else {"first_conv": self.stem_stride}
        hs = scaled_hyperspace(base, f"{base}-{self.label}", width_divisor=self.width_divisor,
                               max_resolution=self.max_resolution, n_classes=10,
                               strides=strides)
        return register_hyperspace(hs, overwrite=True)


#: Candidates compared; ``train`` is the frozen one (registered as onnxw-train/mobilew-train).
CANDIDATES = (ScaleCandidate("w4-s2", 4, 32, 2), ScaleCandidate("w2-s2", 2, 32, 2),
              ScaleCandidate("train", 2, 32, 1))
FROZEN = "train"


@job_builder("scale-network")
def build_scale_network(base: str, label: str, which: str, width_divisor: float = 0,
                        max_resolution: int = 224, stem_stride: int = 2):
    """The network ``which`` (``min``, ``max`` or ``mobilenet_v3_small``) of a candidate scale
    (``label`` ``paper`` = the paper's own 224-px hyperspace): a picklable job builder."""
    from ..nn.models import create_model
    from ..space.build import build_subnet
    from ..space.encoding import SpaceChoice, max_subnet, min_subnet, published_spaces
    from ..space.hyperspace import get_hyperspace
    if which == "mobilenet_v3_small":
        return create_model(which, n_classes=1000 if label == "paper" else 10,
                            stem_stride=stem_stride)
    if label == "paper":
        hs = get_hyperspace(base)
    else:
        hs = ScaleCandidate(label, width_divisor, max_resolution, stem_stride).hyperspace(base)
    pub = published_spaces()["spaceevo@vnni" if base == "onnxw" else "spaceevo@pixel4"]
    sp = SpaceChoice(hs.name, pub.blocks, pub.windows)
    return build_subnet(sp, (min_subnet if which == "min" else max_subnet)(hs, sp))


def scale_jobs(device: str, protocol, options: dict | None = None, base: str = "onnxw"):
    """Timing jobs: per candidate (and the paper's 224 px) the min and max subnet of the
    published space and MobileNetV3-Small."""
    from ..latency.jobs import Job
    from ..space.encoding import SpaceChoice, min_subnet, published_spaces
    from ..space.hyperspace import get_hyperspace
    pub = published_spaces()["spaceevo@vnni" if base == "onnxw" else "spaceevo@pixel4"]
    rows = [("paper", 0, 224, 2)] + [(c.label, c.width_divisor, c.max_resolution, c.stem_stride)
                                     for c in CANDIDATES]
    jobs = []
    for label, div, res, stem in rows:
        hs = get_hyperspace(base) if label == "paper" else \
            ScaleCandidate(label, div, res, stem).hyperspace(base)
        sp = SpaceChoice(hs.name, pub.blocks, pub.windows)
        for which in ("min", "max", "mobilenet_v3_small"):
            r = min_subnet(hs, sp).resolution if which == "min" else hs.resolutions[-1]
            spec = {"base": base, "label": label, "which": which, "width_divisor": div,
                    "max_resolution": res, "stem_stride": stem}
            jobs.append(Job.make(device, build_scale_network, spec, (1, 3, r, r),
                                 {"kind": "scale", "scale": label, "network": which,
                                  "resolution": r}, options, protocol))
    return jobs


def training_speed(module, resolution: int, batch: int = 64, steps: int = 5,
                   threads: int = 2) -> float:
    """Training images per second of ``module`` (SGD step on random data, ``threads`` torch
    threads): the cost that decides whether a scale is trainable here."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = module.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, resolution, resolution, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        return batch * steps / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def scale_table(measured: pd.DataFrame, steps: int = 5) -> pd.DataFrame:
    """One row per scale: INT8 speedups (min subnet, max subnet, MobileNetV3-Small), INT8 ms,
    MFLOPs of the max subnet and its training images/s (measured here, after the timing)."""
    from ..space.flops import profile
    rows = []
    for label, g in measured.groupby("scale", sort=False):
        t = g.set_index("network")
        row = {"scale": label}
        for which in ("min", "max", "mobilenet_v3_small"):
            row[f"{which}_speedup"] = float(t.loc[which, "fp32_min_ms"] / t.loc[which, "int8_min_ms"])
            row[f"{which}_int8_ms"] = float(t.loc[which, "int8_min_ms"])
        c = next((c for c in CANDIDATES if c.label == label), None)
        spec = ({"width_divisor": c.width_divisor, "max_resolution": c.max_resolution,
                 "stem_stride": c.stem_stride} if c else {})
        net = build_scale_network("onnxw", label, "max", **spec)
        r = int(t.loc["max", "resolution"])
        row["max_mflops"] = profile(net, (1, 3, r, r))["mflops_all"]
        row["max_train_images_per_s"] = (float("nan") if label == "paper"
                                         else training_speed(net, r, steps=steps))
        row["resolution"] = r
        rows.append(row)
    return scale_verdicts(pd.DataFrame(rows))


def scale_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``story_kept`` (max >= STORY_MAX_SPEEDUP and MobileNetV3-Small <=
    STORY_MNV3_SPEEDUP), ``trainable`` (max subnet >= MIN_TRAIN_IMAGES_PER_S) and ``pick``: among
    kept and trainable candidates the one with the most MFLOPs in its max subnet (furthest from
    per-call overhead); if none keeps the story, the trainable one closest to it."""
    t = table.copy()
    t["story_kept"] = (t.max_speedup >= STORY_MAX_SPEEDUP) & (
        t.mobilenet_v3_small_speedup <= STORY_MNV3_SPEEDUP)
    t["trainable"] = t.max_train_images_per_s >= MIN_TRAIN_IMAGES_PER_S
    cand = t[(t.scale != "paper") & t.trainable]
    ok = cand[cand.story_kept]
    if len(ok):
        pick = ok.sort_values("max_mflops").scale.iloc[-1]
    elif len(cand):
        gap = (STORY_MAX_SPEEDUP - cand.max_speedup).clip(lower=0) + (
            cand.mobilenet_v3_small_speedup - STORY_MNV3_SPEEDUP).clip(lower=0)
        pick = cand.scale.loc[gap.idxmin()]
    else:
        pick = None
    t["pick"] = t.scale == pick
    t["frozen"] = t.scale == FROZEN
    return t
