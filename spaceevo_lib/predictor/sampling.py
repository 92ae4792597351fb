"""What the predictor is trained and validated on: units and whole subnets of a hyperspace,
drawn from its real ranges, measured through the latency chapter's devices and protocol.

* :func:`random_subnets`: uniformly random candidate spaces (block type and width window per
  stage), then a uniformly random subnet of each at one of the hyperspace's resolutions.
* The **additivity set**: a few random subnets measured whole *and* unit by unit; it shows
  how far isolated block latencies add up and fits the predictor's composition term.
* **Adaptive sampling** (nn-Meter): each round measures a probe of new random units, finds the
  ones the current predictor gets most wrong, and measures more units of the same block type
  at the same stage of the same candidate space (their neighbourhood in configuration space).
* The **validation set**: other random subnets plus the published SEQnets (at the
  hyperspace's scale), measured whole and never used for fitting.

Every measurement is a :class:`~spaceevo_lib.latency.jobs.Job`, checkpointed in the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..latency.jobs import Job, job_builder, run_jobs
from ..latency.protocol import Protocol
from ..nn.models import create_model
from ..nn.subnet import build_subnet
from ..space.encoding import (SpaceChoice, Subnet, max_subnet, min_subnet, published_spaces,
                              published_subnets, random_space, sample_subnet)
from ..space.hyperspace import STAGE_NAMES, Hyperspace, as_hyperspace
from .units import Unit, baseline_units, build_unit, scale_subnet, subnet_units, unit_spec


def random_subnet(sp: SpaceChoice, rng: np.random.Generator) -> Subnet:
    hs = sp.spec
    return sample_subnet(hs, sp, rng, resolutions=hs.resolutions)


def random_subnets(hyperspace: Hyperspace | str, n: int, rng: np.random.Generator
                   ) -> list[tuple[str, str]]:
    """``n`` (space, subnet) encodings: a random space each, a random subnet of it."""
    hs = as_hyperspace(hyperspace)
    out = []
    for _ in range(n):
        sp = random_space(hs, rng)
        out.append((sp.encode(), random_subnet(sp, rng).encode()))
    return out


def range_corners(hyperspace: Hyperspace | str) -> list[tuple[str, str]]:
    """(space, subnet) encodings whose units span every block type's range in every stage:
    for each block type, the space using it in every stage with the narrowest width windows
    and its smallest subnet (smallest resolution, widths, kernel, expand ratio), and the space
    with the widest windows and its largest subnet. Random subnets rarely reach these ends
    (the block-wise chapter's tables do: a stage-6 block at the widest widths, a stage-1 block
    at the largest side), and a regressor fitted without them extrapolates there."""
    hs = as_hyperspace(hyperspace)
    n = len(hs.window_counts)
    out = []
    for b in range(len(hs.blocks)):
        narrow = SpaceChoice(hs.name, (b,) * n, (0,) * n)
        wide = SpaceChoice(hs.name, (b,) * n, tuple(c - 1 for c in hs.window_counts))
        out += [(narrow.encode(), min_subnet(hs, narrow).encode()),
                (wide.encode(), max_subnet(hs, wide).encode())]
    return out


def seqnets(hyperspace: Hyperspace | str) -> list[tuple[str, str, str]]:
    """(name, space, subnet) of the published SEQnets of ``hyperspace`` or of its base (mapped
    to its scale by :func:`~spaceevo_lib.predictor.units.scale_subnet`)."""
    hs = as_hyperspace(hyperspace)
    base = hs.base or hs.name
    spaces = published_spaces()
    out = []
    for name, (space_name, sub) in published_subnets().items():
        sp = spaces[space_name]
        if sp.hyperspace != base:
            continue
        tsp, tsub = scale_subnet(sub, sp, hs.name)
        out.append((name, tsp.encode(), tsub.encode()))
    return out


@job_builder("subnet")
def build_subnet_module(space: str, subnet: str):
    """A subnet's static network from its encodings (a picklable :class:`Job` builder)."""
    return build_subnet(space, subnet)


@job_builder("baseline-model")
def build_baseline(name: str, **kwargs):
    """A torchvision baseline with random weights (a picklable :class:`Job` builder);
    ``kwargs`` go to :func:`~spaceevo_lib.nn.models.create_model` (``n_classes``,
    ``stem_stride``)."""
    return create_model(name, **kwargs)


def baseline_subnet(name: str, resolution: int, n_classes: int = 1000,
                    stem_stride: int = 2) -> str:
    """The row id of a baseline: ``<name>@r<resolution>`` plus ``/c<classes>/s<stem stride>``
    when they differ from torchvision's defaults."""
    extra = "" if (n_classes, stem_stride) == (1000, 2) else f"/c{n_classes}/s{stem_stride}"
    return f"{name}@r{resolution}{extra}"


def _unit_meta(u: Unit) -> dict:
    return {"kind": "unit", **u._asdict()}


@dataclass(frozen=True)
class Measurer:
    """Measures units and subnets on one device into the run's tables (the one measurement
    path, :func:`~spaceevo_lib.latency.jobs.run_jobs`)."""

    device: str
    run: object
    images: np.ndarray
    protocol: Protocol = Protocol()
    workers: int = 0
    seed: int = 0
    progress: bool = True
    options: tuple = ()

    def units(self, units: Sequence[Unit], table: str = "units") -> pd.DataFrame:
        """Measured latencies of ``units`` (deduplicated) with the :class:`Unit` columns."""
        jobs = [Job.make(self.device, build_unit, unit_spec(u), u.input_shape, _unit_meta(u),
                         dict(self.options), self.protocol) for u in dict.fromkeys(units)]
        return self._run(jobs, f"{table}-{self.device}")

    def subnets(self, pairs: Sequence[tuple[str, str]], names: Sequence[str] | None = None,
                table: str = "subnets") -> pd.DataFrame:
        """Measured latencies of whole subnets (``space``, ``subnet`` and ``name`` columns)."""
        return self._run(self.subnet_jobs(pairs, names), f"{table}-{self.device}")

    def subnet_jobs(self, pairs: Sequence[tuple[str, str]], names: Sequence[str] | None = None,
                    roles: Sequence[str] | None = None) -> list[Job]:
        """One job per distinct subnet (the first name and role win)."""
        names = list(names) if names is not None else ["random"] * len(pairs)
        roles = list(roles) if roles is not None else [""] * len(pairs)
        jobs, seen = [], set()
        for (sp, sub), name, role in zip(pairs, names, roles):
            if (sp, sub) in seen:
                continue
            seen.add((sp, sub))
            r = Subnet.decode(sub).resolution
            jobs.append(Job.make(self.device, build_subnet_module, {"space": sp, "subnet": sub},
                                 (1, 3, r, r), {"kind": "subnet", "name": name, "role": role,
                                                "space": sp, "subnet": sub, "n_units": len(
                                                    subnet_units(sp, sub))},
                                 dict(self.options), self.protocol))
        return jobs

    def baseline_jobs(self, names: Sequence[str], resolution: int, role: str = "validation",
                      **build) -> list[Job]:
        """torchvision baselines as rows like :meth:`subnet_jobs`' (space ``torchvision``,
        subnet ``<name>@r<resolution>``); ``build`` goes to the model builder (e.g.
        ``stem_stride``, ``n_classes``)."""
        jobs = []
        for name in names:
            n_units = len(baseline_units(name, resolution, **build))  # refuses
            #                                                           unpriceable models
            jobs.append(Job.make(self.device, build_baseline, {"name": name, **build},
                                 (1, 3, resolution, resolution),
                                 {"kind": "baseline", "name": name, "role": role,
                                  "space": "torchvision",
                                  "subnet": baseline_subnet(name, resolution, **build),
                                  "n_units": n_units}, dict(self.options), self.protocol))
        return jobs

    def networks(self, jobs: Sequence[Job], table: str = "wholes") -> pd.DataFrame:
        """Measure whole networks together (one interleaved batch: no role is timed in a
        slower phase of the machine than another)."""
        return self._run(list(jobs), f"{table}-{self.device}")

    def _run(self, jobs: list[Job], table: str) -> pd.DataFrame:
        return run_jobs(jobs, self.images, self.run, table, self.protocol, self.workers,
                        self.seed, progress=self.progress)


def neighbours(u_space: str, stage: str, code: str, rng: np.random.Generator, n: int,
               exclude: set[Unit]) -> list[Unit]:
    """Up to ``n`` new units of block ``code`` at ``stage`` of candidate space ``u_space``,
    from fresh random subnets of that space (configurations near a badly predicted one)."""
    sp = SpaceChoice.decode(u_space)
    i = STAGE_NAMES.index(stage)
    out: list[Unit] = []
    for _ in range(20 * n):
        sub = random_subnet(sp, rng)
        start = sum(sub.depths[:i])
        for u in subnet_units(sp, sub)[start:start + sub.depths[i]]:
            if u.code == code and u not in exclude and u not in out:
                out.append(u)
        if len(out) >= n:
            break
    return out[:n]


def located_units(pairs: Sequence[tuple[str, str]]) -> list[tuple[Unit, str, str]]:
    """(unit, space, stage) of every unit of the given subnets (the head has stage 'head')."""
    out = []
    for sp, sub in pairs:
        s = Subnet.decode(sub)
        stages = [name for name, d in zip(STAGE_NAMES, s.depths) for _ in range(d)] + ["head"]
        out += [(u, sp, st) for u, st in zip(subnet_units(sp, s), stages)]
    return out
