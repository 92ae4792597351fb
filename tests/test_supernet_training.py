"""Supernet training on the one engine: AlphaNet's loss, the sandwich step, LSQ+, resume,
subnet evaluation, the warm start from block-wise students, torchrun, bad inputs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spaceevo_lib.space import EncodingError, SpaceChoice
from spaceevo_lib.supernet import Supernet
from spaceevo_lib.nn import recalibrate_bn
from spaceevo_lib.supernet.evaluation import evaluate_subnets, subnet_network
from spaceevo_lib.supernet.training import (load_supernet, quantize_supernet, supernet_step,
                                            train_supernet)
from spaceevo_lib.supernet.warmstart import load_students, warm_start
from spaceevo_lib.train.config import TrainConfig
from spaceevo_lib.train.distill import adaptive_alpha_loss, alpha_divergence
from spaceevo_lib.train.engine import CheckpointError, NonFiniteLoss, Trainer, train_loader
from spaceevo_lib.train.sandwich import sandwich_loss

SPACE = "onnxw-train-212121-000000"  # small windows: a second per sandwich step


# ----------------------------------------------------------------------------- the loss


def test_alpha_divergence_on_a_hand_computed_example():
    """p = (0.8, 0.2), q = (0.5, 0.5): D_-1 = sum q (w^-1 - 1) / 2 = 0.28125 with w = p/q =
    (1.6, 0.4); D_+1 = KL(p || q) = 0.8 ln 1.6 + 0.2 ln 0.4 = 0.19274. The adaptive loss
    takes the larger, alpha = -1, and its surrogate's gradient is D_-1's."""
    p = torch.tensor([[0.8, 0.2]])
    z = torch.zeros(1, 2, requires_grad=True)
    d_lo, _ = alpha_divergence(z, p.log(), -1.0)
    d_hi, _ = alpha_divergence(z, p.log(), 1.0)
    assert float(d_lo) == pytest.approx(0.28125)
    assert float(d_hi) == pytest.approx(0.8 * math.log(1.6) + 0.2 * math.log(0.4))
    loss = adaptive_alpha_loss(z, p.log())
    loss.backward()

    z2 = torch.zeros(1, 2, requires_grad=True)  # the exact divergence, differentiated
    q = F.softmax(z2, 1)
    exact = (q * ((p / q).pow(-1.0) - 1.0) / 2.0).sum()
    exact.backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6) and z.grad.abs().sum() > 0


def test_the_divergence_is_zero_when_the_student_matches_the_teacher():
    logits = torch.randn(4, 10)
    for alpha in (-1.0, 0.0, 0.5, 1.0):
        d, _ = alpha_divergence(logits, F.log_softmax(logits, 1), alpha)
        assert torch.allclose(d, torch.zeros(4), atol=1e-6)


def test_the_loss_stays_finite_where_both_softmaxes_underflow_to_zero():
    """Logit gaps above ~100 (reached by a smoke supernet's fifth step on one CI host) make
    float32 softmaxes exactly 0 for student and teacher: w = p / q was 0 / 0 and the loss NaN.
    From log probabilities the loss and its gradient stay finite, and where nothing
    underflows the surrogate still has the exact divergence's gradient."""
    student = torch.tensor([[-71.5, 35.8, 0.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[-90.5, 45.9, -80.0, 2.0]])
    assert float(F.softmax(student.detach(), 1)[0, 0]) == 0.0 == float(F.softmax(teacher, 1)[0, 0])
    loss = adaptive_alpha_loss(student, teacher)
    loss.backward()
    assert math.isfinite(float(loss)) and torch.isfinite(student.grad).all()

    for alpha in (-1.0, 0.0, 0.5, 1.0):  # moderate logits: the surrogate's gradient is D's
        z = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        log_p = F.log_softmax(torch.randn(3, 5, generator=torch.Generator().manual_seed(2)), 1)
        _, surrogate = alpha_divergence(z, log_p, alpha, clip=1e9)
        surrogate.sum().backward()
        z2 = z.detach().clone().requires_grad_(True)
        exact, _ = alpha_divergence(z2, log_p, alpha, clip=1e9)  # no gradient: redo it
        q, w = F.softmax(z2, 1), log_p.exp() / F.softmax(z2, 1)
        if abs(alpha) < 1e-3:
            d = (q * -w.log()).sum()
        elif abs(alpha - 1.0) < 1e-3:
            d = (q * w * w.log()).sum()
        else:
            d = (q * (w.pow(alpha) - 1.0) / (alpha * (alpha - 1.0))).sum()
        d.backward()
        assert torch.allclose(z.grad, z2.grad, atol=1e-5), alpha
        assert torch.allclose(exact.sum(), d.detach(), atol=1e-5), alpha


# ----------------------------------------------------------------------------- training


def _data(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _cfg(epochs: int = 1, **kw) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, lr=0.05, warmup_epochs=0.0, valid_size=0,
                       augment="none", channels_last=False, **kw)


def _loaders(cfg):
    x, y = _data()
    return {"train": train_loader(TensorDataset(x, y), cfg.batch_size, cfg.seed)}


def test_a_sandwich_step_trains_max_min_and_random_subnets_in_one_optimizer_step(monkeypatch):
    torch.manual_seed(0)
    net = Supernet(SPACE, n_classes=10)
    seen, dropouts = [], []
    real_set, real_drop = net.set_active_subnet, net.set_dropout

    def record(sub):
        s = real_set(sub)
        seen.append(s)
        return s
    monkeypatch.setattr(net, "set_active_subnet", record)
    monkeypatch.setattr(net, "set_dropout", lambda p: (dropouts.append(p), real_drop(p)))
    cfg = _cfg()
    trainer = Trainer(net, cfg, _loaders(cfg), arch="t", step=supernet_step(n_random=2),
                      ddp=False, progress=False)
    steps = []
    real_step = trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (steps.append(1),
                                                                     real_step(*a, **k)))
    seen.clear()
    row = trainer.train_epoch()
    assert len(steps) == 2  # 16 images in batches of 8: one optimizer step per sandwich
    hs, sp = net.hyperspace, net.space
    from spaceevo_lib.space.encoding import max_subnet, min_subnet
    assert seen[0] == max_subnet(hs, sp) and seen[1] == min_subnet(hs, sp)
    assert len(seen) == 8 and seen[4] == seen[0]  # max, min, 2 random per batch
    assert dropouts[:4] == [0.2, 0.0, 0.0, 0.0]  # dropout on the max subnet only
    assert {"train_loss_max", "train_loss_min", "train_loss_random"} <= set(row)


def test_a_non_finite_pass_names_its_subnet():
    net = Supernet(SPACE, n_classes=10)

    def pass_loss(model, kind, subnet):
        return torch.tensor(float("inf") if kind == "min" else 1.0)

    from spaceevo_lib.space.encoding import min_subnet
    with pytest.raises(NonFiniteLoss, match="the sandwich's min subnet gave a loss of inf: "
                       + re.escape(str(min_subnet(net.hyperspace, net.space)))):
        sandwich_loss(net, np.random.default_rng(0), pass_loss)


def test_a_resumed_supernet_run_ends_bit_identical(tmp_path):
    cfg = _cfg(epochs=2)
    torch.manual_seed(0)
    a = Supernet(SPACE, n_classes=10)
    train_supernet(a, cfg, _loaders(cfg), tmp_path / "a.pt")
    torch.manual_seed(0)
    b = Supernet(SPACE, n_classes=10)
    train_supernet(b, cfg, _loaders(cfg), tmp_path / "b.pt", stop_after=1)  # stopped
    torch.manual_seed(5)  # a new process: other global state
    b = Supernet(SPACE, n_classes=10)
    train_supernet(b, cfg, _loaders(cfg), tmp_path / "b.pt")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_lsq_stage_starts_from_fp32_weights_and_quantizes_every_conv_and_linear(tmp_path):
    cfg = _cfg()
    torch.manual_seed(0)
    fp32 = Supernet(SPACE, n_classes=10)
    train_supernet(fp32, cfg, _loaders(cfg), tmp_path / "fp32.pt")
    with pytest.raises(CheckpointError, match="train that stage first"):
        load_supernet(SPACE, tmp_path / "lsq.pt", "lsq")
    net = load_supernet(SPACE, tmp_path / "fp32.pt", "fp32", n_classes=10, finished_epochs=1)
    q = quantize_supernet(net)
    from spaceevo_lib.supernet.quantized import QDynamicConv2d, QDynamicLinear
    kinds = {type(m) for m in q.modules()}
    assert QDynamicConv2d in kinds and QDynamicLinear in kinds
    train_supernet(q, cfg, _loaders(cfg), tmp_path / "lsq.pt", phase="lsq")
    back = load_supernet(SPACE, tmp_path / "lsq.pt", "lsq", n_classes=10)
    sq, sb = q.state_dict(), back.state_dict()
    assert all(torch.equal(sq[k], sb[k]) for k in sq)
    with pytest.raises(CheckpointError, match="architecture"):  # a checkpoint of another space
        load_supernet("onnxw-train-212121-000001", tmp_path / "fp32.pt", "fp32")
    with pytest.raises(CheckpointError, match="1 of 3 epochs"):
        load_supernet(SPACE, tmp_path / "fp32.pt", "fp32", finished_epochs=3)


def test_an_int8_stage_needs_the_quantized_copy_of_fp32_weights(tmp_path):
    cfg = _cfg()
    torch.manual_seed(0)
    fp32 = Supernet(SPACE, n_classes=10)
    with pytest.raises(ValueError, match="has no quantizers"):
        train_supernet(fp32, cfg, _loaders(cfg), tmp_path / "lsq.pt", phase="lsq")
    with pytest.raises(ValueError, match="phase 'lsq'"):
        train_supernet(quantize_supernet(fp32), cfg, _loaders(cfg), tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written


# ----------------------------------------------------------------------------- evaluation


def test_subnet_accuracy_recalibrates_bn_so_no_subnet_leaks_into_another():
    torch.manual_seed(0)
    net = Supernet(SPACE, n_classes=10)
    x, y = _data(32)
    loader = DataLoader(TensorDataset(x[16:], y[16:]), batch_size=8)
    rng = np.random.default_rng(0)
    subs = [net.sample_random(rng) for _ in range(3)]
    a = evaluate_subnets(net, subs, x[:16], loader)
    b = evaluate_subnets(net, subs[::-1], x[:16], loader)
    assert list(a.top1) == list(b.top1[::-1]) and list(a.loss) == list(b.loss[::-1])
    # the evaluated network's statistics are the subnet's own: the elastic forward, its BN
    # re-estimated on the same images, agrees with it
    static = subnet_network(net, subs[0], x[:16])
    net.set_active_subnet(subs[0])
    recalibrate_bn(net, [x[:16]])
    with torch.no_grad():
        assert torch.allclose(net(x[16:]), static(x[16:]), atol=1e-4)


def test_a_subnet_outside_the_space_is_refused_by_name():
    net = Supernet(SPACE, n_classes=10)
    other = Supernet("onnxw-train-333333-133333", n_classes=10).sample_max()
    with pytest.raises(EncodingError):
        net.set_active_subnet(other)


# ----------------------------------------------------------------------------- warm start


def _student_state(hs: str, stage: int, block: int):
    from spaceevo_lib.blockkd import StageStudent
    torch.manual_seed(stage * 10 + block)
    st = StageStudent(hs, stage, block, 16, 24, (24, 28, 32))
    for m in st.modules():  # non-trivial BN statistics, so that slicing them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return st, {"format": "spaceevo-stage-student", "job_version": 4, "hyperspace": hs,
                "stage": stage, "block": block, "stage_state": st.stage.state_dict()}


def test_a_warm_started_stage_computes_what_its_student_computes_inside_the_windows():
    sp = SpaceChoice.decode("onnxw-train-213040-111111")
    net = Supernet(sp, n_classes=10)
    students, states = {}, {}
    for i, b in enumerate(sp.blocks, start=1):
        students[i], states[i] = _student_state(sp.hyperspace, i, b)
    warm_start(net, states)
    rng = np.random.default_rng(0)
    for _ in range(4):
        sub = net.sample_random(rng)
        cin = {}
        prev = None
        for name, blocks in sub.stage_blocks().items():
            if prev is not None:
                cin[name] = prev
            prev = blocks[-1][1]
        for i in range(1, 7):
            name = f"stage{i}"
            blocks = sub.stage_blocks()[name]
            stage_n, stage_s = net.stages[name], students[i].stage
            stage_s.active_depth = len(blocks)
            for blk, (k, w, e) in zip(stage_s.blocks, blocks):
                blk.set_active(k, w, e)
            x = torch.randn(2, cin[name], 8, 8)
            stage_n.eval(), stage_s.eval()
            with torch.no_grad():
                assert torch.allclose(stage_n(x), stage_s(x), atol=1e-5), (name, sub)


def test_warm_start_refuses_students_of_another_space_or_missing_ones(tmp_path):
    sp = SpaceChoice.decode("onnxw-train-213040-111111")
    net = Supernet(sp, n_classes=10)
    folder = tmp_path / "job"
    with pytest.raises(CheckpointError, match="no FP32 stage students"):
        load_students(folder, net)
    for i, b in enumerate(sp.blocks, start=1):
        path = folder / "students" / sp.hyperspace / f"stage{i}_{b}" / "stage_fp32.pt"
        path.parent.mkdir(parents=True)
        _, state = _student_state(sp.hyperspace, i, b)
        if i == 3:
            state["block"] = b + 1  # a student of another block
        torch.save(state, path)
    with pytest.raises(CheckpointError, match="not of"):
        load_students(folder, net)


# ----------------------------------------------------------------------------- torchrun


def _ddp_worker(r: int, init: str, out: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=r, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        cfg = _cfg(epochs=1)
        torch.manual_seed(0)
        net = Supernet(SPACE, n_classes=10)
        seen = []
        real = net.set_active_subnet
        net.set_active_subnet = lambda s: (seen.append(real(s).encode()), net.active_subnet)[1]
        x, y = _data(32)
        loaders = {"train": train_loader(TensorDataset(x, y), cfg.batch_size, cfg.seed)}
        train_supernet(net, cfg, loaders, None)
        torch.save({"seen": seen, "weights": net.state_dict()}, f"{out}.{r}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_torchrun_processes_train_the_same_subnets_and_end_identical(tmp_path):
    import torch.multiprocessing as mp
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_worker, args=(f"file://{tmp_path}/pg", out), nprocs=2, join=True)
    a, b = (torch.load(f"{out}.{r}", weights_only=True) for r in range(2))
    assert a["seen"] == b["seen"] and len(a["seen"]) == 2 * 4  # 2 steps per rank, 4 passes
    assert len(set(a["seen"])) > 2  # random subnets besides max and min
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k


# ----------------------------------------------------------------------------- quantized-for-all


@pytest.fixture(scope="module")
def lsq_supernet(tmp_path_factory):  # (about 30 s: the QFA tests are marked slow)
    """A briefly trained LSQ+ supernet (its quantizers initialised, BN statistics not trivial)
    and real normalised images."""
    from conftest import have_imagenette
    if not have_imagenette():
        pytest.skip("no Imagenette")
    from spaceevo_lib.data import load_imagenette, normalize_images
    from spaceevo_lib.data.imagenette import subset
    d = load_imagenette(32)
    xs, ys = subset(d.x_train, d.y_train, 256, seed=0)  # every class
    x, y = torch.from_numpy(normalize_images(xs)), torch.from_numpy(ys.astype(np.int64))
    tmp = tmp_path_factory.mktemp("qfa")
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0.0, valid_size=0,
                      augment="none", channels_last=False)
    loaders = {"train": train_loader(TensorDataset(x[64:], y[64:]), 32, 0)}
    torch.manual_seed(0)
    net = Supernet(SPACE, n_classes=10)
    train_supernet(net, cfg, loaders, tmp / "fp32.pt")
    q = quantize_supernet(net, x[64:128])
    train_supernet(q, cfg, loaders, tmp / "lsq.pt", phase="lsq")
    return q.eval(), x[:64]


@pytest.mark.slow
def test_the_deployable_network_carries_the_supernets_integer_weights_and_learned_ranges(
        lsq_supernet):
    from spaceevo_lib.quant.prepare import QConv2d, QLinear
    from spaceevo_lib.supernet.deploy import inherited_int8_network
    from spaceevo_lib.supernet.elastic import ChannelProjection
    q, x = lsq_supernet
    sub = q.sample_random(np.random.default_rng(1))
    qnet, counts = inherited_int8_network(q, sub, x[32:], x[:16])
    assert counts["weights"] > 0 and counts["learned_activations"] > 0
    static = q.extract_subnet(sub)
    ops = dict(q.paired_ops(static))
    plain = dict(static.named_modules())
    for name, m in qnet.named_modules():
        if isinstance(m, (QConv2d, QLinear)):
            op = ops[name]
            if isinstance(op, ChannelProjection):  # fixed 0/1 weights, exact on the grid
                got = m.weight_quantizer.fake_quantized(m.weight)
                assert torch.equal(got, plain[name].weight), name
                continue
            want = op.weight_quantizer.integer_weight(plain[name].weight).to(torch.int32)
            got = m.weight_quantizer.integer_weight(m.weight).to(torch.int32)
            assert torch.equal(got.abs(), want.abs()), name  # folding may flip the sign
    # the deployed computation is close to the supernet's own fake-quant subnet (it adds
    # quantizers at conv outputs and folds BN, so it is not equal): as close as that one is
    # to the FP32 subnet, the scale of INT8 noise
    q.set_active_subnet(sub)
    xr = F.interpolate(x[32:48], size=(sub.resolution,) * 2, mode="bicubic",
                       align_corners=False)
    with torch.no_grad():
        ref, got, fp32 = q(x[32:48]), qnet(xr), static.eval()(xr)

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
    assert corr(got, ref) > corr(ref, fp32)  # the export adds less than INT8 itself


@pytest.mark.slow
def test_the_qfa_file_computes_what_its_fake_quant_network_computes(lsq_supernet, tmp_path):
    """The deployed file runs its fake-quant network up to onnxruntime's own rounding: no
    further from it than the same architecture's min-max learned-scale file is from its own
    (the INT8 chapter's route). On a barely trained 28-block network a one-step rounding tie
    early on moves small logits visibly, so the bar is relative; the chapter holds the files
    to top-1 on thousands of test images."""
    import onnxruntime as ort

    from spaceevo_lib.host import cpu_info
    from spaceevo_lib.quant.deploy import export_qdq
    from spaceevo_lib.quant.prepare import quantize_model
    from spaceevo_lib.supernet.deploy import inherited_int8_network
    if not cpu_info()["vnni"]:
        pytest.skip("QDQ = fake-quant needs VNNI (this CPU has none: U8S8 saturates)")
    q, x = lsq_supernet
    sub = q.sample_max()
    qnet, _ = inherited_int8_network(q, sub, x[32:], x[:16])
    r = sub.resolution
    xs = F.interpolate(x[32:48], size=(r, r), mode="bicubic", align_corners=False)
    plain = quantize_model(q.extract_subnet(sub)).train()
    with torch.no_grad():
        plain(F.interpolate(x[:16], size=(r, r), mode="bicubic", align_corners=False))
    plain.eval()

    def file_error(net, name):
        path = export_qdq(net, (1, 3, r, r), tmp_path / f"{name}.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = net(xs).numpy()
        got = np.concatenate([sess.run(None, {"input": xs[i:i + 1].numpy()})[0]
                              for i in range(len(xs))])
        return float(np.abs(got - want).mean() / np.abs(want).mean())
    assert file_error(qnet, "qfa") <= 2 * file_error(plain, "plain") + 0.02
