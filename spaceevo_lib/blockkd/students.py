"""Elastic stage students, trained by block-wise distillation with the sandwich rule.

For each (stage i, block type b) of a hyperspace, one :class:`StageStudent` (paper-notes
§3.2): the stage's maximum depth of elastic blocks of type b over the stage's **full** width
list, its first block accepting every width of the previous stage, between a 1x1 ``in_proj``
(teacher width -> the sampled input width) and a 1x1 ``out_proj`` (-> teacher width). It is
trained on the teacher's input and output of stage i (a :class:`~.teacher.FeatureBank`) with
the NSR loss, first in FP32, then with LSQ+ INT8 (:func:`spaceevo_lib.supernet.quantized.
quantize_elastic`) against the INT8 teacher, by the study's one training loop
(:class:`~spaceevo_lib.train.engine.Trainer`) with a sandwich step
(:func:`spaceevo_lib.train.sandwich.sandwich_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..nn.bn import recalibrate_bn
from ..space.hyperspace import STAGE_NAMES, as_hyperspace
from ..supernet.elastic import DynamicConv2d, elastic_block
from ..supernet.network import ElasticStage
from ..supernet.quantized import initialise_quantizers as init_elastic_quantizers
from ..train.engine import Trainer, train_loader
from ..train.sandwich import sandwich_loss, step_rng
from .teacher import BlockKDError, FeatureBank, nsr


@dataclass(frozen=True)
class SubStage:
    """One setting of a stage student: input width, per-block (k, w, e), input resolution."""

    cin: int
    blocks: tuple[tuple[int, int, float | None], ...]
    resolution: int

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def arch(self) -> str:
        """The published tables' ``k#w#e_k#w#e...`` string (e 0 for blocks without one)."""
        return "_".join(f"{k}#{w}#{_fmt(e)}" for k, w, e in self.blocks)


def _fmt(e: float | None) -> str:
    if e is None:
        return "0"
    return str(int(e)) if float(e).is_integer() else str(e)


def parse_arch(arch: str) -> tuple[tuple[int, int, float | None], ...]:
    """The blocks of a tables' ``k#w#e_...`` string (the inverse of :attr:`SubStage.arch`)."""
    out = []
    for part in arch.split("_"):
        k, w, e = part.split("#")
        out.append((int(k), int(w), None if float(e) == 0 else float(e)))
    return tuple(out)


class StageStudent(nn.Module):
    """The elastic stage ``stage`` (1..6) of block ``block`` in ``hyperspace``, projected from
    and to the teacher's widths. ``resolutions``: the network input sizes it is trained and
    tabulated at (the bank's)."""

    def __init__(self, hyperspace: str, stage: int, block: int, teacher_cin: int,
                 teacher_cout: int, resolutions: Sequence[int]):
        super().__init__()
        hs = as_hyperspace(hyperspace)
        if not 1 <= stage <= 6:
            raise BlockKDError(f"stage must be 1..6; got {stage}")
        if not 0 <= block < len(hs.blocks):
            raise BlockKDError(f"{hs.name}: block must be 0..{len(hs.blocks) - 1}; got {block}")
        self.hyperspace, self.stage_index, self.block_index = hs.name, stage, block
        name = STAGE_NAMES[STAGE_NAMES.index("stage0") + stage]
        prev = hs.stage(STAGE_NAMES[STAGE_NAMES.index(name) - 1])
        st, spec = hs.stage(name), hs.block(block)
        self.spec, self.stage_spec = spec, st
        self.cins, self.widths = tuple(prev.widths), tuple(st.widths)
        self.resolutions = tuple(sorted(resolutions))
        self.in_proj = DynamicConv2d(teacher_cin, max(self.cins), 1)
        blocks, cins = [], self.cins
        for i in range(max(st.depths)):
            # (a width change inside the stage through the parameter-free channel projection,
            # as in the supernet: elastic.ChannelProjection says why)
            blocks.append(elastic_block(spec, cins, self.widths, st.stride if i == 0 else 1,
                                        fixed_shortcut=i > 0))
            cins = self.widths
        self.stage = ElasticStage(name, blocks, st.depths)
        self.out_proj = DynamicConv2d(max(self.widths), teacher_cout, 1, bias=True)
        self.teacher_cout = teacher_cout
        self._active = self.sample_max()

    @property
    def name(self) -> str:
        return f"{self.hyperspace} stage{self.stage_index} {self.spec.code}"

    # --- settings

    def set_active(self, sub: SubStage) -> SubStage:
        if sub.cin not in self.cins or sub.depth not in self.stage_spec.depths \
                or sub.resolution not in self.resolutions:
            raise BlockKDError(f"{self.name}: setting {sub} outside cin {self.cins}, depths "
                               f"{self.stage_spec.depths}, resolutions {self.resolutions}")
        self.stage.active_depth = sub.depth
        for blk, (k, w, e) in zip(self.stage.blocks, sub.blocks):
            blk.set_active(k, w, e)
        self._active = sub
        return sub

    @property
    def active(self) -> SubStage:
        return self._active

    def sample_max(self) -> SubStage:
        s = self.spec
        return self.set_active(SubStage(max(self.cins), tuple(
            (max(s.kernels), max(self.widths), s.expand_choices[-1])
            for _ in range(max(self.stage_spec.depths))), max(self.resolutions)))

    def sample_min(self) -> SubStage:
        s = self.spec
        return self.set_active(SubStage(min(self.cins), tuple(
            (min(s.kernels), min(self.widths), s.expand_choices[0])
            for _ in range(min(self.stage_spec.depths))), min(self.resolutions)))

    def sample_random(self, rng: np.random.Generator, window: int | None = None,
                      resolution: int | None = None) -> SubStage:
        """A uniformly random setting: input width, depth, then k, w, e per block; widths from
        ``window`` of the stage (the tables) or the full list (training)."""
        s = self.spec
        widths = self.widths if window is None else self.stage_spec.window(window)

        def pick(options):
            return options[int(rng.integers(len(options)))]
        cin = pick(self.cins)
        depth = pick(self.stage_spec.depths)
        blocks = tuple((pick(s.kernels), pick(widths), pick(s.expand_choices))
                       for _ in range(depth))
        r = pick(self.resolutions) if resolution is None else resolution
        return self.set_active(SubStage(cin, blocks, r))

    @torch.no_grad()
    def start_at_teacher_mean(self, bank: FeatureBank) -> "StageStudent":
        """Zero ``out_proj``'s weight and set its bias to the teacher's per-channel mean of the
        stage output (training images, largest resolution): every setting starts as the best
        constant prediction (NSR about 1) and learns the rest, like a zero-initialised
        residual branch. From a random projection (NSR well above 1) the held-out NSR after
        the same training was worse in every stage tried (bench notes in chapter 07)."""
        y = bank.pair(self.stage_index, max(self.resolutions), slice(0, bank.n_train))[1]
        self.out_proj.weight.zero_()
        self.out_proj.bias.copy_(y.mean((0, 2, 3)))
        return self

    # --- forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, teacher_cin, H, W)
        h = self.in_proj(x, self._active.cin)
        h = self.stage(h)
        return self.out_proj(h, self.teacher_cout)


# ----------------------------------------------------------------------------- training


def initialise_quantizers(student: StageStudent, bank: FeatureBank, seed: int = 0,
                          images: int = 16, max_settings: int = 32) -> int:
    """Min-max initialise a quantized student's LSQ+ quantizers on ``images`` of the bank's
    training images (:func:`spaceevo_lib.supernet.quantized.initialise_quantizers`); returns
    how many quantizers no setting reached (0 in practice)."""
    return init_elastic_quantizers(
        student, lambda sub: bank.pair(student.stage_index, sub.resolution,
                                       slice(0, images))[0], seed, max_settings)


def kd_step(bank: FeatureBank, stage: int, n_random: int = 2):
    """The training step: one sandwich over the batch's image indices, each pass distilled
    from the teacher at the pass's resolution (AlphaNet's in-place distillation from the
    teacher, as the reference README runs it)."""
    def step(net, idx, _y, _cfg):
        rng = step_rng()  # (checkpointed with the trainer: bit-exact resume)

        def pass_loss(model, _kind, sub: SubStage):
            x, y = bank.pair(stage, sub.resolution, idx)
            return nsr(model(x), y, bank.variance[sub.resolution][stage])
        loss, parts = sandwich_loss(net, rng, pass_loss, n_random)
        return loss, None, {f"nsr_{k}": v for k, v in parts.items()}
    return step


@torch.no_grad()
def held_out_nsr(student: StageStudent, bank: FeatureBank, sub: SubStage,
                 recal_images: int, eval_images: int) -> float:
    """NSR of one setting on held-out images after BN re-calibration on ``recal_images``
    others (paper-notes §3.7: each sub-stage's BN statistics are re-estimated first)."""
    student.set_active(sub)
    n0 = bank.n_train
    x, _ = bank.pair(student.stage_index, sub.resolution, slice(n0, n0 + recal_images))
    if student.training:
        student.eval()
    recalibrate_bn(student, [x])  # (leaves it in eval mode)
    lo = n0 + recal_images
    xe, ye = bank.pair(student.stage_index, sub.resolution, slice(lo, lo + eval_images))
    return float(nsr(student(xe), ye, bank.variance[sub.resolution][student.stage_index]))


def kd_evaluator(bank: FeatureBank, recal_images: int, eval_images: int):
    """Per-epoch held-out NSR of the max and min settings (for the training curves)."""
    def evaluate(student, _loader):
        out = {}
        for kind in ("max", "min"):
            sub = getattr(student, f"sample_{kind}")()
            out[f"nsr_{kind}"] = held_out_nsr(student, bank, sub, recal_images, eval_images)
        student.train()
        return out
    return evaluate


def train_student(student: StageStudent, bank: FeatureBank, cfg, checkpoint: Path,
                  recal_images: int, eval_images: int, n_random: int = 2, phase: str = "fp32",
                  progress: bool = False, stop_after: int | None = None):
    """Train one student (resuming from ``checkpoint``; ``stop_after``: stop after that
    epoch, a deliberate interruption); returns the per-epoch metrics."""
    idx = torch.arange(bank.n_train)
    data = TensorDataset(idx, torch.zeros_like(idx))
    loaders = {"train": train_loader(data, cfg.batch_size, cfg.seed), "valid": [None]}
    arch = (f"blockkd/{student.hyperspace}/stage{student.stage_index}/{student.block_index}"
            f"/{phase}")
    trainer = Trainer(student, cfg, loaders, arch=arch,
                      step=kd_step(bank, student.stage_index, n_random),
                      checkpoint=checkpoint, progress=progress,
                      evaluator=kd_evaluator(bank, recal_images, eval_images))
    return trainer.fit(stop_after).assign(phase=phase)
