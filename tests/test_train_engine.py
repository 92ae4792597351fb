"""The training engine: bit-exact stop + resume, schedule, parameter groups, evaluation, BN
re-calibration, and the bad inputs (unknown options, foreign or corrupt checkpoints)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spaceevo_lib.nn.bn import recalibrate_bn
from spaceevo_lib.quant import ActQuantizer
from conftest import needs_data
from spaceevo_lib.train import (CheckpointError, NonFiniteLoss, TrainConfig, Trainer, evaluate,
                                lr_at, param_groups)


class Tiny(nn.Module):
    """conv-BN-ReLU, an LSQ+ activation quantizer, dropout, linear: every kind of state."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.q = ActQuantizer()
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.q(torch.relu(self.bn(self.conv(x))))
        return self.fc(self.drop(x.mean((2, 3))))


def _loaders(seed=0, n=48):
    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)
    return {"train": DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True,
                                generator=torch.Generator().manual_seed(seed)),
            "valid": DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)}


def _run(tmp_path, name, cfg, stop_after=None):
    torch.manual_seed(0)
    model = Tiny()
    t = Trainer(model, cfg, _loaders(), arch="tiny", checkpoint=tmp_path / name, progress=False)
    t.fit(stop_after=stop_after)
    return t


def test_stop_and_resume_gives_bit_identical_weights(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05, warmup_epochs=1, valid_size=0)
    straight = _run(tmp_path, "a.pt", cfg)
    first = _run(tmp_path, "b.pt", cfg, stop_after=2)
    assert first.epoch == 2
    resumed = _run(tmp_path, "b.pt", cfg)  # a new process would do exactly this
    assert resumed.epoch == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in
                                                          resumed.history]


def test_schedule_warms_up_then_follows_a_cosine():
    cfg = TrainConfig(epochs=10, lr=0.1, min_lr=0.001, warmup_epochs=1)
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.001)
    assert lr_at(10, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, cfg) == pytest.approx(0.001 + 0.5 * 0.099)
    assert lr_at(100, 100, 10, cfg) == pytest.approx(0.001)


def test_decay_applies_to_conv_and_linear_weights_only():
    m = Tiny()
    groups = {g["name"]: g for g in param_groups(m, TrainConfig(weight_decay=1e-4,
                                                                quantizer_lr_scale=0.1))}
    ids = {n: {id(p) for p in g["params"]} for n, g in groups.items()}
    assert ids["decay"] == {id(m.conv.weight), id(m.fc.weight)}
    assert ids["no_decay"] == {id(m.bn.weight), id(m.bn.bias), id(m.fc.bias)}
    assert ids["quantizers"] == {id(m.q.scale), id(m.q.offset)}
    assert groups["quantizers"]["weight_decay"] == 0 and groups["quantizers"]["lr_scale"] == 0.1


def test_evaluate_counts_top1_top5_and_per_class():
    class Fixed(nn.Module):
        def forward(self, x):
            return x
    logits = torch.tensor([[5., 1, 0, 0, 0, 0], [0, 5., 1, 0, 0, 0], [0, 0, 1, 5., 0, 0]])
    y = torch.tensor([0, 2, 2])
    r = evaluate(Fixed(), [(logits, y)], n_classes=3)
    assert r["top1"] == pytest.approx(100 / 3) and r["top5"] == pytest.approx(100)
    assert r["per_class_top1"] == [100.0, 0.0, 0.0]


def test_bn_recalibration_restores_the_data_statistics():
    m = Tiny().eval()
    m.q.initialized.fill_(True)
    m.bn.running_mean.fill_(7.0)
    loader = [(torch.randn(16, 3, 8, 8) + 2.0, torch.zeros(16, dtype=torch.long))
              for _ in range(4)]
    recalibrate_bn(m, loader, batches=4)
    with torch.no_grad():
        conv = torch.cat([m.conv(x) for x, _ in loader])
    assert torch.allclose(m.bn.running_mean, conv.mean((0, 2, 3)), atol=1e-4)
    assert m.bn.momentum == 0.1 and not m.training and not m.bn.training  # as before


def test_unknown_options_and_bad_values_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown training option.*'lrr'.*known:"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ValueError, match="'optimizer' must be one of sgd, adamw"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="'warmup_epochs' must be in"):
        TrainConfig(epochs=2, warmup_epochs=3)


def test_a_non_finite_loss_stops_training_before_it_reaches_the_weights(tmp_path):
    """NaN in one step would spread to every weight and checkpoint (and later fail the
    quantizers' initialisation far from the cause): the engine stops at the step, says where,
    and saves nothing of the epoch."""
    calls = []

    def step(net, x, y, cfg):
        calls.append(1)
        loss = nn.functional.cross_entropy(net(x), y)
        return (loss * float("nan") if len(calls) == 3 else loss), None

    cfg = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, valid_size=0)
    torch.manual_seed(0)
    model = Tiny()
    t = Trainer(model, cfg, _loaders(), arch="tiny", checkpoint=tmp_path / "c.pt", step=step,
                progress=False)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, step 3, learning rate .*: the loss is nan"):
        t.fit()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "c.pt").exists()


def test_foreign_and_corrupt_checkpoints_are_refused(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, valid_size=0)
    _run(tmp_path, "c.pt", cfg)
    other = Trainer(Tiny(), cfg, _loaders(), arch="another-net", checkpoint=tmp_path / "c.pt",
                    progress=False)
    with pytest.raises(CheckpointError, match="architecture 'tiny', not 'another-net'"):
        other.fit()
    bad = tmp_path / "bad.pt"
    bad.write_bytes((tmp_path / "c.pt").read_bytes()[:200])
    t = Trainer(Tiny(), cfg, _loaders(), arch="tiny", checkpoint=bad, progress=False)
    with pytest.raises(CheckpointError, match="unreadable"):
        t.fit()
    wide = nn.Sequential(nn.Linear(3, 3))
    t = Trainer(wide, cfg, _loaders(), arch="tiny", checkpoint=tmp_path / "c.pt",
                progress=False)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        t.fit()


def test_training_batches_are_all_full_so_no_odd_batch_reaches_a_channels_last_backward():
    """oneDNN's channels-last backward (torch 2.14.1) aborted the process on an epoch's last
    partial batch (21 = 8,469 mod 128): training loaders drop it, and never empty an epoch."""
    from spaceevo_lib.train.engine import train_loader
    data = TensorDataset(torch.zeros(53, 3, 4, 4), torch.zeros(53, dtype=torch.long))
    sizes = [len(x) for x, _ in train_loader(data, 8, seed=0, drop_last=True)]
    assert sizes == [8] * 6
    assert [len(x) for x, _ in train_loader(data, 64, seed=0, drop_last=True)] == [53]


@needs_data
def test_the_chapters_training_loader_drops_the_partial_batch():
    from spaceevo_lib.train.data import load_training_data
    data = load_training_data(32, TrainConfig(batch_size=128, valid_size=1000))
    train = data.loaders["train"]
    assert train.drop_last and len(train) == len(train.dataset) // 128
