"""Per-stage lookup tables as numpy arrays, the only input the Q-T score reads (§3.7, §4.1).

A LUT row is one random sub-stage of (stage i, block b, width window w) with its INT8 NSR
loss and INT8 latency at one input resolution (160/192/224). :class:`StageTables` holds, for
one hyperspace, every table split by resolution, so that sampling a subnet at resolution r
is one ``rng.integers`` draw and one gather per stage, with no pandas in the hot loop.

Tables come from the published CSVs (:func:`spaceevo_lib.data.reference.load_lut`, loaded
lazily and cached per (stage, block, window)) or from hand-made frames
(:meth:`StageTables.from_frames`, for tests and for LUTs this study builds itself). Every
table is validated once, when it enters: a bad table raises :class:`LUTError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from spaceevo_lib.space import EncodingError, Hyperspace, SpaceChoice, as_hyperspace

from ..data.reference import lut_path, read_lut_csv

#: Resolutions the published LUTs sample and the Q-T score draws from (§3.7, §4.1).
LUT_RESOLUTIONS: tuple[int, ...] = (160, 192, 224)
#: Columns a LUT frame must have for the Q-T score.
REQUIRED_COLUMNS: tuple[str, ...] = ("resolution", "nsr", "latency_ms")

TableKey = tuple[int, int, int]  # (stage 1..6, block index, window index)


class LUTError(ValueError):
    """A lookup table that cannot be used: missing column, NaN, bad latency, missing resolution,
    or a table the hyperspace does not have."""


@dataclass(frozen=True, eq=False)
class StageTable:
    """One LUT ``stage{i}_{b}_{w}`` split by resolution (rows in file order within each).

    ``nsr[k]`` and ``latency_ms[k]`` are float64 arrays of the rows at ``resolutions[k]``.
    """

    hyperspace: str
    key: TableKey
    resolutions: tuple[int, ...]
    nsr: tuple[np.ndarray, ...]
    latency_ms: tuple[np.ndarray, ...]
    counts: tuple[int, ...] = field(init=False)
    #: ``nsr + 1j * latency_ms`` per resolution: the Q-T sampler gathers both in one go.
    packed: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", tuple(len(a) for a in self.nsr))
        object.__setattr__(self, "packed", tuple(
            a + 1j * b for a, b in zip(self.nsr, self.latency_ms)))

    @property
    def name(self) -> str:
        s, b, w = self.key
        return f"{self.hyperspace} stage{s}_{b}_{w}"

    def at(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """(nsr, latency_ms) rows at ``resolution``."""
        try:
            k = self.resolutions.index(resolution)
        except ValueError:
            raise KeyError(f"{self.name}: no rows at resolution {resolution}; "
                           f"has {self.resolutions}") from None
        return self.nsr[k], self.latency_ms[k]

    @property
    def n_rows(self) -> int:
        return sum(self.counts)


def table_name(hyperspace: str, key: TableKey) -> str:
    """``<hyperspace> stage{i}_{b}_{w}``: how errors and reports name a table."""
    return f"{hyperspace} stage{key[0]}_{key[1]}_{key[2]}"


def check_key(hs: Hyperspace, key: TableKey) -> TableKey:
    """``key`` as ints, or EncodingError if the hyperspace has no such stage/block/window."""
    try:
        stage, block, window = (int(v) for v in key)
    except (TypeError, ValueError):
        raise EncodingError(f"table key must be (stage, block, window); got {key!r}") from None
    n_stages = len(hs.searchable_stages)
    if not 1 <= stage <= n_stages:
        raise EncodingError(f"{hs.name}: stage must be 1..{n_stages}; got {stage}")
    if not 0 <= block < len(hs.blocks):
        blocks = ", ".join(f"{b.index}={b.code}" for b in hs.blocks)
        raise EncodingError(f"{hs.name}: stage{stage} block must be one of {blocks}; got {block}",
                            "blocks")
    n_w = hs.window_counts[stage - 1]
    if not 0 <= window < n_w:
        raise EncodingError(
            f"{hs.name}: stage{stage} window must be 0..{n_w - 1}; got {window}", "windows")
    return stage, block, window


def table_from_frame(hyperspace: str, key: TableKey, frame,
                     resolutions: tuple[int, ...] = LUT_RESOLUTIONS) -> StageTable:
    """Validate one LUT frame and split it by resolution; LUTError names table and problem."""
    name = table_name(hyperspace, key)
    missing = [c for c in REQUIRED_COLUMNS if c not in getattr(frame, "columns", ())]
    if missing:
        raise LUTError(f"{name}: missing column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    if len(frame) == 0:
        raise LUTError(f"{name}: no rows")
    cols = {}
    for c in REQUIRED_COLUMNS:
        try:
            a = np.asarray(frame[c], dtype=np.float64)
        except (TypeError, ValueError):
            raise LUTError(f"{name}: column {c!r} is not numeric") from None
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise LUTError(f"{name}: column {c!r} has {bad} NaN/inf value(s)")
        cols[c] = a
    if np.any(cols["latency_ms"] <= 0):
        n = int(np.count_nonzero(cols["latency_ms"] <= 0))
        raise LUTError(f"{name}: {n} row(s) with latency_ms <= 0 (min "
                       f"{cols['latency_ms'].min():g}); latencies must be positive")
    if np.any(cols["nsr"] < 0):
        raise LUTError(f"{name}: negative nsr (min {cols['nsr'].min():g}); NSR is >= 0")
    res = cols["resolution"]
    if np.any(res != np.round(res)):
        raise LUTError(f"{name}: non-integer resolution values")
    res = res.astype(np.int64)
    present = set(np.unique(res).tolist())
    if absent := [r for r in resolutions if r not in present]:
        raise LUTError(f"{name}: no rows at resolution(s) {absent}; every table needs rows at "
                       f"each of {list(resolutions)}")
    if extra := sorted(present - set(resolutions)):
        raise LUTError(f"{name}: rows at unexpected resolution(s) {extra}; expected only "
                       f"{list(resolutions)}")
    nsr, lat = [], []
    for r in resolutions:
        m = res == r
        nsr.append(np.ascontiguousarray(cols["nsr"][m]))
        lat.append(np.ascontiguousarray(cols["latency_ms"][m]))
    return StageTable(hyperspace, key, tuple(resolutions), tuple(nsr), tuple(lat))


class StageTables:
    """Every (stage 1..6, block, window) LUT of one hyperspace, by resolution (§3.7).

    ``StageTables("onnxw")`` reads the published CSVs on first use of each table (cached);
    :meth:`from_frames` builds one from hand-made DataFrames, validated up front.
    """

    def __init__(self, hyperspace: Hyperspace | str, root: Path | None = None,
                 resolutions: Iterable[int] = LUT_RESOLUTIONS) -> None:
        self.spec: Hyperspace = as_hyperspace(hyperspace)
        self.hyperspace: str = self.spec.name
        self.root = root
        self.resolutions: tuple[int, ...] = tuple(int(r) for r in resolutions)
        if not self.resolutions or len(set(self.resolutions)) != len(self.resolutions):
            raise ValueError(f"resolutions must be distinct and non-empty; got {resolutions}")
        self._cache: dict[TableKey, StageTable] = {}
        self._frames_only = False

    @classmethod
    def from_frames(cls, hyperspace: Hyperspace | str, frames: Mapping[TableKey, object],
                    resolutions: Iterable[int] = LUT_RESOLUTIONS) -> StageTables:
        """Tables from ``{(stage, block, window): DataFrame}`` (columns resolution, nsr,
        latency_ms at least); all validated now, and only these tables exist."""
        self = cls(hyperspace, resolutions=resolutions)
        self._frames_only = True
        tables = {}
        for key, frame in frames.items():
            k = check_key(self.spec, key)
            tables[k] = table_from_frame(self.hyperspace, k, frame, self.resolutions)
        self._cache.update(tables)
        return self

    def table(self, stage: int, block: int, window: int) -> StageTable:
        """The table of (stage, block, window); loads and validates it on first use."""
        key = check_key(self.spec, (stage, block, window))
        got = self._cache.get(key)
        if got is not None:
            return got
        if self._frames_only:
            raise LUTError(f"{table_name(self.hyperspace, key)}: no such table was given to "
                           f"from_frames (have {sorted(self._cache)})")
        frame = load_lut(self.hyperspace, *key, root=self.root)
        tab = table_from_frame(self.hyperspace, key, frame, self.resolutions)
        self._cache[key] = tab
        return tab

    def for_space(self, space: SpaceChoice | str) -> tuple[StageTable, ...]:
        """The six tables of a candidate space, stage1..6."""
        sp = space if isinstance(space, SpaceChoice) else SpaceChoice.decode(space)
        if sp.hyperspace != self.hyperspace:
            raise EncodingError(f"space {sp.encode()!r} is not in hyperspace "
                                f"{self.hyperspace!r} of these tables", "hyperspace")
        return tuple(self.table(i + 1, b, w)
                     for i, (b, w) in enumerate(zip(sp.blocks, sp.windows)))

    def keys(self) -> list[TableKey]:
        """Every (stage, block, window) the hyperspace has (given ones for from_frames)."""
        if self._frames_only:
            return sorted(self._cache)
        return [(s + 1, b, w) for s, n_w in enumerate(self.spec.window_counts)
                for b in range(len(self.spec.blocks)) for w in range(n_w)]

    def load_all(self) -> StageTables:
        """Load and validate every table now (e.g. before timing); returns self."""
        for key in self.keys():
            self.table(*key)
        return self

    def __repr__(self) -> str:
        return (f"StageTables({self.hyperspace!r}, {len(self._cache)} loaded, "
                f"resolutions={self.resolutions})")


def load_lut(hyperspace: str, stage: int, block: int, window: int, root: Path | None = None):
    """One published LUT ``stage{stage}_{block}_{window}.csv`` as a DataFrame
    (:func:`~spaceevo_lib.data.reference.read_lut_csv`; latency measured on the VNNI CPU for
    onnxw, predicted for the Pixel 4 for mobilew). The hyperspace's strides map a row's input
    side back to the network resolution."""
    return read_lut_csv(lut_path(hyperspace, stage, block, window, root),
                        as_hyperspace(hyperspace).stride_before(stage))
