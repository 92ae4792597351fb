"""Two processes (gloo on CPU, as torchrun runs them) train like one process on the global
batch: the first step's averaged gradients equal a single-process step to 1e-6, and both ranks
end with identical weights."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from spaceevo_lib.train import TrainConfig, Trainer, train_loader

WORLD = 2


def _data(n=32):
    g = torch.Generator().manual_seed(5)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,),
                                                                             generator=g))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _frozen_bn_step(model, x, y, cfg):
    """Cross-entropy with BN on its running statistics (batch statistics are per process,
    so only with them frozen is a sharded step the same computation as the whole batch)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), logits


CFG = TrainConfig(epochs=2, batch_size=4, lr=0.05, warmup_epochs=0, grad_clip_norm=None,
                  label_smoothing=0.0, weight_decay=0.0, valid_size=0)


def _worker(r: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=r, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        data = _data()
        loader = train_loader(data, CFG.batch_size, seed=0)
        model = _model()
        t = Trainer(model, CFG, {"train": loader}, arch="tiny", step=_frozen_bn_step,
                    progress=False)
        # the first step by hand: this rank's shard, DDP averages the gradients
        loader.sampler.set_epoch(0)
        x, y = next(iter(loader))
        loss, _ = _frozen_bn_step(t.net, x, y, CFG)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        idx = list(iter(loader.sampler))[:CFG.batch_size]
        t.optimizer.zero_grad(set_to_none=True)
        t.fit()
        torch.save({"grads": grads, "idx": idx, "weights": model.state_dict(),
                    "n_batches": len(loader)}, f"{out}.{r}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_average_gradients_and_end_identical(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_worker, args=(f"file://{tmp_path}/pg", out), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(WORLD)]
    a, b = (x["weights"] for x in ranks)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ranks[0]["n_batches"] == len(_data()) // (WORLD * CFG.batch_size)
    # a single process on the union of both shards' first batches
    data = _data()
    idx = ranks[0]["idx"] + ranks[1]["idx"]
    assert len(set(idx)) == WORLD * CFG.batch_size  # the shards do not overlap
    model = _model()
    x = torch.stack([data[i][0] for i in idx])
    y = torch.tensor([int(data[i][1]) for i in idx])
    loss, _ = _frozen_bn_step(model, x, y, CFG)
    loss.backward()
    for g_single, g_ddp in zip((p.grad for p in model.parameters()), ranks[0]["grads"]):
        assert torch.allclose(g_single, g_ddp, atol=1e-6)
