"""This host's search spaces: aging evolution over its own tables, per device.

The Q-T score and the evolution are the Q-T chapter's (:mod:`spaceevo_lib.search`), run on
the tables of :mod:`.tables` with this host's latency of the non-searched parts and latency
limits from a stated rule: multiples of the INT8 latency that MobileNetV3-Small's
post-training file measured on the same device at the same resolution (the chapter "Training
in INT8"). Every space is then re-scored over several seeds (error bars): the evolved ones
(one per evolution seed), every uniform space, and the published spaces mapped to this scale.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..search.evolution import EvolutionConfig, aging_evolution, random_search, uniform_spaces
from ..search.qt import QTConfig, QTScorer
from ..space import SpaceChoice, published_spaces
from ..space.hyperspace import as_hyperspace


def latency_limits(mnv3_int8_ms: float, multiples: Sequence[float]) -> tuple[float, ...]:
    """The constraints T (ms): ``multiples`` of MobileNetV3-Small's measured INT8 latency."""
    if not mnv3_int8_ms > 0:
        raise ValueError(f"MobileNetV3-Small INT8 latency must be > 0 ms; got {mnv3_int8_ms}")
    return tuple(round(float(m) * mnv3_int8_ms, 4) for m in multiples)


def mapped_published(hyperspace: str) -> dict[str, SpaceChoice]:
    """The paper's published spaces of the base hyperspace, the same blocks and windows in the
    training-scale one (the scaled hyperspace keeps window counts)."""
    hs = as_hyperspace(hyperspace)
    return {f"{label} (published)": SpaceChoice(hs.name, sp.blocks, sp.windows)
            for label, sp in published_spaces().items() if sp.hyperspace == hs.base}


def hand_designed(hyperspace: str) -> dict[str, SpaceChoice]:
    """Uniform spaces named by their block (the same block in every stage, at the middle
    window of every stage): "all MBv2Res", "all ResNet", ..."""
    hs = as_hyperspace(hyperspace)
    mid = tuple(n // 2 for n in hs.window_counts)
    return {f"all {b.code}": SpaceChoice(hs.name, (b.index,) * 6, mid) for b in hs.blocks}


def evolved_label(seed: int) -> str:
    """The name an evolution's best space carries in :func:`evolve_spaces` and the scores."""
    return f"evolved (seed {seed})"


def evolved_seed(label: str) -> int:
    """The seed of an :func:`evolved_label`."""
    return int(label.removeprefix("evolved (seed ").removesuffix(")"))


def evolve_spaces(tables, other_ms: dict, qt: QTConfig, evo: EvolutionConfig,
                  seeds: Sequence[int], random_baseline: bool = True):
    """Per seed, one aging evolution and, at equal cost (as many spaces scored), one random
    search (unless ``random_baseline`` is off); returns (evolution histories, {label: space}
    of each search's best)."""
    hs = tables.hyperspace
    histories, best = [], {}
    for s in seeds:
        scorer = QTScorer(tables, other_ms, qt, seed=s)
        res = aging_evolution(hs, scorer, replace(evo, seed=s))
        histories.append(res.history.assign(seed=s))
        best[evolved_label(s)] = res.best
        if random_baseline:
            best[f"random search (seed {s})"] = random_search(hs, scorer, len(res.history),
                                                              s)[0]
    return pd.concat(histories, ignore_index=True), best


def score_all(tables, other_ms: dict, qt: QTConfig, evolved: dict[str, SpaceChoice],
              noise_seeds: Sequence[int]) -> pd.DataFrame:
    """Q-T mean and std over ``noise_seeds`` of the searched (evolved, random), hand-designed,
    uniform and published spaces, one row each (a space listed under two names is scored once
    per name)."""
    hs = tables.hyperspace
    spaces = {**{k: ("evolved" if k.startswith("evolved") else "random", v)
                 for k, v in evolved.items()},
              **{k: ("hand-designed", v) for k, v in hand_designed(hs).items()},
              **{f"uniform {sp.encode()}": ("uniform", sp) for sp in uniform_spaces(hs)},
              **{k: ("published", v) for k, v in mapped_published(hs).items()}}
    scorers = [QTScorer(tables, other_ms, qt, seed=1000 + s) for s in noise_seeds]
    rows = []
    for label, (kind, sp) in spaces.items():
        vals = [sc(sp) for sc in scorers]
        rows.append({"space": label, "kind": kind, "encoding": sp.encode(),
                     "qt_mean": float(np.mean(vals)), "qt_std": float(np.std(vals, ddof=1))
                     if len(vals) > 1 else 0.0, "seeds": len(vals)})
    return (pd.DataFrame(rows).sort_values("qt_mean", ascending=False, kind="stable")
            .reset_index(drop=True))
