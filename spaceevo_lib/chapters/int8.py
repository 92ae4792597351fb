"""The chapter "Training in INT8": a network trained in FP32, fine-tuned with LSQ+, deployed
three ways, and each deployed file's top-1 and latency measured from the file itself.

Two networks go through it: the **teacher** of the block-wise distillation chapter (an
EfficientNetV2-style subnet of the training-scale mobilew hyperspace, so that its stages have
the hyperspace's strides and split stage by stage) and **MobileNetV3-Small** at the same
scale, where post-training INT8 is known to hurt (SE, Hardswish).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..export.metadata import read_preprocessing
from ..latency.protocol import Protocol
from ..quant.deploy import ROUTES, deploy, evaluate_file, timed_files
from ..quant.prepare import quantize_model
from ..store import MissingResultError, Run, record
from ..train.config import TrainConfig
from ..train.data import TrainingData
from ..train.engine import evaluate, load_checkpoint
from ..train.networks import build_network

# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Int8Plan:
    """What the chapter's parameters decide: the networks, their FP32 and LSQ+ training
    settings, and the timing protocol of the deployed files."""

    networks: list[str]
    fp32: dict  # network -> TrainConfig
    lsq: TrainConfig
    protocol: Protocol


def plan(cfg) -> Int8Plan:
    """The chapter's plan from its validated parameters."""
    networks = cfg.networks.split(",")
    fp32 = {}
    for net in networks:
        epochs = cfg.teacher_epochs if net == "teacher" else cfg.baseline_epochs
        fp32[net] = TrainConfig(epochs=epochs, warmup_epochs=min(1.0, 0.2 * epochs), lr=cfg.lr,
                                weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                                train_images=cfg.train_images, valid_size=cfg.valid_size,
                                seed=cfg.seed)
    lsq = TrainConfig(epochs=cfg.lsq_epochs, lr=cfg.lsq_lr, warmup_epochs=0.0,
                      batch_size=cfg.batch_size, train_images=cfg.train_images,
                      valid_size=cfg.valid_size, seed=cfg.seed)
    return Int8Plan(networks, fp32, lsq, Protocol(visits=cfg.visits, budget_ms=cfg.budget_ms))


# ----------------------------------------------------------------------------- deployment


def deploy_all(name: str, fp32_model, qat_model, data: TrainingData, out_dir: Path,
               routes=None) -> list:
    """Every deployment route's files for one network (see :mod:`spaceevo_lib.quant.deploy`)."""
    return [deploy(r, fp32_model.eval(), qat_model, data.calibration, data.preprocessing,
                   out_dir, name) for r in (routes or ROUTES)]


def accuracy_table(name: str, fp32_model, qat_model, files: list, data: TrainingData,
                   run_path: Path) -> pd.DataFrame:
    """Top-1 on the test set: the PyTorch FP32 and fake-quant networks, then every deployed
    INT8 file run by its runtime from the preprocessing in its metadata."""
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
                  run=None, progress: bool = False) -> pd.DataFrame:
    """Latency of every deployed INT8 file beside its FP32 partner, on its device: the files of
    all networks timed together, their visits interleaved over the whole measurement (a
    network timed alone in a fraction of a second lands in one of the CPU's slow or fast
    phases: the latency chapter's finding), so that INT8 ratios between files compare like
    with like. With ``run``, the table is stored there and reused while every file's content
    (sha256), the protocol and the seed are unchanged: a rebuild re-times nothing."""
    flat = [(net, d) for net, ds in files.items() for d in ds]
    table = timed_files([d for _, d in flat], data.calibration, protocol, seed, run,
                        progress=progress)
    return table.assign(network=[net for net, _ in flat])


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
    from ..export.runner import graph_ops, optimized_ops  # heavy: imports onnx
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
    """The preprocessing entry of the first network's learned-scale file, field by field (the
    file's name first)."""
    d = next(iter(files.values()))[0]
    pre = asdict(read_preprocessing(d.int8_path))
    pre["classes"] = ", ".join(pre["classes"])
    rows = {"file": Path(d.int8_path).name, **{k: str(v) for k, v in pre.items()}}
    return pd.DataFrame({"field": list(rows), "value": list(rows.values())})


def glue_values(cfg, data: TrainingData, results: pd.DataFrame, history: pd.DataFrame,
                checks: pd.DataFrame) -> dict:
    """The settings and numbers the chapter's text cites, computed from this run's tables."""
    top = results.set_index(["network", "model"]).top1
    out = {"int8_valid": f"{cfg.valid_size:,}", "int8_wd": f"{cfg.weight_decay:g}",
           "int8_lr": f"{cfg.lr:g}", "int8_calib": f"{cfg.calibration_images}",
           "int8_lsq_epochs": f"{cfg.lsq_epochs}", "int8_test": f"{len(data.y_test):,}"}
    fp32 = history[history.phase == "fp32"]
    out["int8_epochs"] = ", ".join(f"{n} {int((fp32.network == n).sum())}"
                                   for n in dict.fromkeys(history.network))
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


#: The deployed post-training file whose INT8 latency a device's row of the results reports.
PTQ_ROUTE = {"ort-vnni": "int8-ort-ptq", "tflite": "int8-tflite-ptq"}


@dataclass(frozen=True)
class Int8Results:
    """What the chapter left in its run folder for later chapters (:func:`load_results`)."""

    path: Path  # the run folder
    params: dict  # the parameters it ran with

    def teachers(self):
        """The trained teacher: (FP32 network, LSQ+ INT8 network, the run's parameters plus
        ``checkpoints_sha256``, a digest of both checkpoints that later chapters key their
        results on, so that a retrained teacher is never mixed with students of the earlier
        one), rebuilt from the builder and loaded from the checkpoints (``weights_only``)."""
        return self.network("teacher")

    def network(self, name: str):
        """A network the chapter trained (``teacher`` or ``mobilenet_v3_small``): (FP32
        network, LSQ+ INT8 network, the run's parameters plus ``checkpoints_sha256``)."""
        fp32_ckpt, lsq_ckpt = self.path / f"{name}-fp32.pt", self.path / f"{name}-lsq.pt"
        if not (fp32_ckpt.is_file() and lsq_ckpt.is_file()):
            raise MissingResultError(f"no trained {name} in {self.path}: run the chapter "
                                     f"'Training in INT8' with networks {name} or all first")
        params = self.params
        n_classes = 1000 if params.get("dataset") == "imagenet" else 10
        model, arch = build_network(name, params["resolution"], n_classes,
                                    params["hyperspace"])
        model.load_state_dict(load_checkpoint(fp32_ckpt, arch)["model"])
        model.eval()
        q = quantize_model(model, per_channel=params["per_channel"])
        suffix = "" if params["per_channel"] else "-per-tensor"
        q.load_state_dict(load_checkpoint(lsq_ckpt, f"{arch}/lsq{suffix}")["model"])
        digest = hashlib.sha256()
        for f in (fp32_ckpt, lsq_ckpt):
            digest.update(f.read_bytes())
        return model, q.eval(), {**params, "checkpoints_sha256": digest.hexdigest()}

    def training_minutes(self, name: str) -> float:
        """Minutes ``name`` trained for in the chapter, FP32 and LSQ+ together."""
        h = pd.read_parquet(self.path / "history.parquet")
        return float(h[h.network == name].seconds.sum() / 60)

    def int8_ms(self, network: str, device: str) -> float:
        """The INT8 latency (ms, median over visits of each visit's fastest run) of
        ``network``'s post-training file on ``device``, measured from the deployed file."""
        route = PTQ_ROUTE.get(device)
        if route is None:
            raise KeyError(f"no deployed post-training file for device {device!r}; known: "
                           f"{', '.join(PTQ_ROUTE)}")
        table = self.path / "results.parquet"
        if not table.is_file():
            raise MissingResultError(f"no results in {self.path}: run the chapter 'Training "
                                     f"in INT8' to the end first")
        res = pd.read_parquet(table)
        r = res[(res.network == network) & (res.model == route)]
        if not len(r):
            raise MissingResultError(f"the chapter 'Training in INT8' in {self.path} has no "
                                     f"{route} file of {network} (networks=all needed)")
        return float(r.int8_median_of_min_ms.iloc[0])


def load_results(profile: str, root: Path | None = None) -> Int8Results:
    """This chapter's results at ``profile``, for later chapters: its trained teacher and the
    INT8 latency of its deployed files. MissingResultError names the chapter to run first."""
    run = Run("int8", profile, root)
    return Int8Results(run.path, run.finished_params("config.json"))
