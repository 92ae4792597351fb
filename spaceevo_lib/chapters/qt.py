"""The chapter "The Q-T score, replayed": the paper's space search on its published lookup tables.

One call per hyperspace: aging evolution over candidate spaces scored by the Q-T score, then
the published spaces, every uniform space and the best space found re-scored over several
seeds, so that every ranking carries its sampling noise. Results are cached in the chapter's
run folder: a rerun with the same settings recomputes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..search.evolution import EvolutionConfig, aging_evolution, describe_spaces, uniform_spaces
from ..search.lut import StageTables
from ..search.qt import QTConfig, QTScorer, paper_other_latency
from ..space import SpaceChoice, published_spaces
from ..store import record


@dataclass(frozen=True)
class QTPlan:
    """What the chapter's parameters decide: the Q-T score's and the evolution's settings,
    the hyperspaces replayed and the seeds of the error bars."""

    qt: QTConfig
    evolution: EvolutionConfig
    hyperspaces: list[str]
    seeds: list[int]


#: The released code's hard-coded initial blocks (``replay_quirk``).
QUIRK_INIT_BLOCKS = (1, 2, 1, 2, 2, 2)


def plan(cfg) -> QTPlan:
    """The chapter's plan from its validated parameters."""
    return QTPlan(
        qt=QTConfig(n_samples=cfg.n_samples, t=cfg.latency_t, a=cfg.latency_a),
        evolution=EvolutionConfig(
            population=cfg.population, sample_size=cfg.sample_size,
            max_evaluated=cfg.max_evaluated, seed=cfg.seed,
            hard_coded_init_blocks=QUIRK_INIT_BLOCKS if cfg.replay_quirk else None),
        hyperspaces=cfg.hyperspace.split(","),
        seeds=list(range(cfg.seed, cfg.seed + cfg.noise_seeds)))


def glue_values(cfg, the_plan: QTPlan) -> dict:
    """The settings the chapter's text cites."""
    return {"qt_a": cfg.latency_a, "qt_t": cfg.latency_t, "qt_n": f"{cfg.n_samples:,}",
            "n_seeds": len(the_plan.seeds)}


#: The columns of the score tables shown (uniform spaces are in the figure only).
SCORE_COLUMNS = ["space", "kind", "encoding", "qt_mean", "qt_std", "rank_in_search",
                 "evaluated"]


@dataclass(frozen=True, eq=False)
class Replay:
    """Everything the chapter shows for one hyperspace."""

    hyperspace: str
    history: pd.DataFrame  # every evaluated space in order (EvolutionResult.history)
    scores: pd.DataFrame  # published, uniform and best spaces: Q-T mean/std over seeds, rank
    top: pd.DataFrame  # the best spaces found, decoded per stage
    other_latency: pd.DataFrame  # the estimate of the non-searched parts, per resolution


def score_spaces(scorer_for_seed, spaces: Mapping[str, SpaceChoice], seeds: Sequence[int],
                 kinds: Mapping[str, str]) -> pd.DataFrame:
    """Q-T of each space for each seed: mean, std, and the per-seed values."""
    rows = []
    for label, sp in spaces.items():
        vals = [scorer_for_seed(s)(sp) for s in seeds]
        rows.append({"space": label, "kind": kinds[label], "encoding": sp.encode(),
                     "qt_mean": float(np.mean(vals)), "qt_std": float(np.std(vals)),
                     **{f"qt_seed{s}": v for s, v in zip(seeds, vals)}})
    return pd.DataFrame(rows)


def replay_hyperspace(hyperspace: str, qt: QTConfig, evo: EvolutionConfig,
                      noise_seeds: Sequence[int], run=None) -> Replay:
    """Aging evolution over ``hyperspace``'s spaces, then published / uniform / best re-scored.

    ``run``: a :class:`spaceevo_lib.store.Run`; when given, the history and the score table are
    cached there under keys made of every setting.
    """
    tables = StageTables(hyperspace).load_all()
    other = paper_other_latency(hyperspace)

    def scorer(seed: int) -> QTScorer:
        return QTScorer(tables, other, qt, seed=seed)

    key = {"hyperspace": hyperspace, "qt": asdict(qt), "evo": asdict(evo),
           "seeds": list(noise_seeds), "other": other.to_frame().round(6).to_dict()}

    def evolve() -> pd.DataFrame:
        return aging_evolution(hyperspace, scorer(evo.seed), evo).history

    history = run.cached(f"history_{hyperspace}", evolve, key) if run else evolve()
    order = history.sort_values(["score", "order"], ascending=[False, True], kind="stable")
    best = SpaceChoice.decode(order.encoding.iloc[0])

    def rescore() -> pd.DataFrame:
        spaces, kinds = {}, {}
        for label, sp in published_spaces().items():
            if sp.hyperspace == hyperspace:
                spaces[label], kinds[label] = sp, "published"
        for sp in uniform_spaces(hyperspace):
            spaces[f"uniform {sp.encode()}"], kinds[f"uniform {sp.encode()}"] = sp, "uniform"
        spaces["best found"], kinds["best found"] = best, "best found"
        df = score_spaces(scorer, spaces, noise_seeds, kinds)
        hist = history.score.to_numpy()
        # rank among the evaluated spaces, by the score the evolution saw (its own seed)
        own = [scorer(evo.seed)(sp) for sp in spaces.values()]
        df["rank_in_search"] = [1 + int(np.count_nonzero(hist > s)) for s in own]
        df["evaluated"] = len(hist)
        return df.sort_values("qt_mean", ascending=False).reset_index(drop=True)

    scores = run.cached(f"scores_{hyperspace}", rescore, key) if run else rescore()
    top = describe_spaces(order.encoding.head(10), order.score.head(10))
    return Replay(hyperspace, history, scores, top, other.to_frame().reset_index())


def top_tier_samples(hyperspace: str, encodings: Mapping[str, str], qt: QTConfig,
                     seed: int = 0, per_space: int = 500) -> pd.DataFrame:
    """For each space, the ``per_space`` lowest-loss sampled subnets that meet the tightest
    constraint: the shape of the paper's Figure 1 (latency vs loss of top-tier subnets)."""
    tables = StageTables(hyperspace).load_all()
    scorer = QTScorer(tables, paper_other_latency(hyperspace), qt, seed=seed)
    T = min(qt.constraints(hyperspace))
    parts = []
    for label, enc in encodings.items():
        s = scorer.result(enc, keep_samples=True).samples
        ok = np.flatnonzero(s.latency_ms <= T)
        pick = ok[np.argsort(s.loss[ok], kind="stable")[:per_space]]
        parts.append(pd.DataFrame({"space": label, "loss": s.loss[pick],
                                   "latency_ms": s.latency_ms[pick],
                                   "resolution": s.resolution[pick]}))
    return pd.concat(parts, ignore_index=True)


def avoids_se_hswish_early(encoding: str, early_stages: int = 4) -> bool:
    """Whether an onnxw space keeps SE + Hardswish (MBv3Res) out of stages 1..``early_stages``
    (the paper's qualitative VNNI finding, paper-notes §6)."""
    sp = SpaceChoice.decode(encoding)
    stages = sp.spec.searchable_stages[:early_stages]
    return all(sp.block(s).code != "MBv3Res" for s in stages)


def figure1_spaces(scores: pd.DataFrame) -> dict[str, str]:
    """The spaces Figure 1's analogue compares: published ones, the best found, and the best
    and worst uniform (hand-designed) spaces."""
    uni = scores[scores.kind == "uniform"].sort_values("qt_mean", ascending=False)
    picks = scores[scores.kind != "uniform"]
    out = {r.space: r.encoding for r in picks.itertuples()}
    out[f"best uniform {uni.encoding.iloc[0]}"] = uni.encoding.iloc[0]
    out[f"worst uniform {uni.encoding.iloc[-1]}"] = uni.encoding.iloc[-1]
    return out


def replay_verdicts(replays: Mapping[str, Replay]) -> pd.DataFrame:
    """Whether the replay recovers the paper's choices, decided by rules on this run's numbers:

    - *near the top*: a published space's mean Q-T is within 2 % of the best found (yes),
      within 5 % (partly), else no;
    - *beats hand-designed spaces*: the best published space's mean exceeds the best uniform
      space's mean by more than both standard deviations (yes), exceeds it (partly), else no;
    - *onnxw avoids SE + Hardswish early*: the share of the 10 best spaces found without MBv3Res
      in stages 1-4 is >= 80 % (yes), >= 50 % (partly), else no.
    """
    rows = []
    for hs, r in replays.items():
        s = r.scores
        best = float(s.loc[s.kind == "best found", "qt_mean"].iloc[0])
        for p in s[s.kind == "published"].itertuples():
            gap = 1 - p.qt_mean / best
            holds = "yes" if gap <= 0.02 else "partly" if gap <= 0.05 else "no"
            rows.append((hs, f"{p.space} is at or near the top of {hs}", holds,
                         f"Q-T {p.qt_mean:.4f} +- {p.qt_std:.4f} vs best found {best:.4f} "
                         f"({gap:+.1%} below); rank {p.rank_in_search} of {p.evaluated}"))
        pub = s[s.kind == "published"].iloc[0]
        uni = s[s.kind == "uniform"].iloc[0]
        margin = pub.qt_mean - uni.qt_mean
        holds = ("yes" if margin > pub.qt_std + uni.qt_std else "partly" if margin > 0 else "no")
        rows.append((hs, f"the best published space beats every uniform space of {hs}", holds,
                     f"{pub.space} {pub.qt_mean:.4f} +- {pub.qt_std:.4f} vs best uniform "
                     f"{uni.encoding} {uni.qt_mean:.4f} +- {uni.qt_std:.4f}"))
        if hs == "onnxw":
            top = r.top.encoding.head(10)
            share = float(np.mean([avoids_se_hswish_early(e) for e in top]))
            holds = "yes" if share >= 0.8 else "partly" if share >= 0.5 else "no"
            rows.append((hs, "the VNNI spaces keep SE + Hardswish out of stages 1-4", holds,
                         f"{share:.0%} of the 10 best spaces found have no MBv3Res in "
                         f"stages 1-4; best found: {r.top.encoding.iloc[0]}"))
    return pd.DataFrame(rows, columns=["hyperspace", "claim", "holds", "evidence"])


def replay_summary(replays: Mapping[str, Replay]) -> list[dict]:
    """Headline numbers: Q-T mean and std of the published and uniform spaces, their rank in
    the search, and the best Q-T found, per hyperspace (the paper reports no Q-T values)."""
    out = []
    for hs, r in replays.items():
        for p in r.scores.itertuples():
            if p.kind == "best found":
                continue
            out.append(record(f"qt/{hs}/{p.encoding}", round(p.qt_mean, 5), "Q-T"))
            out.append(record(f"qt_std/{hs}/{p.encoding}", round(p.qt_std, 5), "Q-T"))
            if p.kind == "published":
                out.append(record(f"rank/{hs}/{p.encoding}", int(p.rank_in_search), "rank"))
        best = r.scores[r.scores.kind == "best found"].iloc[0]
        out.append(record(f"qt_best/{hs}", round(best.qt_mean, 5), "Q-T"))
        out.append(record(f"qt_best_space/{hs}", best.encoding, "encoding"))
        out.append(record(f"evaluated/{hs}", int(best.evaluated), "spaces"))
    return out
