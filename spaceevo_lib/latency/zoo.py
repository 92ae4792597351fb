"""The things the latency chapter times: operators, a Conv1x1 sweep, hyperspace blocks, models.

One :class:`ZooItem` describes one network to time; it builds the PyTorch module (the single
description every runtime gets, see ``spaceevo_lib.export``) and knows its input shape. Which
items exist at each zoo size is in ``configs/latency_zoo.yaml``. :func:`measure_zoo` turns
(item, device) pairs into measurement jobs of the one measurement path
(:func:`~spaceevo_lib.latency.jobs.run_jobs`): records are checkpointed in the run folder, an
interrupted run resumes where it stopped, and a rerun with unchanged items, devices and
protocol measures nothing again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import yaml

from ..nn import create_block, create_model, create_operator, list_operators, operator_input_shape
from ..nn.models import TORCHVISION_MODELS
from ..nn.subnet import build_published
from ..space import get_hyperspace, published_subnets
from .devices import get_device
from .jobs import Job, job_builder, run_jobs
from .protocol import Protocol

KINDS = ("operator", "conv1x1", "block", "model")


@dataclass(frozen=True)
class ZooItem:
    """One network to time. ``spec`` holds its configuration (widths, kernel, stride, ...)."""

    kind: str
    op_type: str  # operator name, block code or model name
    spec: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.spec)

    @property
    def item(self) -> str:
        """A unique, readable id, e.g. ``block/onnxw/stage1/MBv3Res``."""
        p = self.params
        if self.kind == "operator":
            return f"operator/{self.op_type}/c{p['channels']}/hw{p['hw']}"
        if self.kind == "conv1x1":
            return f"conv1x1/c{p['channels']}/hw{p['hw']}"
        if self.kind == "block":
            return f"block/{p['hyperspace']}/{p['stage']}/{self.op_type}"
        return f"model/{self.op_type}/r{p['resolution']}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        p = self.params
        if self.kind in ("operator", "conv1x1"):
            name = "conv1x1" if self.kind == "conv1x1" else self.op_type
            return operator_input_shape(name, p["channels"], p["hw"])
        if self.kind == "block":
            return (1, p["cin"], p["hw"], p["hw"])
        return (1, 3, p["resolution"], p["resolution"])  # SEQnets: their own resolution

    def build(self, seed: int = 0):
        """The PyTorch module, randomly initialised with ``seed``, in eval mode."""
        torch.manual_seed(seed)
        p = self.params
        if self.kind == "operator":
            m = create_operator(self.op_type, p["channels"])
        elif self.kind == "conv1x1":
            m = create_operator("conv1x1", p["channels"])
        elif self.kind == "block":
            m = create_block(self.op_type, p["cin"], p["cout"], p["k"], p["stride"], p["e"],
                             p["act"])
        elif self.op_type.startswith("SEQnet@"):
            m = build_published(self.op_type)
        else:
            m = create_model(self.op_type, seed=seed)
        return m.eval()


@job_builder("zoo-item")
def build_item(kind: str, op_type: str, spec: tuple) -> Any:
    """The module of a zoo item from its fields (a picklable measurement-job builder)."""
    return ZooItem(kind, op_type, tuple(tuple(kv) for kv in spec)).build()


def _item(kind: str, op_type: str, **spec: Any) -> ZooItem:
    return ZooItem(kind, op_type, tuple(sorted(spec.items())))


def block_item(hyperspace: str, stage: str, code: str, resolution: int) -> ZooItem:
    """A block configured as it sits in ``stage`` of ``hyperspace`` at ``resolution``:
    kernel 3, the middle expand ratio, median widths of this and the previous stage."""
    hs = get_hyperspace(hyperspace)
    names = [s.name for s in hs.stages]
    i = names.index(stage)
    stride_before = 1
    for s in hs.stages[:i]:
        stride_before *= s.stride
    prev, cur = hs.stages[i - 1], hs.stages[i]
    block = next((b for b in hs.blocks if b.code == code), None)
    if block is None:
        raise KeyError(f"{hyperspace} has no block {code!r}; known: {[b.code for b in hs.blocks]}")
    e = block.expands[len(block.expands) // 2] if block.expands else None
    return _item("block", code, hyperspace=hyperspace, stage=stage,
                 cin=prev.widths[len(prev.widths) // 2], cout=cur.widths[len(cur.widths) // 2],
                 hw=-(-resolution // stride_before), k=3, stride=cur.stride, e=e,
                 act=block.activation, resolution=resolution)


@functools.cache
def _zoo_table() -> dict:
    return yaml.safe_load(resources.files("spaceevo_lib.configs")
                          .joinpath("latency_zoo.yaml").read_text())


def zoo_sizes() -> list[str]:
    return list(_zoo_table())


def zoo_items(size: str) -> list[ZooItem]:
    """Every item of a zoo size, in the order the chapter measures them."""
    table = _zoo_table()
    if size not in table:
        raise KeyError(f"unknown zoo size {size!r}; known: {', '.join(table)}")
    z = table[size]
    items = []
    ops = z["operators"]
    for name in list_operators() if ops["names"] == "all" else ops["names"]:
        items.append(_item("operator", name, channels=ops["channels"], hw=ops["hw"]))
    sweep = z["conv1x1_sweep"]
    for hw in sweep["hw"]:
        for c in sweep["channels"]:
            items.append(_item("conv1x1", "conv1x1", channels=c, hw=hw))
    b = z["blocks"]
    for hs in b["hyperspaces"]:
        codes = [blk.code for blk in get_hyperspace(hs).blocks]
        for stage in b["stages"]:
            for code in codes if b["codes"] == "all" else [c for c in b["codes"] if c in codes]:
                items.append(block_item(hs, stage, code, b["resolution"]))
    m = z["models"]
    for name in TORCHVISION_MODELS if m["names"] == "all" else m["names"]:
        items.append(_item("model", name, resolution=m["resolution"]))
    for name in _seqnets(m.get("seqnets", [])):
        items.append(_item("model", name, resolution=_seqnet_resolution(name)))
    return items


def _seqnets(names: list[str] | str) -> list[str]:
    """The published SEQnets to time: a list of names, or 'all' (paper-notes §10)."""
    return sorted(published_subnets()) if names == "all" else list(names)


def _seqnet_resolution(name: str) -> int:
    subnets = published_subnets()
    if name not in subnets:
        raise KeyError(f"unknown SEQnet {name!r}; known: {', '.join(sorted(subnets))}")
    return subnets[name][1].resolution


# ----------------------------------------------------------------------------- measurement


def zoo_jobs(items: Iterable[ZooItem], devices: Sequence[str], protocol: Protocol = Protocol(),
             device_options: dict | None = None) -> list:
    """One measurement :class:`~spaceevo_lib.latency.jobs.Job` per (item, device)."""
    device_options = device_options or {}
    jobs = []
    for item in items:
        meta = {"item": item.item, "kind": item.kind, "op_type": item.op_type,
                **{f"p_{k}": v for k, v in item.params.items()}}
        for name in devices:
            jobs.append(Job.make(name, build_item, {"kind": item.kind, "op_type": item.op_type,
                                                    "spec": item.spec},
                                 item.input_shape, meta, device_options.get(name, {}),
                                 protocol))
    return jobs


def measure_zoo(items: Iterable[ZooItem], devices: Sequence[str], images_nchw: np.ndarray,
                run, protocol: Protocol = Protocol(), device_options: dict | None = None,
                table: str = "measurements", seed: int = 0, workers: int = 0,
                progress: bool = True):
    """Measure every item on every device; returns the table rows of these items and devices.

    ``images_nchw``: normalised real images (N, 3, H, W) used to calibrate INT8 and as the
    timed input. ``run``: the chapter's :class:`spaceevo_lib.store.Run`. ``device_options``:
    per-device keyword options, e.g. ``{"ort-vnni": {"fmt": "qop-u8s8"}}``. The measurement
    path is :func:`~spaceevo_lib.latency.jobs.run_jobs` (``workers`` convert in parallel, the
    timing runs on an idle CPU, records are checkpointed and reused).
    """
    items = list(items)
    for name in devices:  # unknown devices and missing runtimes stop here, before any work
        get_device(name, **(device_options or {}).get(name, {})).require()
    jobs = zoo_jobs(items, devices, protocol, device_options)
    return run_jobs(jobs, images_nchw, run, table, protocol, workers, seed, progress=progress)
