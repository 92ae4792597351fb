"""Aging (regularized) evolution over candidate search spaces (paper-notes §5).

The population starts with every "uniform" space (block i in all six stages, window
min(j, n_windows - 1)), then random spaces up to ``population``. Each cycle draws a
tournament of ``sample_size`` without replacement, takes its best as parent and makes two
children: one stage's block changed to a different block, and one stage's window changed to
a different window. A child already in the history is skipped (not re-scored); a new one is
scored, appended, and the oldest individual dies. The run stops at ``max_evaluated`` scored
spaces (initial population included). Only :class:`SpaceChoice` values and a score
function are involved: no network is built.

The pieces both of the study's searches share (the space search here and the subnet search of
:mod:`spaceevo_lib.search.subnets`) live here too: :class:`History` (every scored candidate in
order, what was seen, the best so far), :func:`checked_score`, and the selections
(:func:`tournament`, :func:`fittest`), all drawing from one ``np.random.Generator`` so that a
seed fixes a run bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from spaceevo_lib.space import Hyperspace, SpaceChoice, as_hyperspace, count_spaces, random_space

if TYPE_CHECKING:
    import pandas as pd

HISTORY_COLUMNS: tuple[str, ...] = (
    "order", "encoding", "score", "origin", "parent", "evaluated",
    "population_size", "population_best", "population_mean", "best_so_far")


class History:
    """Every scored candidate of one search, in order: its record (``order``, ``encoding``,
    ``score``, ``origin``, ``parent``, ``evaluated``, the population's size, best and mean
    after it joined, ``best_so_far``, and whatever else the search adds), and the set of
    encodings seen, so that no candidate is scored twice."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.seen: set[str] = set()
        self.best = -math.inf

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, encoding: str) -> bool:
        return encoding in self.seen

    def add(self, encoding: str, score: float, origin: str, parent: str | None,
            population: Sequence[float], **extra) -> None:
        """Record ``encoding`` scored ``score``; ``population`` is the scores of the
        population it now belongs to."""
        self.seen.add(encoding)
        self.best = max(self.best, score)
        scores = np.fromiter(population, dtype=np.float64, count=len(population))
        self.records.append({
            "order": len(self.records), "encoding": encoding, "score": score, "origin": origin,
            "parent": parent, "evaluated": len(self.records) + 1,
            "population_size": len(scores), "population_best": float(scores.max()),
            "population_mean": float(scores.mean()), "best_so_far": self.best, **extra})

    def frame(self, extra_columns: Sequence[str] = ()) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.records,
                                         columns=[*HISTORY_COLUMNS, *extra_columns])


def checked_score(score_fn: Callable, candidate) -> float:
    """``score_fn(candidate)`` as a float; a NaN score stops the search (it would rank
    arbitrarily)."""
    score = float(score_fn(candidate))
    if math.isnan(score):
        raise ValueError(f"score_fn returned NaN for {candidate.encode()}")
    return score


def tournament(scores: Sequence[float], rng: np.random.Generator, size: int) -> int:
    """Index of the best of ``size`` members drawn without replacement (the aging
    evolution's parent; the first drawn wins a tie)."""
    idx = rng.choice(len(scores), size=size, replace=False)
    return int(idx[int(np.argmax([scores[int(i)] for i in idx]))])


def fittest(scores: Sequence[float], n: int) -> list[int]:
    """Indices of the ``n`` best members, best first (earlier members win ties): the
    subnet search's parents."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64),
                                       kind="stable")[:n]]


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of the space search; defaults are the reference run (§5)."""

    population: int = 500
    sample_size: int = 125  # tournament size, drawn without replacement
    max_evaluated: int = 5000  # stop when this many spaces have been scored (--cycles)
    seed: int = 0
    #: The reference quirk: ``random_sample()`` overwrites the random blocks of every random
    #: initial individual with [1, 2, 1, 2, 2, 2], so they differ only in width windows.
    #: That restricts the random initial population to MBv2/MBv3 blocks and biases the
    #: search toward the published answers (which are mostly MBv2/MBv3). Default None:
    #: truly random blocks. Pass (1, 2, 1, 2, 2, 2) to replay the released code exactly.
    hard_coded_init_blocks: tuple[int, ...] | None = None
    include_uniform_init: bool = True  # all uniform spaces first, as the reference does
    max_stale_cycles: int = 10_000  # stop if this many cycles in a row yield no new space

    def __post_init__(self) -> None:
        for name in ("population", "sample_size", "max_evaluated", "max_stale_cycles"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"EvolutionConfig.{name} must be a positive integer; got {v!r}")
        if self.sample_size > self.population:
            raise ValueError(f"EvolutionConfig.sample_size ({self.sample_size}) must not exceed "
                             f"population ({self.population})")
        if self.hard_coded_init_blocks is not None:
            object.__setattr__(self, "hard_coded_init_blocks",
                               tuple(int(b) for b in self.hard_coded_init_blocks))


@dataclass(frozen=True, eq=False)
class EvolutionResult:
    """History of one search: every scored space in order, plus the final population."""

    hyperspace: str
    config: EvolutionConfig
    history: pd.DataFrame  # one row per scored space, HISTORY_COLUMNS
    final_population: tuple[str, ...]
    stop_reason: str

    @property
    def best(self) -> SpaceChoice:
        """The best-scoring space of the history (earliest on ties)."""
        return SpaceChoice.decode(self.history["encoding"].iloc[
            int(np.argmax(self.history["score"].to_numpy()))])

    @property
    def best_score(self) -> float:
        return float(self.history["score"].max())

    def top(self, n: int = 50):
        """The ``n`` best spaces (unique by construction), decoded per stage (§5 output)."""
        h = self.history.sort_values(["score", "order"], ascending=[False, True],
                                     kind="stable").head(n)
        return describe_spaces(h["encoding"], h["score"]).assign(
            order=h["order"].to_numpy(), origin=h["origin"].to_numpy())

    def rank_of(self, score: float) -> int:
        """1 + how many evaluated spaces score strictly higher than ``score``."""
        return 1 + int(np.count_nonzero(self.history["score"].to_numpy() > score))


def describe_spaces(encodings, scores=None):
    """One row per space: rank, encoding, score, and ``stage1..6`` as ``Code(lo-hi)``."""
    rows = []
    score_list = None if scores is None else [float(s) for s in scores]
    for i, enc in enumerate(encodings):
        sp = enc if isinstance(enc, SpaceChoice) else SpaceChoice.decode(enc)
        row = {"rank": i + 1, "encoding": sp.encode()}
        if score_list is not None:
            row["score"] = score_list[i]
        for s in sp.spec.searchable_stages:
            w = sp.widths(s)
            row[s] = f"{sp.block(s).code}({w[0]}-{w[-1]})"
        rows.append(row)
    return pd.DataFrame(rows)


def uniform_spaces(hyperspace: Hyperspace | str) -> list[SpaceChoice]:
    """Block i in every stage with window min(j, n_windows - 1), for every i and j (§5)."""
    hs = as_hyperspace(hyperspace)
    counts = hs.window_counts
    out: list[SpaceChoice] = []
    for i in range(len(hs.blocks)):
        for j in range(max(counts)):
            sp = SpaceChoice(hs.name, (i,) * len(counts), tuple(min(j, n - 1) for n in counts))
            if sp not in out:
                out.append(sp)
    return out


def random_search(hyperspace: Hyperspace | str, score_fn: Callable[[SpaceChoice], float],
                  n: int, seed: int = 0) -> tuple[SpaceChoice, float]:
    """The baseline a space search must beat at equal cost: ``n`` distinct uniformly random
    spaces (blocks and windows) scored by ``score_fn``; returns the best and its score."""
    hs = as_hyperspace(hyperspace)
    rng = np.random.default_rng(seed)
    seen: dict[SpaceChoice, float] = {}
    limit = min(n, math.prod(len(hs.blocks) * c for c in hs.window_counts))
    while len(seen) < limit:
        sp = random_space(hs, rng)
        if sp not in seen:
            seen[sp] = float(score_fn(sp))
    best = max(seen, key=lambda k: seen[k])
    return best, seen[best]


def _other(rng: np.random.Generator, n: int, current: int) -> int:
    """A uniformly random value of 0..n-1 different from ``current``."""
    v = int(rng.integers(n - 1))
    return v + 1 if v >= current else v


def mutate_block(sp: SpaceChoice, rng: np.random.Generator) -> SpaceChoice | None:
    """One random stage gets a different block type (None if there is only one block)."""
    n_blocks = len(sp.spec.blocks)
    if n_blocks < 2:
        return None
    s = int(rng.integers(len(sp.blocks)))
    blocks = list(sp.blocks)
    blocks[s] = _other(rng, n_blocks, blocks[s])
    return SpaceChoice(sp.hyperspace, tuple(blocks), sp.windows)


def mutate_window(sp: SpaceChoice, rng: np.random.Generator) -> SpaceChoice | None:
    """One random stage (with >= 2 windows) gets a different window (None if none has)."""
    counts = sp.spec.window_counts
    stages = [i for i, c in enumerate(counts) if c >= 2]
    if not stages:
        return None
    s = stages[int(rng.integers(len(stages)))]
    windows = list(sp.windows)
    windows[s] = _other(rng, counts[s], windows[s])
    return SpaceChoice(sp.hyperspace, sp.blocks, tuple(windows))


def aging_evolution(hyperspace: Hyperspace | str, score_fn: Callable[[SpaceChoice], float],
                    config: EvolutionConfig | None = None) -> EvolutionResult:
    """Aging evolution of candidate spaces scored by ``score_fn`` (paper-notes §5).

    Reproducible bit for bit: all randomness comes from ``np.random.default_rng(seed)``,
    drawn in a fixed order (initial spaces, then per cycle: tournament, block child, window
    child), and ``score_fn`` is called once per new space in history order.
    """
    cfg = config or EvolutionConfig()
    hs = as_hyperspace(hyperspace)
    if cfg.hard_coded_init_blocks is not None:
        SpaceChoice(hs.name, cfg.hard_coded_init_blocks, (0,) * len(hs.window_counts))
    rng = np.random.default_rng(cfg.seed)
    limit = min(cfg.max_evaluated, count_spaces(hs))

    history = History()
    pop: deque[tuple[SpaceChoice, float]] = deque()

    def add(sp: SpaceChoice, origin: str, parent: str | None) -> None:
        score = checked_score(score_fn, sp)
        pop.append((sp, score))
        if len(pop) > cfg.population:
            pop.popleft()
        history.add(sp.encode(), score, origin, parent, [s for _, s in pop])

    # initial population: uniform spaces, then random ones (distinct) up to `population`
    if cfg.include_uniform_init:
        for sp in uniform_spaces(hs):
            if len(pop) >= cfg.population or len(history) >= limit:
                break
            add(sp, "uniform", None)
    n_init_space = (count_spaces(hs) if cfg.hard_coded_init_blocks is None
                    else math.prod(hs.window_counts))
    tries = n_random = 0
    while len(pop) < cfg.population and len(history) < limit:
        sp = random_space(hs, rng, cfg.hard_coded_init_blocks)
        tries += 1
        if sp.encode() not in history:
            add(sp, "random", None)
            n_random += 1
        elif tries > 100 * cfg.population or n_random >= n_init_space:
            break  # the (quirk-restricted) initial space is exhausted

    stale = 0
    while len(history) < limit:
        if len(pop) < cfg.sample_size:
            stop = "population smaller than sample_size"
            break
        parent = pop[tournament([s for _, s in pop], rng, cfg.sample_size)][0]
        new = 0
        for origin, mutate in (("block", mutate_block), ("window", mutate_window)):
            child = mutate(parent, rng)
            if child is None or child.encode() in history or len(history) >= limit:
                continue
            add(child, origin, parent.encode())
            new += 1
        stale = 0 if new else stale + 1
        if stale >= cfg.max_stale_cycles:
            stop = f"no new space in {stale} cycles"
            break
    else:
        stop = ("max_evaluated" if len(history) >= cfg.max_evaluated
                else "every space of the hyperspace evaluated")

    return EvolutionResult(hs.name, cfg, history.frame(), tuple(sp.encode() for sp, _ in pop),
                           stop)
