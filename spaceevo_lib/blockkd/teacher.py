"""The teacher cut at the hyperspace's stage boundaries, and its features as a cached bank.

Block-wise distillation (paper-notes §3.1) trains each stage student on the teacher's input
and output of the same stage. :func:`stage_boundaries` turns any teacher built from the
block registry (a static subnet, FP32) or its LSQ+ network (the ``torch.fx`` graph of
:func:`spaceevo_lib.quant.quantize_model`, INT8) into one module that returns the seven
boundary tensors ``b0 .. b6``: ``b(i-1)`` is stage i's input, ``b(i)`` its output. The cut is
made on the traced graph, so the FP32 and the INT8 teacher are split by the same rule: the
input of the first layer of stage i+1 (of ``final_expand`` after stage6).

:class:`FeatureBank` runs the teacher once per resolution over a fixed set of images and keeps
every boundary: students then train on indices into the bank, with no teacher forward in
their loop. The teacher is in eval mode (frozen BN statistics: fixed targets; the reference
code leaves it in train mode, paper-notes §14 pitfall 4).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils.data import Subset

from ..data.imagenet import load_imagenet
from ..data.imagenette import load_imagenette, normalize_images, split_train
from ..nn.subnet import HEAD_CHILDREN
from ..quant.prepare import trace_network
from ..space.hyperspace import STAGE_NAMES, Hyperspace, as_hyperspace

SEARCHED = tuple(range(1, 7))  # stage1 .. stage6


class BlockKDError(ValueError):
    """A teacher, table or predictor that does not fit the block-wise distillation."""


def _first_call_with_prefix(gm: fx.GraphModule, prefix: str) -> fx.Node:
    for n in gm.graph.nodes:
        if n.op == "call_module" and n.target.startswith(prefix):
            return n
    raise BlockKDError(f"teacher graph has no layer under {prefix!r}: it must be built from "
                       "the block registry (children first_conv, stage0..stage6, head)")


def stage_boundaries(teacher: nn.Module) -> fx.GraphModule:
    """A module computing the teacher's seven stage-boundary tensors ``(b0, ..., b6)``.

    ``b0`` is stage0's output (stage1's input), ``b6`` stage6's output (the head's input).
    Works on the FP32 subnet and on its LSQ+ graph alike (the INT8 boundaries are the
    quantized tensors the next stage reads)."""
    gm = copy.deepcopy(trace_network(teacher))
    nexts = [f"stage{i + 1}." for i in range(6)] + ["final_expand."]
    cuts = [_first_call_with_prefix(gm, p).args[0] for p in nexts]
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = (tuple(cuts),)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval()


def expected_sides(hs: Hyperspace, resolution: int) -> list[int]:
    """Side of each boundary b0..b6 for an input of ``resolution`` under ``hs``'s strides."""
    side, out = resolution, []
    for name in STAGE_NAMES:
        side = -(-side // hs.stage(name).stride)
        if name != "first_conv":
            out.append(side)
    return out


@torch.no_grad()
def check_teacher(split: nn.Module, hyperspace: Hyperspace | str, resolution: int
                  ) -> list[tuple[int, int]]:
    """(channels, side) of every boundary; BlockKDError when the teacher's strides do not
    give the hyperspace's feature-map sizes."""
    hs = as_hyperspace(hyperspace)
    feats = split(torch.zeros(2, 3, resolution, resolution))
    got = [(int(f.shape[1]), int(f.shape[-1])) for f in feats]
    want = expected_sides(hs, resolution)
    if [s for _, s in got] != want:
        raise BlockKDError(
            f"teacher stage strides do not match hyperspace {hs.name!r}: at {resolution} px its "
            f"stage0..stage6 outputs are {[s for _, s in got]} px, the hyperspace's strides "
            f"give {want} px; distil from a teacher with the hyperspace's strides")
    return got


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images resized (bicubic) to the sampled resolution, as the supernet does."""
    if x.shape[-1] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bicubic",
                         align_corners=False)


@dataclass
class FeatureBank:
    """Every stage boundary of one teacher, per resolution, for a fixed set of images.

    ``features[r][j]`` is boundary ``b_j`` (N, C, H, W) at resolution r; images ``0..n_train-1``
    train the students, the rest are held out (BN re-calibration and NSR of the tables).
    ``variance[r][j]`` is the teacher's per-channel variance of ``b_j`` over the held-out
    images and positions: the NSR's normaliser.
    """

    resolutions: tuple[int, ...]
    n_train: int
    features: dict[int, list[torch.Tensor]]
    variance: dict[int, list[torch.Tensor]]

    @classmethod
    @torch.no_grad()
    def build(cls, split: nn.Module, images: torch.Tensor, n_train: int,
              resolutions: tuple[int, ...], batch: int = 256) -> FeatureBank:
        """Run ``split`` (from :func:`stage_boundaries`) over ``images`` (N, 3, R, R) at each
        resolution."""
        if not 0 < n_train < len(images):
            raise BlockKDError(f"need 0 < n_train < {len(images)} images; got {n_train}")
        split.eval()
        feats, var = {}, {}
        for r in resolutions:
            parts = [split(resize(images[i:i + batch], r)) for i in range(0, len(images), batch)]
            feats[r] = [torch.cat([p[j] for p in parts]).contiguous() for j in range(7)]
            var[r] = [f[n_train:].transpose(0, 1).flatten(1).var(1, unbiased=False)
                      for f in feats[r]]
        return cls(tuple(resolutions), n_train, feats, var)

    @property
    def n_images(self) -> int:
        return len(self.features[self.resolutions[0]][0])

    def pair(self, stage: int, resolution: int, index: torch.Tensor | slice
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(stage input, stage output) of ``stage`` (1..6) for the given images."""
        f = self.features[resolution]
        return f[stage - 1][index], f[stage][index]

    def channels(self, stage: int) -> tuple[int, int]:
        f = self.features[self.resolutions[0]]
        return int(f[stage - 1].shape[1]), int(f[stage].shape[1])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for fs in self.features.values() for t in fs)

    def memory_mb(self) -> float:
        return self.nbytes / 2 ** 20


def take_images(images, index) -> torch.Tensor:
    """Images ``index`` (a slice or indices) of a tensor or of a dataset (items: an image or an
    (image, label) pair) as one (B, 3, R, R) tensor."""
    if isinstance(images, torch.Tensor):
        return images[index]
    idx = (range(*index.indices(len(images))) if isinstance(index, slice)
           else [int(i) for i in index])
    items = [images[i] for i in idx]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])


class StreamedFeatureBank:
    """The :class:`FeatureBank` interface with the teacher run on the fly: for image sets
    whose features do not fit in memory (the ``paper`` profile: 50,000 ImageNet images at
    224 px would need about 6 MB of features per image). Each :meth:`pair` runs the teacher
    on the requested images, as the reference code does in every step; only the held-out
    variance is computed up front. ``images``: a (N, 3, R, R) tensor or a dataset whose items
    are an image tensor or an (image, label) pair."""

    def __init__(self, split: nn.Module, images, n_train: int, resolutions: tuple[int, ...],
                 batch: int = 256):
        if not 0 < n_train < len(images):
            raise BlockKDError(f"need 0 < n_train < {len(images)} images; got {n_train}")
        self.split, self.images, self.n_train = split.eval(), images, n_train
        self.resolutions = tuple(resolutions)
        n = len(images)
        self.variance: dict[int, list[torch.Tensor]] = {}
        for r in self.resolutions:  # per-channel variance over held-out images and positions
            sums = None  # per boundary: (count, sum, sum of squares) per channel
            for i in range(n_train, n, batch):
                flat = [f.transpose(0, 1).flatten(1).double()
                        for f in self._run(r, range(i, min(n, i + batch)))]
                part = [(f.shape[1], f.sum(1), f.pow(2).sum(1)) for f in flat]
                sums = part if sums is None else [
                    (c + pc, a + pa, q + pq) for (c, a, q), (pc, pa, pq) in zip(sums, part)]
            self.variance[r] = [(q / c - (a / c) ** 2).clamp_min(0).float() for c, a, q in sums]

    def __len__(self) -> int:
        return len(self.images)

    n_images = property(__len__)

    @torch.no_grad()
    def _run(self, resolution: int, index) -> list[torch.Tensor]:
        return list(self.split(resize(take_images(self.images, index), resolution)))

    def pair(self, stage: int, resolution: int, index: torch.Tensor | slice
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(stage input, stage output) of ``stage`` (1..6): one teacher forward."""
        f = self._run(resolution, index)
        return f[stage - 1], f[stage]

    def channels(self, stage: int) -> tuple[int, int]:
        f = self._run(self.resolutions[0], slice(0, 1))
        return int(f[stage - 1].shape[1]), int(f[stage].shape[1])

    def memory_mb(self) -> float:
        """Memory the bank itself holds (the images, when given as a tensor)."""
        t = self.images
        return t.numel() * t.element_size() / 2 ** 20 if isinstance(t, torch.Tensor) else 0.0


def feature_bank(split: nn.Module, images, n_train: int, resolutions: tuple[int, ...],
                 cache: bool = True):
    """The teacher's features as a cached :class:`FeatureBank` (``cache``) or a
    :class:`StreamedFeatureBank` computing them on the fly."""
    if cache:
        return FeatureBank.build(split, take_images(images, slice(0, len(images))), n_train,
                                 resolutions)
    return StreamedFeatureBank(split, images, n_train, resolutions)


def describe_banks(banks) -> str:
    """One sentence for the chapter: where the teachers' features live and what they cost."""
    mb = sum(b.memory_mb() for b in banks)
    if any(isinstance(b, StreamedFeatureBank) for b in banks):
        return ("the teachers run on the fly in every step (their features would not fit in "
                f"memory); only the images are held, {mb:.0f} MB")
    return ("the FP32 and the INT8 teacher's features are computed once per resolution and "
            f"kept in memory (the bank), {mb:.0f} MB")


def nsr(student: torch.Tensor, teacher: torch.Tensor, variance: torch.Tensor,
        eps: float = 1e-8) -> torch.Tensor:
    """Noise-to-signal ratio: the squared error per channel, averaged over images and
    positions, divided by the **teacher's** variance of that channel over the held-out images
    and positions, then averaged over channels.

    Why this normalisation: the reference divides by the *student's* variance over height and
    width of each image (paper-notes §3.3), which is undefined on 1x1 maps and rewards a student
    that inflates its own variance; the teacher's per-channel variance (DONNA's choice, over
    batch and space) is one fixed number per channel, so the NSR of two sub-stages is a
    comparison of their errors alone. 1.0 means "as far off as predicting the channel mean"."""
    if student.shape != teacher.shape:
        raise BlockKDError(f"student output {tuple(student.shape)} does not match the "
                           f"teacher's {tuple(teacher.shape)}")
    err = (student - teacher).pow(2).mean(dim=(0, 2, 3))
    return (err / (variance + eps)).mean()


def split_images(n: int, n_train: int, n_held: int, seed: int, valid_size: int = 0,
                 valid_seed: int = 0) -> np.ndarray:
    """Indices of a seeded choice of ``n_train + n_held`` distinct images (training then
    held-out) among ``n`` training-split images, never one of the ``valid_size`` images that
    the training chapters hold out for model selection (``split_train(n, valid_size,
    valid_seed)``): the supernet chapter compares starts on those, so students must not have
    seen them."""
    pool = split_train(n, valid_size, valid_seed)[0]
    if n_train + n_held > len(pool):
        raise BlockKDError(f"asked for {n_train} + {n_held} images; the training split has "
                           f"{len(pool)} outside the {valid_size} held-out images")
    return pool[np.random.default_rng(seed).permutation(len(pool))[:n_train + n_held]]


def teacher_images(resolution: int, n_train: int, n_held: int, seed: int,
                   dataset: str = "imagenette", valid_size: int = 0, valid_seed: int = 0):
    """Normalised training-split images (:func:`split_images`): ``n_train`` for the students,
    then ``n_held`` held out for BN re-calibration and NSR (the test split is never used here).
    Imagenette: one (N, 3, R, R) tensor; ImageNet (``paper``): a seeded subset of the training
    ImageFolder read with the evaluation transforms, loaded image by image when used."""
    if dataset == "imagenet":
        folder = load_imagenet("train", resolution, augment=False)
        idx = split_images(len(folder), n_train, n_held, seed, valid_size, valid_seed)
        return Subset(folder, [int(i) for i in idx])
    if dataset != "imagenette":
        raise ValueError(f"parameter 'dataset' must be imagenette or imagenet; got {dataset!r}")
    x = load_imagenette(resolution).x_train
    idx = split_images(len(x), n_train, n_held, seed, valid_size, valid_seed)
    return torch.from_numpy(normalize_images(x[idx]))


def split_agreement(teacher, split, x) -> float:
    """Largest |difference| between the teacher's logits and its head run on the split's last
    boundary: 0 means the cut loses nothing."""
    with torch.no_grad():
        h = split(x)[-1]
        for name in HEAD_CHILDREN:
            h = getattr(teacher, name)(h)
        return float((h - teacher(x)).abs().max())


def boundary_table(split, hyperspaces, resolutions) -> pd.DataFrame:
    """Channels and side of every boundary at every table resolution, checked against each
    hyperspace's strides (BlockKDError on a mismatch)."""
    rows = []
    for r in resolutions:
        got = None
        for hs in hyperspaces:
            got = check_teacher(split, hs, r)
        for j, (c, s) in enumerate(got):
            rows.append({"resolution": r, "boundary": f"b{j}", "after": f"stage{j}",
                         "channels": c, "side": s})
    return pd.DataFrame(rows).pivot_table(index=["boundary", "after", "channels"],
                                          columns="resolution", values="side").reset_index()
