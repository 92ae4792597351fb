"""The things the latency chapter times: operators, a Conv1x1 sweep, hyperspace blocks, models.

One :class:`ZooItem` describes one network to time; it builds the PyTorch module (the single
description every runtime gets, see ``spaceevo_lib.export``) and knows its input shape. Which
items exist at each zoo size is in ``configs/latency_zoo.yaml``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ..nn import create_block, create_model, create_operator, list_operators, operator_input_shape
from ..nn.models import TORCHVISION_MODELS
from .jobs import job_builder

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
        import torch
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
            from ..space.build import build_published
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
    from ..space import get_hyperspace
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
    from ..space import get_hyperspace
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
    from ..space import published_subnets
    return sorted(published_subnets()) if names == "all" else list(names)


def _seqnet_resolution(name: str) -> int:
    from ..space import published_subnets
    subnets = published_subnets()
    if name not in subnets:
        raise KeyError(f"unknown SEQnet {name!r}; known: {', '.join(sorted(subnets))}")
    return subnets[name][1].resolution
