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

from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_path
from ..data.reference import read_lut_csv
from ..predictor.units import SpaceUnits, Unit, unit_cost
from ..search.lut import StageTables
from ..space.encoding import SpaceChoice, min_subnet
from ..space.hyperspace import Hyperspace, as_hyperspace
from .students import StageStudent, SubStage, held_out_nsr
from .teacher import BlockKDError, FeatureBank, expected_sides


def table_resolutions(hs: Hyperspace) -> tuple[int, ...]:
    """The tables' resolutions: the paper samples 160/192/224 of 224 (ratios 0.71, 0.86, 1);
    the hyperspace's nearest sizes (24, 28, 32 at the training scale)."""
    top = max(hs.resolutions)
    want = [top * 160 / 224, top * 192 / 224, top]
    return tuple(min(hs.resolutions, key=lambda r: abs(r - w)) for w in want)


def _units(student: StageStudent, sub: SubStage) -> list[Unit]:
    hs = as_hyperspace(student.hyperspace)
    spec, st = student.spec, student.stage_spec
    hw = expected_sides(hs, sub.resolution)[student.stage_index - 1]
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
        units = _units(student, sub)
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


def read_tables(hyperspace: str, folder: Path, resolutions: tuple[int, ...]):
    """Every ``stage{i}_{b}_{w}.csv`` of ``folder`` as :class:`~spaceevo_lib.search.lut.
    StageTables`; BlockKDError when a stage, block or window of the hyperspace is missing."""
    hs = as_hyperspace(hyperspace)
    frames, missing = {}, []
    for s, n_w in enumerate(hs.window_counts, start=1):
        for b in range(len(hs.blocks)):
            for w in range(n_w):
                p = Path(folder) / f"stage{s}_{b}_{w}.csv"
                if p.is_file():
                    frames[(s, b, w)] = read_lut_csv(p, hs.stride_before(s))
                else:
                    missing.append(p.name)
    if missing:
        raise BlockKDError(f"tables of {hs.name} in {folder} are incomplete: {len(missing)} of "
                           f"{len(missing) + len(frames)} missing (e.g. {', '.join(missing[:3])})")
    return StageTables.from_frames(hs.name, frames, resolutions)


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
