"""The one training loop: optimiser groups, warm-up + cosine schedule, a pluggable step,
per-epoch metrics, checkpoints that resume bit-exact, evaluation (BN re-calibration is
:func:`spaceevo_lib.nn.bn.recalibrate_bn`).

Later chapters change only the *step* (:data:`Step`): plain cross-entropy here, distillation
and sandwich steps in the block-wise and supernet chapters. Under torch.distributed (torchrun,
gloo on CPU) the model is wrapped in DistributedDataParallel, each process reads its shard of
every epoch, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .._io import atomic_path
from ..quant.lsq import Quantizer
from .config import TrainConfig

CHECKPOINT_VERSION = 1

#: (model, inputs, labels, config) -> (loss to back-propagate, logits for the top-1 metric or
#: None, and optionally a dict of further per-batch metrics, averaged per epoch as
#: ``train_<name>``; e.g. the sandwich's per-pass losses)
Step = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig], tuple]
#: (model, loader) -> metrics of the held-out split, recorded per epoch as ``valid_<name>``
Evaluator = Callable[[nn.Module, object], dict]


def ce_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-smoothed cross-entropy on the model's logits."""
    logits = model(x)
    return nn.functional.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing), logits


class NonFiniteLoss(FloatingPointError):
    """A training step's loss is inf or NaN: stopping there keeps NaN out of the weights
    (and out of every checkpoint and quantizer initialised from them)."""


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable, of another architecture or of another format."""


# ---------------------------------------------------------------- optimiser and schedule
def _is_quantizer_param(module: nn.Module) -> bool:
    return isinstance(module, Quantizer)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Three groups: decayed conv/linear weights; undecayed BN parameters and biases (unless
    ``decay_norm_and_bias``); quantizer scales and offsets (never decayed, own lr scale)."""
    decay, no_decay, quant = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if _is_quantizer_param(module):
                quant.append(p)
            elif (p.dim() <= 1 or isinstance(module, nn.modules.batchnorm._NormBase)) \
                    and not cfg.decay_norm_and_bias:
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0, "name": "no_decay"},
              {"params": quant, "weight_decay": 0.0, "lr_scale": cfg.quantizer_lr_scale,
               "name": "quantizers"}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up from lr/100 to lr over ``warmup_steps``, then cosine to ``min_lr``."""
    if step < warmup_steps:
        return cfg.lr * (0.01 + 0.99 * step / warmup_steps)
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


# ---------------------------------------------------------------- RNG state
def rng_state(loader_generator: torch.Generator | None) -> dict:
    """Every random stream a step draws from, as tensors and ints (``weights_only``-safe)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
            "loader": loader_generator.get_state() if loader_generator is not None else None}


def set_rng_state(state: dict, loader_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if loader_generator is not None and state["loader"] is not None:
        loader_generator.set_state(state["loader"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python (dropout, augmentation, samplers drawing from them)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


# ---------------------------------------------------------------- evaluation and BN
@torch.no_grad()
def evaluate(model: nn.Module, loader, n_classes: int | None = None) -> dict:
    """Top-1, top-5 (when there are >= 5 classes), mean loss and per-class top-1 (%)."""
    was = model.training
    model.eval()
    device = model_device(model)
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    per_hit: dict[int, int] = {}
    per_n: dict[int, int] = {}
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit1 = top[:, 0] == y
        correct1 += int(hit1.sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += len(y)
        for c, h in zip(y.tolist(), hit1.tolist()):
            per_n[c] = per_n.get(c, 0) + 1
            per_hit[c] = per_hit.get(c, 0) + int(h)
    model.train(was)
    classes = range(n_classes) if n_classes else sorted(per_n)
    return {"top1": 100.0 * correct1 / max(1, total), "top5": 100.0 * correct5 / max(1, total),
            "loss": loss_sum / max(1, total), "images": total,
            "per_class_top1": [100.0 * per_hit.get(c, 0) / max(1, per_n.get(c, 0))
                               for c in classes]}


@torch.no_grad()
# ---------------------------------------------------------------- the loop
def process_group():
    d = torch.distributed
    return d if d.is_available() and d.is_initialized() else None


def rank() -> int:
    d = process_group()
    return d.get_rank() if d else 0


def default_device() -> torch.device:
    """Where a run trains: ``cuda:LOCAL_RANK`` when CUDA is there (one GPU per torchrun
    process), else the CPU. The one device setting the trainer passes along."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def average_gradients(model: nn.Module) -> None:
    """Average the gradients of ``model`` over the processes of a torchrun job (one collective
    on a flat buffer), for steps that run several forward passes before one backward, which
    DistributedDataParallel's reducer does not allow. Every process must have trained the same
    parameters in this step (the same subnets); that is checked."""
    d = process_group()
    if d is None or d.get_world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    count = torch.tensor([float(len(grads))], device=model_device(model))
    d.all_reduce(count, op=d.ReduceOp.MAX)
    if int(count.item()) != len(grads):
        raise RuntimeError("processes trained different parameters in one step: they must "
                           "sample the same subnets (the sampler draws from torch's seeded "
                           "stream)")
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    d.all_reduce(flat)
    flat /= d.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BN running statistics) on every process, as DistributedDataParallel
    keeps them, for runs that average gradients themselves (:func:`average_gradients`)."""
    d = process_group()
    if d is None or d.get_world_size() == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for b in model.buffers():
        by_dtype.setdefault(b.dtype, []).append(b)
    for bufs in by_dtype.values():  # one collective per dtype
        flat = torch.cat([b.reshape(-1) for b in bufs])
        d.broadcast(flat, src=0)
        offset = 0
        for b in bufs:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def train_loader(dataset, batch_size: int, seed: int, num_workers: int = 0,
                 drop_last: bool = False):
    """The training DataLoader: a seeded shuffle in one process; under torch.distributed a
    DistributedSampler (shuffled with seed + epoch, one shard per process, ``batch_size`` per
    process), so that every process sees a different part of each epoch.

    ``drop_last`` drops each epoch's last partial batch, as timm and once-for-all do: with
    torch 2.14.1's oneDNN, a channels-last backward on some batch sizes (13 and 21 images, the
    rest of 8,469 / 128, seen on an Intel Xeon) corrupts the heap and aborts the process."""
    drop_last = drop_last and len(dataset) > batch_size  # never an epoch of no steps
    d = process_group()
    if d is not None and d.get_world_size() > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=num_workers, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), num_workers=num_workers)


@dataclass
class Trainer:
    """Trains ``model`` on ``loaders['train']``, selects on ``loaders['valid']`` (if given).

    ``arch``: a string that names the architecture (e.g. a subnet encoding); a checkpoint of
    another architecture is refused. ``checkpoint``: where the state is written after every
    epoch (atomically, rank 0) and read back on the next start: a stopped run continues where
    it stopped and ends bit-identical to an uninterrupted one.
    """

    model: nn.Module
    cfg: TrainConfig
    loaders: dict
    arch: str
    step: Step = ce_step
    checkpoint: Path | None = None
    evaluator: Evaluator | None = None  # default: top-1 and loss (:func:`evaluate`)
    progress: bool = True
    history: list = field(default_factory=list)
    device: torch.device | str | None = None  # default: :func:`default_device`
    #: False for steps with several forward passes per backward (the supernet's sandwich):
    #: under torchrun the gradients are then averaged by :func:`average_gradients` instead of
    #: DistributedDataParallel
    ddp: bool = True

    def __post_init__(self) -> None:
        self.device = torch.device(self.device) if self.device is not None else default_device()
        self.model.to(self.device)
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        d = process_group()
        self._average = False
        if d is not None and d.get_world_size() > 1:
            if self.ddp:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.net = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=ids, find_unused_parameters=True)
            else:
                self._average = True
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.steps_per_epoch = len(self.loaders["train"])
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.warmup_steps = round(self.cfg.warmup_epochs * self.steps_per_epoch)
        self.epoch = 0
        self.global_step = 0

    @property
    def _generator(self) -> torch.Generator | None:
        return getattr(self.loaders["train"], "generator", None)

    # --- checkpoints
    def state(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "arch": self.arch, "config": self.cfg.as_dict(),
                "epoch": self.epoch, "global_step": self.global_step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self._generator), "history": list(self.history)}

    def save(self, path: Path) -> None:
        if rank() != 0:
            return
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, self.arch)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {path} does not fit this model: "
                                  f"{str(e).splitlines()[0]}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.history = list(state["history"])
        set_rng_state(state["rng"], self._generator)

    # --- training
    def _set_lr(self) -> float:
        lr = lr_at(self.global_step, self.total_steps, self.warmup_steps, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def train_epoch(self) -> dict:
        self.net.train()
        loader = self.loaders["train"]
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        loss_sum, hits, seen, t0 = 0.0, 0, 0, time.perf_counter()
        extra_sum: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", leave=False,
                   disable=not self.progress or rank() != 0)
        lr = self.cfg.lr
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = self._set_lr()
            try:
                loss, logits, *more = self.step(self.net, x, y, self.cfg)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise NonFiniteLoss(f"the loss is {loss_value}")
            except NonFiniteLoss as e:
                raise NonFiniteLoss(
                    f"epoch {self.epoch + 1}, step {self.global_step + 1}, learning rate "
                    f"{lr:.3g}: {e}; nothing of this epoch was saved (a lower learning rate "
                    "or a gradient clip may help)") from None
            for k, v in (more[0] if more else {}).items():
                extra_sum[k] = extra_sum.get(k, 0.0) + float(v) * len(y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self._average:
                average_gradients(self.model)
            if self.cfg.grad_clip_value is not None:
                nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.grad_clip_value)
            if self.cfg.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
            self.optimizer.step()
            if self._average:
                broadcast_buffers(self.model)
            self.global_step += 1
            loss_sum += loss_value * len(y)
            if logits is not None:
                hits += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.3g}")
        sec = time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "lr": lr, "train_loss": loss_sum / max(1, seen),
               "seconds": sec, "images_per_s": seen / max(sec, 1e-9)}
        if logits is not None:
            row["train_top1"] = 100.0 * hits / max(1, seen)
        row.update({f"train_{k}": v / max(1, seen) for k, v in extra_sum.items()})
        return row

    def fit(self, stop_after: int | None = None):
        """Train to ``cfg.epochs`` (or stop after epoch ``stop_after``: a deliberate
        interruption for tests and budgets); returns the per-epoch metrics table."""
        if self.checkpoint is not None and Path(self.checkpoint).exists():
            self.load(Path(self.checkpoint))
        elif self.epoch == 0:
            seed_everything(self.cfg.seed)  # a fresh run; a resumed one restored its streams
        while self.epoch < self.cfg.epochs:
            row = self.train_epoch()
            if "valid" in self.loaders:
                if self.evaluator is None:
                    v = evaluate(self.model, self.loaders["valid"])
                    row.update(valid_top1=v["top1"], valid_loss=v["loss"])
                else:
                    row.update({f"valid_{k}": float(v) for k, v in
                                self.evaluator(self.model, self.loaders["valid"]).items()})
            self.history.append(row)
            self.epoch += 1
            if self.checkpoint is not None:
                self.save(Path(self.checkpoint))
            if stop_after is not None and self.epoch >= stop_after:
                break
        return pd.DataFrame(self.history)


def load_checkpoint(path: Path | str, arch: str | None = None) -> dict:
    """A checkpoint's state (``weights_only``), refused with one clear message when it is
    unreadable, of another format version or of another architecture."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding code objects
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'}); delete "
                              "it to start over") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a version-{CHECKPOINT_VERSION} "
                              "training checkpoint of this library")
    if arch is not None and state["arch"] != arch:
        raise CheckpointError(f"checkpoint {path} is of architecture {state['arch']!r}, not "
                              f"{arch!r}; use another checkpoint path for this network")
    return state
