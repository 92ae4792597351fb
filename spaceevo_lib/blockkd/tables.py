"""This host's lookup tables: every (stage, block, width window) of a hyperspace, sampled.

For each table, ``samples`` random sub-stages of the trained INT8 stage student with widths
from the window (paper-notes §3.7): NSR on held-out images after BN re-calibration, MFLOPs and
parameters of the sub-stage, and its INT8 latency on the hyperspace's device from this host's
predictor (:meth:`~spaceevo_lib.predictor.LatencyPredictor.additive_ms`, so that the stages
of a subnet add up to the predictor's whole-network latency). Rows are written in the
published CSV format (plus the resolution column, :func:`spaceevo_lib.data.reference.
read_lut_csv`), so :class:`spaceevo_lib.search.lut.StageTables` reads these tables as it reads
the paper's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_path, write_json
from ..data.reference import LUT_COLUMNS, read_lut_csv
from ..predictor.units import SpaceUnits, Unit, unit_cost
from ..search.lut import StageTables
from ..space.encoding import SpaceChoice, min_subnet
from ..space.hyperspace import Hyperspace, as_hyperspace
from .students import StageStudent, SubStage, held_out_nsr, parse_arch
from .teacher import BlockKDError, FeatureBank, expected_sides


def table_resolutions(hs: Hyperspace) -> tuple[int, ...]:
    """The tables' resolutions: the paper samples 160/192/224 of 224 (ratios 0.71, 0.86, 1);
    the hyperspace's nearest sizes (24, 28, 32 at the training scale)."""
    top = max(hs.resolutions)
    want = [top * 160 / 224, top * 192 / 224, top]
    return tuple(min(hs.resolutions, key=lambda r: abs(r - w)) for w in want)


def stage_units(hyperspace: str, stage: int, block: int, sub: SubStage) -> list[Unit]:
    """The predictor's units of one sub-stage (stage 1..6, block index, setting): what a table
    row describes, so any device's predictor can price it."""
    hs = as_hyperspace(hyperspace)
    spec, st = hs.block(block), hs.stage(f"stage{stage}")
    hw = expected_sides(hs, sub.resolution)[stage - 1]
    units, cin = [], sub.cin
    for i, (k, w, e) in enumerate(sub.blocks):
        stride = st.stride if i == 0 else 1
        units.append(Unit(spec.code, spec.activation, cin, w, k, float(e or 0.0), stride, hw))
        cin, hw = w, -(-hw // stride)
    return units


def sample_table(student: StageStudent, bank: FeatureBank, window: int, samples: int,
                 predictor, rng: np.random.Generator, recal_images: int,
                 eval_images: int) -> pd.DataFrame:
    """``samples`` rows of table (stage, block, window); resolutions drawn in turn so that each
    gets a third of the rows (as the published tables)."""
    rows = []
    res = student.resolutions
    for j in range(samples):
        sub = student.sample_random(rng, window=window, resolution=res[j % len(res)])
        units = stage_units(student.hyperspace, student.stage_index, student.block_index, sub)
        cost = [unit_cost(u) for u in units]
        rows.append({"arch": sub.arch, "cin": sub.cin, "hw": units[0].hw,
                     "resolution": sub.resolution,
                     "nsr": held_out_nsr(student, bank, sub, recal_images, eval_images),
                     "mflops": sum(c["macs"] for c in cost) / 1e6,
                     "mparams": sum(c["params"] for c in cost) / 1e6, "units": units})
    df = pd.DataFrame(rows)
    df["latency_ms"] = predictor.additive_ms(list(df.pop("units")), "int8")
    if (df.latency_ms <= 0).any():
        df["latency_ms"] = df.latency_ms.clip(lower=1e-4)  # a negative fitted term
    return df


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """The published row format (no header), plus the resolution column."""
    out = pd.DataFrame({"arch": df.arch,
                        "input_shape": [f"1x{c}x{h}x{h}" for c, h in zip(df.cin, df.hw)],
                        "nsr": df.nsr.round(6), "mflops": df.mflops.round(4),
                        "mparams": df.mparams.round(5), "latency_ms": df.latency_ms.round(5),
                        "resolution": df.resolution})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, header=False, index=False)
    return path


def table_paths(hyperspace: str, folder: Path) -> dict[tuple[int, int, int], Path]:
    """Every ``stage{i}_{b}_{w}.csv`` of ``folder`` by (stage, block, window); BlockKDError
    when a stage, block or window of the hyperspace is missing."""
    hs = as_hyperspace(hyperspace)
    paths, missing = {}, []
    for s, n_w in enumerate(hs.window_counts, start=1):
        for b in range(len(hs.blocks)):
            for w in range(n_w):
                p = Path(folder) / f"stage{s}_{b}_{w}.csv"
                if p.is_file():
                    paths[(s, b, w)] = p
                else:
                    missing.append(p.name)
    if missing:
        raise BlockKDError(f"tables of {hs.name} in {folder} are incomplete: {len(missing)} of "
                           f"{len(missing) + len(paths)} missing (e.g. {', '.join(missing[:3])})")
    return paths


#: Which device each latency column of a folder's tables is for, after the sampling job's own
#: (written by :func:`price_tables`; a folder without it has the own column only).
PRICED = "latency_devices.json"


def priced_devices(folder: Path) -> tuple[str | None, list[str]]:
    """The own device and the devices of the extra latency columns of ``folder``'s tables,
    in column order ((None, []) for tables never priced on another device)."""
    p = Path(folder) / PRICED
    if not p.is_file():
        return None, []
    meta = json.loads(p.read_text())
    return meta["own"], list(meta["extra"])


def read_tables(hyperspace: str, folder: Path, resolutions: tuple[int, ...],
                device: str | None = None):
    """Every table of ``folder`` as :class:`~spaceevo_lib.search.lut.StageTables`, with the
    latency of the sampling job's own device, or of ``device`` when the tables were priced on
    it (:func:`price_tables`; BlockKDError when they were not)."""
    hs = as_hyperspace(hyperspace)
    own, extra = priced_devices(folder)
    if device is not None and device != own and device not in extra:
        have = ", ".join([own, *extra]) if own else "their own device only"
        raise BlockKDError(f"tables of {hs.name} in {folder} have no {device} latency column "
                           f"(priced for {have}): price them with "
                           "blockkd.tables.price_tables first")
    frames = {}
    for key, p in table_paths(hs.name, folder).items():
        df = read_lut_csv(p, hs.stride_before(key[0]), extra)
        if device in extra:
            df["latency_ms"] = df.pop(f"latency_ms_{device}")
        frames[key] = df.drop(columns=[f"latency_ms_{d}" for d in extra], errors="ignore")
    return StageTables.from_frames(hs.name, frames, resolutions)


class ExtrapolationError(BlockKDError):
    """A predictor asked to price table rows outside the range it was fitted on."""


def price_tables(hyperspace: str, folder: Path, own: str, predictors: dict) -> list[str]:
    """Adds to every table of ``folder`` one INT8 latency column per device of ``predictors``
    ({device: predictor of ``hyperspace``}), computed from the rows' sub-stage descriptions
    (no student retrained, no job redone), after the own device's column; the same predictor
    method as the sampling job's (:meth:`additive_ms`). Files already priced for exactly these
    devices are left as they are; a predictor that would extrapolate to a row's block (outside
    the range it was fitted on) prices nothing (ExtrapolationError naming the block and
    feature).
    Returns the priced devices in column order."""
    hs = as_hyperspace(hyperspace)
    extra = [d for d in predictors if d != own]
    for d in extra:
        if predictors[d].hyperspace != hs.name:
            raise BlockKDError(f"latency predictor {predictors[d].name} is for hyperspace "
                               f"{predictors[d].hyperspace!r}, not {hs.name!r}")
    n_own = len(LUT_COLUMNS) + 1
    tables = []
    for (s, b, _), p in table_paths(hs.name, folder).items():
        text = p.read_text()
        rows = [line.split(",")[:n_own] for line in text.splitlines()]
        if any(len(r) != n_own for r in rows):
            raise BlockKDError(f"{p}: not one of this study's tables (published format plus "
                               "the resolution column)")
        df = read_lut_csv(p, hs.stride_before(s))  # (whatever columns it was priced with)
        units = [stage_units(hs.name, s, b, SubStage(int(c), parse_arch(a), int(r)))
                 for a, c, r in zip(df.arch, df.cin, df.resolution)]
        tables.append((p, text, rows, units))
    for d in extra:  # every table checked before any is written: nothing half-priced
        check = getattr(predictors[d], "check_range", None)
        try:
            if check is not None:
                check([row for *_, units in tables for row in units])
        except ValueError as err:
            raise ExtrapolationError(f"the {hs.name} tables cannot be priced on {d}: its "
                                     f"predictor would extrapolate ({err}); build it with "
                                     "the predictor chapter's range_corners") from None
    if priced_devices(folder) != (own, extra):  # columns and their names change together
        (Path(folder) / PRICED).unlink(missing_ok=True)
    for p, text, rows, units in tables:
        for d in extra:
            ms = np.clip(predictors[d].additive_ms(units, "int8"), 1e-4, None)
            rows = [row + [f"{v:.5f}"] for row, v in zip(rows, ms)]
        new = "".join(",".join(row) + "\n" for row in rows)
        if new != text:  # a table priced already by the same predictors is left as it is
            with atomic_path(p) as tmp:
                tmp.write_text(new)
    write_json(Path(folder) / PRICED, {"own": own, "extra": extra})
    return extra


def other_latency(hyperspace: str, predictor, resolutions: tuple[int, ...]) -> dict[int, float]:
    """INT8 ms of the parts the search does not touch (first_conv, stage0, head) on this host:
    those of the minimum subnet of the all-block-0 space, as the reference code defines them
    (paper-notes §4.1), from this host's predictor."""
    hs = as_hyperspace(hyperspace)
    if predictor.hyperspace != hs.name:
        raise BlockKDError(f"latency predictor {predictor.name} is for hyperspace "
                           f"{predictor.hyperspace!r}, not {hs.name!r}")
    space = SpaceChoice(hs.name, (0,) * 6, (0,) * 6)
    out = {}
    for r in resolutions:
        sub = min_subnet(hs, space)
        sub = type(sub)(sub.depths, sub.kernels, sub.widths, sub.expands, r)
        units = SpaceUnits(space)(sub)
        d0 = sub.depths[1]
        fixed = units[:1 + d0] + [units[-1]]
        out[r] = float(predictor.additive_ms([fixed], "int8")[0])
    return out
