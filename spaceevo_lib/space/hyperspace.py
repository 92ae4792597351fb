"""Hyperspaces: the macro architecture and block candidates SpaceEvo searches over.

A hyperspace (the reference code's "superspace", paper-notes §2) is a fixed chain of elastic
stages ``first_conv, stage0 ... stage6`` plus a fixed head. SpaceEvo's *space search* picks,
for each of stage1..6, one candidate block type and one contiguous width window (§2.1);
the result is a candidate search space (:class:`spaceevo_lib.space.SpaceChoice`) whose
subnets the supernet trains.

The tables (widths, depths, strides, window sizes, candidate blocks) are data, in
``spaceevo_lib/configs/hyperspaces.yaml``; this module only types, checks and registers them.
Besides the paper's ``mobilew`` (Pixel 4) and ``onnxw`` (VNNI CPU) it registers their
training-scale copies ``mobilew-train`` and ``onnxw-train`` (32-px Imagenette, the scale every
training chapter uses), built by :func:`scaled_hyperspace`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from importlib import resources
from typing import Iterable

import yaml

#: Elastic stages in network order; the subnet encoding has one depth per stage (§2.5).
STAGE_NAMES: tuple[str, ...] = (
    "first_conv", "stage0", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6",
)
#: Stages whose block type and width window the space search picks (§2.1).
SEARCHABLE_STAGES: tuple[str, ...] = STAGE_NAMES[2:]
#: Fixed, non-elastic head parts in network order (not in the subnet encoding, §2.5).
HEAD_PARTS: tuple[str, ...] = ("final_expand", "feature_mix", "logits")


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage (reference ``StageConfig``, paper-notes §2.1).

    ``window_size`` is the width-window size s: a candidate space activates the contiguous
    slice ``widths[j:j+s]`` for one j in ``range(n_windows)``; s = len(widths) (one window)
    for first_conv and stage0, which are elastic over their whole width list.
    """

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    stride: int
    window_size: int

    def __post_init__(self) -> None:
        where = f"stage {self.name!r}"
        if not self.widths or any(b <= a for a, b in zip(self.widths, self.widths[1:])):
            raise ValueError(f"{where}: widths must be strictly increasing; got {self.widths}")
        if not self.depths or any(b <= a for a, b in zip(self.depths, self.depths[1:])):
            raise ValueError(f"{where}: depths must be strictly increasing; got {self.depths}")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ValueError(f"{where}: widths and depths must be >= 1")
        if self.stride not in (1, 2):
            raise ValueError(f"{where}: stride must be 1 or 2; got {self.stride}")
        if not 1 <= self.window_size <= len(self.widths):
            raise ValueError(
                f"{where}: window_size must be in 1..{len(self.widths)}; got {self.window_size}"
            )

    @property
    def n_windows(self) -> int:
        """Number of width windows, |W| - s + 1."""
        return len(self.widths) - self.window_size + 1

    def window(self, j: int) -> tuple[int, ...]:
        """Active widths of window ``j``: ``widths[j:j+s]``."""
        if not 0 <= j < self.n_windows:
            raise IndexError(
                f"stage {self.name!r}: window index must be in 0..{self.n_windows - 1}; got {j}"
            )
        return self.widths[j:j + self.window_size]


@dataclass(frozen=True)
class BlockSpec:
    """A block type with its elastic kernel and expand-ratio choices (paper-notes §2.2-2.4).

    ``index`` is the digit in the space encoding for stage1..6 candidates and -1 for the fixed
    first_conv / stage0 blocks. ``expands`` is empty for blocks without an expand ratio
    (MBv1Dual, the stem); subnet strings write those as ``0``.
    """

    index: int
    name: str  # reference class name, e.g. MobileNetV2ResBlock (nn-Meter block names)
    code: str  # short label used in tables and describe(), e.g. MBv2Res (paper-notes §6)
    kernels: tuple[int, ...]
    expands: tuple[float, ...]
    activation: str
    se: bool
    description: str = ""

    @property
    def expand_choices(self) -> tuple[float | None, ...]:
        """Expand values a subnet may use: the ratios, or ``(None,)`` if the block has none."""
        return self.expands if self.expands else (None,)


@dataclass(frozen=True)
class HeadSpec:
    """A fixed head part: final_expand (1x1), feature_mix (GAP + 1x1), logits (Linear)."""

    part: str
    name: str
    width: int
    activation: str
    description: str = ""


@dataclass(frozen=True)
class Hyperspace:
    """A SpaceEvo hyperspace: stages, candidate blocks, fixed parts, resolutions (§2).

    ``resolutions`` is the supernet's ``supernet_hw_list``; ``sample_resolutions`` the subset
    the released code samples and mutates over (paper-notes §2.5, pitfall 2 of §14).
    ``base`` names the paper hyperspace a scaled one derives from (None for the paper's).
    """

    name: str
    device: str
    stages: tuple[StageSpec, ...]
    blocks: tuple[BlockSpec, ...]
    first_conv: BlockSpec
    stage0: BlockSpec
    final_expand: HeadSpec
    feature_mix: HeadSpec
    logits: HeadSpec
    resolutions: tuple[int, ...]
    sample_resolutions: tuple[int, ...]
    n_classes: int
    searchable_stages: tuple[str, ...] = SEARCHABLE_STAGES
    base: str | None = None

    def __post_init__(self) -> None:
        where = f"hyperspace {self.name!r}"
        names = tuple(s.name for s in self.stages)
        if names != STAGE_NAMES:
            raise ValueError(f"{where}: stages must be {STAGE_NAMES}; got {names}")
        if not 1 <= len(self.blocks) <= 10 or any(
            b.index != i for i, b in enumerate(self.blocks)
        ):
            raise ValueError(f"{where}: blocks must be 1..10 entries indexed 0, 1, ...")
        if any(self.stage(s).n_windows > 10 for s in self.searchable_stages):
            raise ValueError(f"{where}: a stage has > 10 windows; they must fit one digit")
        if not set(self.sample_resolutions) <= set(self.resolutions):
            raise ValueError(f"{where}: sample_resolutions must be a subset of resolutions")
        if self.logits.width != self.n_classes:
            raise ValueError(f"{where}: logits width {self.logits.width} != n_classes")

    def stage(self, name: str) -> StageSpec:
        """The stage called ``name``; KeyError lists the valid names."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"unknown stage {name!r} of {self.name!r}; valid: {', '.join(STAGE_NAMES)}")

    def stride_before(self, stage: int) -> int:
        """Cumulative stride in front of searched stage ``stage`` (1..6): a stage input's side
        times it is the network resolution."""
        s = 1
        for name in STAGE_NAMES[:STAGE_NAMES.index("stage0") + stage]:
            s *= self.stage(name).stride
        return s

    def block(self, index: int) -> BlockSpec:
        """Candidate block ``index`` (the digit in a space encoding)."""
        if not 0 <= index < len(self.blocks):
            raise KeyError(
                f"{self.name!r} has block indices 0..{len(self.blocks) - 1}; got {index}: "
                + ", ".join(f"{b.index}={b.code}" for b in self.blocks)
            )
        return self.blocks[index]

    @property
    def head(self) -> tuple[HeadSpec, HeadSpec, HeadSpec]:
        return (self.final_expand, self.feature_mix, self.logits)

    @property
    def window_counts(self) -> tuple[int, ...]:
        """Number of width windows of stage1..6."""
        return tuple(self.stage(s).n_windows for s in self.searchable_stages)


# ----------------------------------------------------------------------------- loading


def _block(spec: dict, index: int, structures: dict[str, str]) -> BlockSpec:
    return BlockSpec(
        index=index, name=spec["name"], code=spec["code"],
        kernels=tuple(int(k) for k in spec["kernels"]),
        expands=tuple(float(e) for e in spec["expands"]),
        activation=spec["activation"], se=bool(spec["se"]),
        description=structures.get(spec["code"], ""),
    )


def _head(part: str, spec: dict, structures: dict[str, str]) -> HeadSpec:
    return HeadSpec(part=part, name=spec["name"], width=int(spec["width"]),
                    activation=spec["activation"], description=structures.get(spec["name"], ""))


def _from_table(name: str, t: dict, structures: dict[str, str]) -> Hyperspace:
    stages = []
    for sname in STAGE_NAMES:
        s = t["stages"][sname]
        widths = tuple(int(w) for w in s["widths"])
        stages.append(StageSpec(sname, widths, tuple(int(d) for d in s["depths"]),
                                int(s["stride"]), int(s.get("window", len(widths)))))
    return Hyperspace(
        name=name, device=t["device"], stages=tuple(stages),
        blocks=tuple(_block(b, i, structures) for i, b in enumerate(t["blocks"])),
        first_conv=_block(t["first_conv"], -1, structures),
        stage0=_block(t["stage0"], -1, structures),
        **{p: _head(p, t["head"][p], structures) for p in HEAD_PARTS},
        resolutions=tuple(t["resolutions"]), sample_resolutions=tuple(t["sample_resolutions"]),
        n_classes=int(t["n_classes"]),
    )


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    text = resources.files("spaceevo_lib.configs").joinpath("hyperspaces.yaml").read_text()
    return yaml.safe_load(text)


_REGISTRY: dict[str, Hyperspace] = {}


def _registry() -> dict[str, Hyperspace]:
    if not _REGISTRY:
        tables = _tables()
        structures = tables.get("block_structures", {})
        built = {n: _from_table(n, t, structures) for n, t in tables["hyperspaces"].items()}
        for n, params in tables.get("scaled", {}).items():
            params = dict(params)
            built[n] = scaled_hyperspace(built[params.pop("base")], n, **params)
        _REGISTRY.update(built)
    return _REGISTRY


def list_hyperspaces() -> list[str]:
    """Names of the registered hyperspaces (paper ones first, then the training-scale ones)."""
    return list(_registry())


def get_hyperspace(name: str) -> Hyperspace:
    """The registered hyperspace ``name``; KeyError lists the valid names (style lesson 4)."""
    reg = _registry()
    try:
        return reg[name]
    except KeyError:
        raise KeyError(f"unknown hyperspace {name!r}; valid: {', '.join(reg)}") from None


def register_hyperspace(hs: Hyperspace, overwrite: bool = False) -> Hyperspace:
    """Add a custom hyperspace so that SpaceChoice strings can name it."""
    reg = _registry()
    if hs.name in reg and not overwrite and reg[hs.name] != hs:
        raise ValueError(f"hyperspace {hs.name!r} is already registered")
    reg[hs.name] = hs
    return hs


def as_hyperspace(hs: Hyperspace | str) -> Hyperspace:
    """Accept a Hyperspace or its registered name."""
    return hs if isinstance(hs, Hyperspace) else get_hyperspace(hs)


# ----------------------------------------------------------------------------- scaling


def scale_widths(widths: Iterable[int], divisor: float, quantum: int = 8) -> tuple[int, ...]:
    """Divide widths by ``divisor``, round to a multiple of ``quantum``, keep them increasing.

    Each value becomes the nearest multiple of ``quantum`` to ``w / divisor`` (at least
    ``quantum``; halves round up); if that does not exceed the previous scaled value it
    becomes previous + ``quantum``. The list keeps its length and stays strictly increasing,
    so window sizes and window counts are unchanged.
    """
    out: list[int] = []
    for w in widths:
        v = max(quantum, quantum * int(w / divisor / quantum + 0.5))
        if out and v <= out[-1]:
            v = out[-1] + quantum
        out.append(v)
    return tuple(out)


def scale_resolutions(base: Hyperspace, max_resolution: int) -> tuple[tuple[int, ...], ...]:
    """(resolutions, sample_resolutions) for data of side ``max_resolution``.

    Keeps the base's counts (5 and 3 in the paper): the resolutions end at ``max_resolution``
    in steps of ``max_resolution // 16`` (the paper steps 16 px at 224, i.e. ~1/14), and the
    sampled ones are the top ``len(base.sample_resolutions)``.
    """
    step = max(1, max_resolution // 16)
    n = len(base.resolutions)
    res = tuple(max_resolution - step * (n - 1 - i) for i in range(n))
    if res[0] < 1:
        raise ValueError(f"max_resolution {max_resolution} too small for {n} resolutions")
    return res, res[len(res) - len(base.sample_resolutions):]


def scaled_hyperspace(base: Hyperspace | str, name: str, *, width_divisor: float = 2,
                      max_resolution: int = 32, n_classes: int = 10, quantum: int = 8,
                      strides: dict[str, int] | None = None) -> Hyperspace:
    """A training-scale copy of a paper hyperspace with the same structure (paper-notes §14).

    Kept: stages, depth lists, window sizes and counts, candidate and fixed blocks (types,
    kernels, expand ratios, activations), and the strides not listed in ``strides``. Changed:
    every width list and the head's widths go through :func:`scale_widths`, the resolutions
    through :func:`scale_resolutions`, the strides named in ``strides`` (stage -> 1 or 2), and
    the logits layer gets ``n_classes`` outputs. The rule is written out in
    ``configs/hyperspaces.yaml`` next to the registered names.
    """
    b = as_hyperspace(base)
    strides = dict(strides or {})
    unknown = sorted(set(strides) - set(STAGE_NAMES))
    if unknown:
        raise KeyError(f"strides: unknown stage(s) {unknown}; valid: {', '.join(STAGE_NAMES)}")
    stages = tuple(replace(s, widths=scale_widths(s.widths, width_divisor, quantum),
                           stride=int(strides.get(s.name, s.stride))) for s in b.stages)
    res, sample = scale_resolutions(b, max_resolution)

    def head(h: HeadSpec) -> HeadSpec:
        return replace(h, width=scale_widths([h.width], width_divisor, quantum)[0])

    return replace(
        b, name=name, stages=stages, resolutions=res, sample_resolutions=sample,
        n_classes=n_classes, final_expand=head(b.final_expand), feature_mix=head(b.feature_mix),
        logits=replace(b.logits, width=n_classes), base=b.name,
        device=f"training-scale copy of {b.name} for {max_resolution}-px data, "
               f"{n_classes} classes",
    )


def make_divisible(v: float, divisor: int = 8) -> int:
    """The reference's width rounding (paper-notes §2.4): nearest multiple of ``divisor``
    (at least ``divisor``), plus ``divisor`` if that falls below 0.9 v. Hidden widths of every
    block and the SE widths follow it; torch-free so that search code can use it too."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new
