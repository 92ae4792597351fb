"""The chapter "Training in INT8": a network trained in FP32, fine-tuned with LSQ+, deployed
three ways, and each deployed file's top-1 and latency measured from the file itself.

Two networks go through it: the **teacher** of the block-wise distillation chapter (an
EfficientNetV2-style subnet of the training-scale mobilew hyperspace, so that its stages have
the hyperspace's strides and split stage by stage) and **MobileNetV3-Small** at the same
scale, where post-training INT8 is known to hurt (SE, Hardswish).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import TrainConfig
from .data import TrainingData

#: The teacher: EfficientNetV2's layout (Fused-MBConv with SE in the high-resolution stages 1-3,
#: MBConv with SE in stages 4-6, swish, 3x3 kernels) inside the training-scale mobilew
#: hyperspace: the widest window of every stage at its largest width, EfficientNet-B0-like
#: depths. Block indices of mobilew: 4 = FusedMBSERes, 2 = MBv3Res.
TEACHER_BLOCKS = (4, 4, 4, 2, 2, 2)
TEACHER_DEPTHS = (1, 1, 2, 2, 2, 3, 3, 1)  # first_conv, stage0 .. stage6
TEACHER_EXPANDS = {"fused": 2.0, "mb": 3.0}


def teacher_network(hyperspace: str = "mobilew-train", n_classes: int | None = None):
    """The teacher as a static subnet (``SubnetModel``: children first_conv, stage0..6, head)."""
    from ..nn.registry import block_type
    from ..space.build import build_subnet
    from ..space.encoding import SpaceChoice, Subnet, stage_options
    from ..space.hyperspace import as_hyperspace
    hs = as_hyperspace(hyperspace)
    windows = tuple(hs.stage(s).n_windows - 1 for s in hs.searchable_stages)
    space = SpaceChoice(hs.name, TEACHER_BLOCKS, windows)
    ks, ws, es = [], [], []
    for opt, depth in zip(stage_options(space), TEACHER_DEPTHS):
        family = block_type(opt.block.code).family
        want = TEACHER_EXPANDS.get(family)
        e = (want if want in opt.expands else opt.expands[-1]) if opt.expands != (None,) \
            else None
        for _ in range(depth):
            ks.append(min(opt.kernels))
            ws.append(max(opt.widths))
            es.append(e)
    sub = Subnet(TEACHER_DEPTHS, tuple(ks), tuple(ws), tuple(es), max(hs.resolutions))
    return build_subnet(space, sub, n_classes=n_classes)


# ----------------------------------------------------------------------------- training


def train_fp32(model, arch: str, cfg: TrainConfig, data: TrainingData, checkpoint: Path,
               progress: bool = True):
    """Train in FP32 (resuming from ``checkpoint``); returns the per-epoch metrics."""
    from .engine import Trainer
    trainer = Trainer(model, cfg, {k: v for k, v in data.loaders.items() if k != "test"},
                      arch=arch, checkpoint=checkpoint, progress=progress)
    return trainer.fit().assign(phase="fp32")


def train_lsq(fp32_model, arch: str, cfg: TrainConfig, data: TrainingData, checkpoint: Path,
              per_channel: bool = True, progress: bool = True):
    """LSQ+ fine-tuning of a trained FP32 network (BN folded, quantizers min-max initialised
    on one batch of calibration images); returns (quantized model, metrics, scales table:
    every activation quantizer's scale and zero point at initialisation and after training)."""
    import torch

    from ..quant.prepare import act_quantizers, quantize_model
    from .engine import Trainer
    q = quantize_model(fp32_model.eval(), per_channel=per_channel).train()
    with torch.no_grad():
        q(torch.from_numpy(data.calibration))  # min-max initialisation
    init = {k: (float(m.step), int(m.zero_point())) for k, m in act_quantizers(q)}
    trainer = Trainer(q, cfg, {k: v for k, v in data.loaders.items() if k != "test"},
                      arch=f"{arch}/lsq{'' if per_channel else '-per-tensor'}",
                      checkpoint=checkpoint, progress=progress)
    history = trainer.fit().assign(phase="lsq+")
    rows = [{"tensor": k, "scale_init": init[k][0], "scale": float(m.step),
             "zero_point_init": init[k][1], "zero_point": int(m.zero_point())}
            for k, m in act_quantizers(q)]
    return q.eval(), history, pd.DataFrame(rows)


# ----------------------------------------------------------------------------- deployment


def deploy_all(name: str, fp32_model, qat_model, data: TrainingData, out_dir: Path,
               routes=None) -> list:
    """Every deployment route's files for one network (see :mod:`spaceevo_lib.quant.deploy`)."""
    from ..quant.deploy import ROUTES, deploy
    return [deploy(r, fp32_model.eval(), qat_model, data.calibration, data.preprocessing,
                   out_dir, name) for r in (routes or ROUTES)]


def accuracy_table(name: str, fp32_model, qat_model, files: list, data: TrainingData,
                   run_path: Path) -> pd.DataFrame:
    """Top-1 on the test set: the PyTorch FP32 and fake-quant networks, then every deployed
    INT8 file run by its runtime from the preprocessing in its metadata."""
    from ..quant.deploy import evaluate_file
    from .engine import evaluate
    rows = [{"network": name, "model": "fp32", "runtime": "pytorch", "artifact": None,
             "top1": evaluate(fp32_model.eval(), data.loaders["test"])["top1"]},
            {"network": name, "model": "int8-fakequant", "runtime": "pytorch",
             "artifact": None,
             "top1": evaluate(qat_model.eval(), data.loaders["test"])["top1"]}]
    for d in files:
        r = evaluate_file(d.int8_path, data.x_test, data.y_test)
        rows.append({"network": name, "model": f"int8-{d.route}", "runtime": d.device,
                     "artifact": str(Path(d.int8_path).relative_to(run_path)),
                     "top1": r["top1"]})
    return pd.DataFrame(rows)


def latency_table(files: dict[str, list], data: TrainingData, protocol, seed: int = 0,
                  progress: bool = False) -> pd.DataFrame:
    """Latency of every deployed INT8 file beside its FP32 partner, on its device: the files of
    all networks timed together, their visits interleaved over the whole measurement (a
    network timed alone in a fraction of a second lands in one of the CPU's slow or fast
    phases: the latency chapter's finding), so that INT8 ratios between files compare like
    with like."""
    from ..quant.deploy import time_deployed
    flat = [(net, d) for net, ds in files.items() for d in ds]
    recs = time_deployed([d for _, d in flat], data.calibration, protocol, seed, progress)
    return pd.DataFrame(recs).assign(network=[net for net, _ in flat])


def results_table(acc: pd.DataFrame, lat: pd.DataFrame) -> pd.DataFrame:
    """One row per (network, model): top-1, and for deployed files the device, INT8 and FP32
    latency (median over visits of each visit's fastest run), the speedup, and how far the
    two halves of the visits (even / odd) disagree (``half_spread``: how well it repeats)."""
    lat = lat.assign(model="int8-" + lat["route"])[
        ["network", "model", "device", "int8_median_of_min_ms", "fp32_median_of_min_ms",
         "speedup", "half_spread", "noisy", "busy"]]
    return acc.merge(lat, on=["network", "model"], how="left")


def summary_records(results: pd.DataFrame) -> list[dict]:
    """``top1/<network>/<model>`` for every row, with ``artifact`` for deployed files, and
    ``speedup/<network>/<model>`` on the file's device."""
    from ..store import record
    out = []
    for r in results.to_dict("records"):
        rec = record(f"top1/{r['network']}/{r['model']}", round(float(r["top1"]), 2), "%")
        if isinstance(r["artifact"], str):
            rec["artifact"] = r["artifact"]
            out.append(rec)
            sp = record(f"speedup/{r['network']}/{r['model']}/{r['device']}",
                        round(float(r["speedup"]), 3), "x")
            sp["artifact"] = r["artifact"]
            out.append(sp)
        else:
            out.append(rec)
    return out


# ----------------------------------------------------------------------------- verdicts

#: The chapter's rules, fixed before any result exists (tests check them on made-up tables):
#: the learned-scale ORT file must compute what the fake-quant network computes (top-1 within
#: this many points), run as fast as the post-training file (INT8 latency within this ratio),
#: and the teacher must be good enough to teach (top-1 at least this, the issue's aim).
THRESHOLDS = {"lsq_file_top1_points": 0.5, "lsq_latency_ratio": 1.10, "teacher_top1": 80.0}


def verdicts(results: pd.DataFrame, thresholds: dict = THRESHOLDS) -> pd.DataFrame:
    """One row per rule and network: the measured value, the threshold, and whether it holds
    (None: undecided, the latency records are flagged noisy)."""
    rows = []
    for net, r in results.groupby("network", sort=False):
        r = r.set_index("model")
        if {"int8-fakequant", "int8-ort-lsq-qdq"} <= set(r.index):
            gap = abs(float(r.top1["int8-ort-lsq-qdq"]) - float(r.top1["int8-fakequant"]))
            rows.append((net, "ORT file with learned scales = fake-quant network (top-1 gap, "
                              "points)", gap, thresholds["lsq_file_top1_points"],
                         gap <= thresholds["lsq_file_top1_points"]))
        if {"int8-ort-lsq-qdq", "int8-ort-ptq"} <= set(r.index):
            pair = ["int8-ort-lsq-qdq", "int8-ort-ptq"]
            ratio = float(r.int8_median_of_min_ms[pair[0]] / r.int8_median_of_min_ms[pair[1]])
            # a latency whose two halves of visits disagree beyond the protocol's bound decides
            # nothing: the rule is left undecided (None) rather than passed or failed
            noisy = "noisy" in r and bool(r.noisy[pair].fillna(False).astype(bool).any())
            rows.append((net, "ORT file with learned scales as fast as post-training ORT "
                              "(INT8 latency ratio)", ratio, thresholds["lsq_latency_ratio"],
                         None if noisy else ratio <= thresholds["lsq_latency_ratio"]))
        if net == "teacher" and "fp32" in r.index:
            t = float(r.top1["fp32"])
            rows.append((net, "teacher good enough to teach (FP32 top-1, %)", t,
                         thresholds["teacher_top1"], t >= thresholds["teacher_top1"]))
    return pd.DataFrame(rows, columns=["network", "rule", "measured", "threshold", "holds"])


# ----------------------------------------------------------------------------- tables


def stage_table(model) -> pd.DataFrame:
    """A subnet's stages: block type, depth, kernel, width, expand ratio, stride and output side
    (what the distillation chapter cuts the teacher by)."""
    sp, sub = model.space, model.subnet
    hs = sp.spec
    rows, side = [], sub.resolution
    for name, blocks in sub.stage_blocks().items():
        st = hs.stage(name)
        side = -(-side // st.stride)
        ks, ws, es = zip(*blocks)
        rows.append({"stage": name, "block": sp.block(name).code, "depth": len(blocks),
                     "kernel": ks[0], "width": ws[-1], "expand": es[0], "stride": st.stride,
                     "output side": side})
    return pd.DataFrame(rows)


def throughput_table(history: pd.DataFrame) -> pd.DataFrame:
    """Training images per second on this host, FP32 and LSQ+, per network (median epoch)."""
    return (history.groupby(["network", "phase"], sort=False)["images_per_s"].median()
            .unstack("phase").reset_index().rename_axis(columns=None))


def optimized_graph_table(files: dict) -> pd.DataFrame:
    """Operators of the graph onnxruntime runs for each ONNX INT8 file (learned-scale and
    post-training), beside the file's Conv count: integer kernels (QLinear*, QGemm) and what
    stays in float."""
    from ..export.onnx import graph_ops, optimized_ops
    rows = []
    for net, ds in files.items():
        for d in ds:
            if Path(d.int8_path).suffix != ".onnx":
                continue
            ops = optimized_ops(d.int8_path)
            convs = graph_ops(d.fp32_path).get("Conv", 0)
            rows.append({"network": net, "file": d.route, "Conv in the network": convs,
                         **dict(sorted(ops.items()))})
    cols = ["network", "file", "Conv in the network"]
    out = pd.DataFrame(rows).fillna(0)
    rest = sorted(c for c in out.columns if c not in cols)
    return out[cols + rest].astype({c: int for c in rest})


def metadata_table(files: dict) -> pd.DataFrame:
    """The preprocessing entry of the first network's learned-scale file, field by field."""
    from dataclasses import asdict

    from ..quant.deploy import read_preprocessing
    d = next(iter(files.values()))[0]
    pre = asdict(read_preprocessing(d.int8_path))
    pre["classes"] = ", ".join(pre["classes"])
    return pd.DataFrame({"field": list(pre), "value": [str(v) for v in pre.values()]}
                        ).assign(file=Path(d.int8_path).name)


def chapter_glue(results: pd.DataFrame, history: pd.DataFrame, checks: pd.DataFrame) -> dict:
    """The numbers the chapter's text cites, computed from this run's tables."""
    top = results.set_index(["network", "model"]).top1
    out = {"int8_epochs": ", ".join(f"{n} {int((history[(history.network == n) & (history.phase == 'fp32')]).shape[0])}"
                                    for n in dict.fromkeys(history.network))}
    for net, key in (("teacher", "teacher"), ("mobilenet_v3_small", "mnv3")):
        if (net, "fp32") not in top:
            continue
        out[f"int8_{key}_fp32"] = f"{top[(net, 'fp32')]:.1f}"
        for model, short in (("int8-ort-ptq", "ptq"), ("int8-ort-lsq-qdq", "lsq")):
            if (net, model) in top:
                out[f"int8_{key}_{short}_delta"] = f"{top[(net, model)] - top[(net, 'fp32')]:+.1f}"
    t = checks[(checks.network == "teacher") & checks.rule.str.startswith("teacher")]
    if len(t):
        out["int8_teacher_verdict"] = ("reached" if bool(t.holds.iloc[0]) else
                                       "not reached at this budget; the distillation chapter "
                                       "states it beside its students")
    return out


# ----------------------------------------------------------------------------- later chapters


def load_teachers(profile: str, root: Path | None = None):
    """The trained teacher of this chapter's run at ``profile``: (FP32 network, LSQ+ INT8
    network, the run's parameters plus ``checkpoints_sha256``, a digest of both checkpoints
    that later chapters key their results on, so that a retrained teacher is never mixed with
    students of the earlier one), rebuilt from the builder and loaded from the checkpoints
    (``weights_only``). MissingResultError names the chapter to run first."""
    import hashlib
    import json

    from ..quant.prepare import quantize_model
    from ..store import MissingResultError, Run
    from .engine import load_checkpoint
    from .run import build_network
    run = Run("int8", profile, root)
    fp32_ckpt, lsq_ckpt = run.path / "teacher-fp32.pt", run.path / "teacher-lsq.pt"
    if not (fp32_ckpt.is_file() and lsq_ckpt.is_file() and (run.path / "config.json").is_file()):
        raise MissingResultError(f"no trained teacher in {run.path}: run the chapter 'Training "
                                 f"in INT8' (spaceevo chapter int8 -p profile {profile}) first")
    params = json.loads((run.path / "config.json").read_text())["params"]
    n_classes = 1000 if params.get("dataset") == "imagenet" else 10
    model, arch = build_network("teacher", params["resolution"], n_classes, params["hyperspace"])
    model.load_state_dict(load_checkpoint(fp32_ckpt, arch)["model"])
    model.eval()
    q = quantize_model(model, per_channel=params["per_channel"])
    state = load_checkpoint(lsq_ckpt, f"{arch}/lsq{'' if params['per_channel'] else '-per-tensor'}")
    q.load_state_dict(state["model"])
    digest = hashlib.sha256()
    for f in (fp32_ckpt, lsq_ckpt):
        digest.update(f.read_bytes())
    return model, q.eval(), {**params, "checkpoints_sha256": digest.hexdigest()}
