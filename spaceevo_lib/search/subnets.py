"""Evolutionary search for the best subnet of a trained supernet under an INT8 latency limit
(paper-notes §8), and the random sampling it must beat at the same number of evaluations.

A subnet is valid when its predicted latency lies in the window ``[c - d, c]``. The search
starts from ``population`` distinct random valid subnets (after any valid ``start_with``
subnets); each generation keeps the fittest ``parents`` and adds ``mutations`` children
(:func:`~spaceevo_lib.space.mutate_subnet` of a random parent) and ``crossovers`` children
(:func:`~spaceevo_lib.space.crossover_subnets` of two, falling back to a mutation after
``crossover_tries``), each valid and never scored before.
Fitness and latency are callables: this module builds no network. The population, history and
selection are the space search's (:mod:`spaceevo_lib.search.evolution`).

A seed fixes a run bit for bit, and scoring draws no random numbers, so a run killed midway
resumes by running again over a :class:`FitnessCache` on disk: every subnet scored before
costs nothing, and the same children follow. The cache is keyed by the subnet alone, so one
cache serves every latency limit and every device of one supernet (accuracy does not depend
on the device).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .._io import write_json
from ..space import SpaceChoice, Subnet, as_space, crossover_subnets, mutate_subnet, sample_subnet
from .evolution import History, checked_score, fittest

#: Extra history columns of the subnet search.
SUBNET_COLUMNS: tuple[str, ...] = ("generation", "latency_ms")
#: Candidates drawn and priced together while looking for a valid one (the predictor works on
#: batches); fixed, because it decides the order random numbers are drawn in.
CHUNK = 32


class NoValidSubnetError(ValueError):
    """No subnet of the space was found inside the latency window."""


@dataclass(frozen=True)
class SubnetSearchConfig:
    """Sizes of the subnet search; defaults are the reference run (§8)."""

    population: int = 512
    generations: int = 20
    parents: int = 256  # the fittest half survives
    mutations: int = 128
    crossovers: int = 128
    mutate_prob: float = 0.3
    resolution_prob: float = 0.5
    crossover_tries: int = 50
    max_tries: int = 20_000  # candidates drawn to find one valid new subnet
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("population", "generations", "parents", "crossover_tries", "max_tries"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"SubnetSearchConfig.{name} must be a positive integer; "
                                 f"got {v!r}")
        for name in ("mutations", "crossovers"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"SubnetSearchConfig.{name} must be an integer >= 0; got {v!r}")
        if self.parents > self.population:
            raise ValueError(f"SubnetSearchConfig.parents ({self.parents}) must not exceed "
                             f"population ({self.population})")
        for name in ("mutate_prob", "resolution_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SubnetSearchConfig.{name} must be in [0, 1]")

    @property
    def evaluations(self) -> int:
        """Subnets scored by a full run: the initial population and every child."""
        return self.population + self.generations * (self.mutations + self.crossovers)


@dataclass(frozen=True, eq=False)
class SubnetSearchResult:
    """One search: every scored subnet in order (:data:`~.evolution.HISTORY_COLUMNS` plus
    generation and predicted latency) and the final population."""

    space: str
    window: tuple[float, float]
    config: SubnetSearchConfig | None
    history: pd.DataFrame
    final_population: tuple[str, ...]

    @property
    def best(self) -> Subnet:
        """The fittest subnet scored (earliest on ties)."""
        return Subnet.decode(self.history.encoding.iloc[int(np.argmax(self.history.score))])

    @property
    def best_score(self) -> float:
        return float(self.history.score.max())

    def top(self, n: int) -> pd.DataFrame:
        """The ``n`` fittest subnets, fittest first."""
        return self.history.sort_values(["score", "order"], ascending=[False, True],
                                        kind="stable").head(n).reset_index(drop=True)


class FitnessCache:
    """Fitness of subnets of one supernet, on disk (JSON, rewritten atomically after every new
    score): what makes a killed search resume and what limits and devices share.

    ``key`` names what the fitness depends on (the supernet checkpoint's hash, the held-out
    images, the BN re-calibration); a cache file written under another key is refused."""

    def __init__(self, path: Path | str, key: dict, fitness: Callable[[Subnet], float]):
        self.path, self.key, self.fitness = Path(path), dict(key), fitness
        self.scores: dict[str, float] = {}
        self.new = 0  # scores computed (not read) by this object
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("key") != self.key:
                raise ValueError(
                    f"{self.path} holds fitness of another supernet or evaluation "
                    f"({stored.get('key')}); expected {self.key}: remove it or use another "
                    "folder")
            self.scores = {k: float(v) for k, v in stored["scores"].items()}

    def __call__(self, subnet: Subnet | str) -> float:
        enc = subnet if isinstance(subnet, str) else subnet.encode()
        if enc not in self.scores:
            self.scores[enc] = float(self.fitness(Subnet.decode(enc)))
            self.new += 1
            write_json(self.path, {"key": self.key, "scores": self.scores})
        return self.scores[enc]

    def __len__(self) -> int:
        return len(self.scores)


class _Window:
    """Predicted latencies (memoised by encoding) and the window test."""

    def __init__(self, latency: Callable[[Sequence[Subnet]], np.ndarray],
                 window: tuple[float, float]):
        low, high = (float(v) for v in window)
        if not 0 <= low <= high:
            raise ValueError(f"a latency window needs 0 <= low <= high; got {window}")
        self.latency, self.low, self.high = latency, low, high
        self.ms: dict[str, float] = {}

    def price(self, subnets: Sequence[Subnet]) -> list[float]:
        new = [s for s in dict.fromkeys(subnets) if s.encode() not in self.ms]
        if new:
            self.ms.update(zip((s.encode() for s in new),
                               (float(v) for v in self.latency(new))))
        return [self.ms[s.encode()] for s in subnets]

    def first_valid(self, draw: Callable[[], Subnet], history: History, tries: int
                    ) -> tuple[Subnet, float] | None:
        """The first subnet ``draw`` makes that is inside the window and not yet scored,
        drawing (and pricing) :data:`CHUNK` at a time, at most ``tries``."""
        drawn = 0
        while drawn < tries:
            batch = [draw() for _ in range(min(CHUNK, tries - drawn))]
            drawn += len(batch)
            for sub, ms in zip(batch, self.price(batch)):
                if self.low <= ms <= self.high and sub.encode() not in history:
                    return sub, ms
        return None


def _random_valid(space: SpaceChoice, rng: np.random.Generator, win: _Window, history: History,
                  tries: int, resolutions) -> tuple[Subnet, float] | None:
    return win.first_valid(lambda: sample_subnet(space.hyperspace, space, rng, resolutions),
                           history, tries)


def subnet_search(space: SpaceChoice | str, fitness: Callable[[Subnet], float],
                  latency: Callable[[Sequence[Subnet]], np.ndarray],
                  window: tuple[float, float], config: SubnetSearchConfig | None = None,
                  resolutions: Sequence[int] | None = None,
                  start_with: Sequence[Subnet] = ()) -> SubnetSearchResult:
    """Evolutionary search of ``space``'s subnets with predicted latency inside ``window``
    (low, high in ms) for the highest ``fitness`` (§8). ``latency`` prices a list of subnets;
    ``resolutions`` are those random subnets and mutations draw from (default: the
    hyperspace's ``sample_resolutions``). ``start_with`` (e.g. the space's smallest and largest
    subnets) join the initial population first where they are valid, so that a window near
    either end of the space, which uniform draws rarely reach, still fills: what random draws
    cannot find, mutations of the members found so far fill, or, with none found, mutations
    of the given subnet nearest the window. Raises
    :class:`NoValidSubnetError` when not one valid subnet turns up."""
    cfg = config or SubnetSearchConfig()
    sp = as_space(space)
    rng = np.random.default_rng(cfg.seed)
    win = _Window(latency, window)
    history = History()
    pop: list[tuple[Subnet, float]] = []

    def add(sub: Subnet, ms: float, origin: str, parent: str | None, generation: int) -> None:
        score = checked_score(fitness, sub)
        pop.append((sub, score))
        history.add(sub.encode(), score, origin, parent, [s for _, s in pop],
                    generation=generation, latency_ms=ms)

    def mutant(p: Subnet) -> Callable[[], Subnet]:
        return lambda: mutate_subnet(sp, p, rng, cfg.mutate_prob, cfg.resolution_prob,
                                     resolutions)

    first = list(dict.fromkeys(start_with))
    first_ms = win.price(first) if first else []
    for sub, ms in zip(first, first_ms):
        if win.low <= ms <= win.high and sub.encode() not in history \
                and len(pop) < cfg.population:
            add(sub, ms, "given", None, 0)
    while len(pop) < cfg.population:
        found = _random_valid(sp, rng, win, history, cfg.max_tries, resolutions)
        if found is None:
            break
        add(*found, "random", None, 0)
    # what random draws cannot reach, mutations fill: of the members found so far, or, when
    # there are none, of the given subnet nearest the window (a window just above the
    # smallest subnet is reached by its mutants, hardly ever by uniform draws)
    nearest = min(zip(first, first_ms), key=lambda t: max(win.low - t[1], t[1] - win.high),
                  default=(None, 0.0))[0]
    while (pop or nearest is not None) and len(pop) < cfg.population:
        p = pop[int(rng.integers(len(pop)))][0] if pop else nearest
        found = win.first_valid(mutant(p), history, cfg.max_tries)
        if found is None:
            break
        add(*found, "mutation", p.encode(), 0)
    if not pop:
        raise NoValidSubnetError(
            f"no subnet of {sp.encode()} in {cfg.max_tries} random draws"
            + (f" or mutations of {nearest.encode()}" if nearest is not None else "")
            + f" has a predicted latency in [{win.low:.3f}, {win.high:.3f}] ms")

    for gen in range(1, cfg.generations + 1):
        parents = [pop[i] for i in fittest([s for _, s in pop], cfg.parents)]
        pop = list(parents)

        for _ in range(cfg.mutations):
            p = parents[int(rng.integers(len(parents)))][0]
            found = win.first_valid(mutant(p), history, cfg.max_tries)
            if found is not None:
                add(*found, "mutation", p.encode(), gen)
        for _ in range(cfg.crossovers):
            i, j = rng.choice(len(parents), size=2, replace=len(parents) < 2)
            a, b = parents[int(i)][0], parents[int(j)][0]
            found = win.first_valid(lambda: crossover_subnets(sp, a, b, rng), history,
                                    cfg.crossover_tries)
            origin = "crossover"
            if found is None:  # the reference falls back to a mutation
                found, origin = win.first_valid(mutant(a), history, cfg.max_tries), "mutation"
            if found is not None:
                add(*found, origin, f"{a.encode()}+{b.encode()}"
                    if origin == "crossover" else a.encode(), gen)
    return SubnetSearchResult(sp.encode(), (win.low, win.high), cfg,
                              history.frame(SUBNET_COLUMNS), tuple(s.encode() for s, _ in pop))


def random_subnets(space: SpaceChoice | str, fitness: Callable[[Subnet], float],
                   latency: Callable[[Sequence[Subnet]], np.ndarray],
                   window: tuple[float, float], n: int, seed: int = 0,
                   resolutions: Sequence[int] | None = None,
                   max_tries: int = SubnetSearchConfig.max_tries) -> SubnetSearchResult:
    """The baseline a subnet search must beat at equal cost: ``n`` distinct random valid
    subnets (drawn as the search's initial population is), each scored."""
    sp = as_space(space)
    rng = np.random.default_rng(seed)
    win = _Window(latency, window)
    history = History()
    scores: list[float] = []
    while len(history) < n:
        found = _random_valid(sp, rng, win, history, max_tries, resolutions)
        if found is None:
            break
        sub, ms = found
        scores.append(checked_score(fitness, sub))
        history.add(sub.encode(), scores[-1], "random", None, scores, generation=0,
                    latency_ms=ms)
    if not len(history):
        raise NoValidSubnetError(
            f"no subnet of {sp.encode()} in {max_tries} random draws has a predicted latency "
            f"in [{win.low:.3f}, {win.high:.3f}] ms")
    frame = history.frame(SUBNET_COLUMNS)
    return SubnetSearchResult(sp.encode(), (win.low, win.high), None, frame,
                              tuple(frame.encoding))
