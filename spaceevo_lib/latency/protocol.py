"""How networks are timed: short visits, interleaved across networks, on an idle CPU.

A latency that repeats needs more than many runs in a row. On the study's 2-core virtual
machines the speed of the machine changes in phases of seconds to minutes, so a network timed
once, in one block of runs, is measured in whatever phase it happened to fall into; timed
again minutes later it can differ by 10-20 % (the predictor chapter shows it). This protocol
therefore times every network in several short **visits** spread over the whole measurement
period and interleaved with the other networks of the batch (a fresh random order per round of
visits), and keeps per-visit statistics:

* each visit runs, for FP32 and INT8 back to back (in ABBA order over visits), untimed
  warm-up runs for at least ``warmup_ms`` (after any pause, even the idle check's, this machine
  runs 30-80 % slower for about 10 ms: the predictor chapter shows it with :func:`idle_ramp`)
  and then timed runs for about ``budget_ms`` (at least
  ``min_runs``, at most ``runs`` timed runs), so that the pair shares the machine's phase;
* the candidate statistics (:data:`STATS`) are computed over all visits and, separately, over
  the even and the odd visits: the two halves are two independent measurements of the same
  network spread over the same period, and how well they agree is the measurement's
  repeatability, for every network (no separate retest);
* before every round of visits the CPU is checked for other work (:func:`~spaceevo_lib.host.
  cpu_activity`); records timed while something else was busy are flagged ``busy``.

``schedule="consecutive"`` times all visits of one network in a row, one network after the
other: the study's earlier protocol (kept to show, in the same run, why it did not repeat).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence
from typing import Protocol as TypingProtocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..host import cpu_activity

log = logging.getLogger(__name__)

#: Bumped whenever what a record's numbers mean changes; stored with every record, and a table
#: measured under another version is refused (:func:`check_protocol_version`).
PROTOCOL_VERSION = 2
#: Statistics over a network's visits: ``min`` = the fastest run of any visit; ``median_of_min``
#: = the median over visits of each visit's fastest run; ``median`` = the median over visits of
#: each visit's median run.
STATS = ("min", "median_of_min", "median")
PRECISIONS = ("fp32", "int8")
SCHEDULES = ("interleaved", "consecutive")


class Runner(TypingProtocol):
    """Anything with an input already set and an ``invoke()`` that runs the model once."""

    def invoke(self) -> None: ...


class ProtocolMismatch(ValueError):
    """A stored measurement table was made under another protocol version."""


@dataclass(frozen=True)
class Protocol:
    """Timing settings; the defaults are this study's protocol (version :data:`PROTOCOL_VERSION`).

    The paper's protocol (100 warm-up + 100 timed runs, mean; paper-notes 9.4) is one visit of
    fixed length: ``Protocol(visits=1, warmup=100, warmup_ms=0, runs=100, min_runs=100, budget_ms=0)``.
    """

    threads: int = 1  # intra-op threads: the paper uses 1 on both devices
    visits: int = 8  # visits per network, spread over the batch's measurement period
    warmup: int = 2  # untimed runs per precision at the start of every visit, at least ...
    warmup_ms: float = 15.0  # ... and for at least this long: after any pause this CPU runs
    #                          slow for ~10 ms (the chapter measures it), whatever the count
    budget_ms: float = 20.0  # timed runs per precision per visit sized to about this much time
    #                          (0 = always exactly `runs`)
    min_runs: int = 3  # at least this many timed runs per precision per visit
    runs: int = 1000  # at most this many timed runs per precision per visit
    schedule: str = "interleaved"  # or "consecutive": each network's visits in a row (earlier)
    group: int = 32  # networks loaded and visited together, at most ...
    group_mb: float = 1500.0  # ... and at most this many MB of model files (runtimes hold a
    #                           few times their files in memory)
    max_rel_spread: float = 0.10  # a record whose two halves disagree by more is flagged noisy
    max_busy_cores: float = 0.15  # other work above this many cores marks the CPU busy
    idle_check_s: float = 0.2  # length of each idle check before a round (0 = no checks)

    def __post_init__(self) -> None:
        for name in ("threads", "visits", "runs", "min_runs", "group", "group_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"Protocol.{name} must be >= 1; got {getattr(self, name)}")
        for name in ("warmup", "warmup_ms", "budget_ms", "idle_check_s", "max_busy_cores"):
            if getattr(self, name) < 0:
                raise ValueError(f"Protocol.{name} must be >= 0; got {getattr(self, name)}")
        if self.min_runs > self.runs:
            raise ValueError(f"Protocol.min_runs ({self.min_runs}) must be <= runs ({self.runs})")
        if not self.max_rel_spread > 0:
            raise ValueError(f"Protocol.max_rel_spread must be > 0; got {self.max_rel_spread}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Protocol.schedule must be one of {SCHEDULES}; got "
                             f"{self.schedule!r}")

    def as_dict(self) -> dict:
        """What a record's numbers depend on (its cache key), with the protocol version; the
        grouping settings bound memory only and are left out."""
        d = {**asdict(self), "version": PROTOCOL_VERSION}
        for name in ("group", "group_mb"):
            d.pop(name)
        return d


def time_runner(runner: Runner, n: int) -> np.ndarray:
    """Wall time of ``n`` consecutive ``runner.invoke()`` calls, in ms each."""
    out = np.empty(n, dtype=np.float64)
    clock, invoke = time.perf_counter_ns, runner.invoke
    for i in range(n):
        t0 = clock()
        invoke()
        out[i] = clock() - t0
    return out / 1e6


def _runs_for(per_run_ms: float, p: Protocol) -> int:
    if p.budget_ms <= 0:
        return p.runs
    return int(min(p.runs, max(p.min_runs, np.ceil(p.budget_ms / max(per_run_ms, 1e-6)))))


def _flip(visit: int) -> bool:
    """INT8 first on visits 1, 2, 5, 6, ... (ABBA): each half (even / odd visits) has both
    orders equally often, so an order effect cannot masquerade as a difference of halves."""
    return ((visit + 1) // 2) % 2 == 1


def warm_up(runner: Runner, runs: int, ms: float, cap: int = 10_000) -> int:
    """Untimed runs: at least ``runs`` and at least ``ms`` milliseconds; returns how many."""
    n, t0, clock, invoke = 0, time.perf_counter(), time.perf_counter, runner.invoke
    while n < cap and (n < runs or (clock() - t0) * 1e3 < ms):
        invoke()
        n += 1
    return n


def idle_ramp(runner: Runner, pause_s: float = 0.2, runs: int = 40, repeats: int = 3):
    """Per-run times right after the CPU slept ``pause_s``: how long this machine takes to
    run at full speed again (the reason for :attr:`Protocol.warmup_ms`). One row per run:
    ``repeat``, ``run``, ``since_pause_ms`` (end of the run), ``ms``."""
    rows = []
    for rep in range(repeats):
        time.sleep(pause_s)
        t = time_runner(runner, runs)
        for i, (c, ms) in enumerate(zip(np.cumsum(t), t)):
            rows.append({"repeat": rep, "run": i, "since_pause_ms": float(c), "ms": float(ms)})
    return pd.DataFrame(rows)


def _visit(pair: Sequence[Runner], runs: list[int], p: Protocol, flip: bool,
           warmup: bool) -> list[dict]:
    """One visit: per precision (order flipped in ABBA pattern) a warm-up, then timed runs."""
    order = (1, 0) if flip else (0, 1)
    out = [None, None]
    for j in order:
        if warmup:
            warm_up(pair[j], p.warmup, p.warmup_ms)
        t = time_runner(pair[j], runs[j])
        q1, med, q3 = np.percentile(t, [25, 50, 75])
        out[j] = {"runs": len(t), "min_ms": float(t.min()), "q1_ms": float(q1),
                  "median_ms": float(med), "q3_ms": float(q3)}
    return out  # type: ignore[return-value]


def time_networks(pairs: Sequence[Sequence[Runner]], protocol: Protocol = Protocol(),
                  seed: int = 0, progress: bool = False,
                  activity: Callable[[float], dict] | None = None):
    """Time FP32/INT8 runner pairs (inputs set) by visits; returns ``(visits, checks)``.

    ``visits``: one row per (network, visit, precision) with ``runs``, ``min_ms``, ``q1_ms``,
    ``median_ms``, ``q3_ms``, the visit's position ``round`` and its start ``t_s`` (seconds from
    the first visit). ``checks``: one row per idle check (``round``, ``busy_cores``,
    ``steal_cores``, ``top``: the busiest other processes). ``activity`` replaces
    :func:`spaceevo_lib.host.cpu_activity` (tests).
    """
    p = protocol
    activity = activity or cpu_activity
    n = len(pairs)
    rng = np.random.default_rng(seed)
    # runs per visit, fixed per network from a first untimed probe (the first visit's warm-up)
    runs = []
    for pair in pairs:
        per = []
        for r in pair:
            warm_up(r, p.warmup, p.warmup_ms)
            per.append(float(np.median(time_runner(r, 3))))
        runs.append([_runs_for(t, p) for t in per])
    rows, checks = [], []
    t0 = time.perf_counter()

    def check(rnd: int) -> None:
        if p.idle_check_s > 0:
            a = activity(p.idle_check_s)
            checks.append({"round": rnd, **a})
            if a["busy_cores"] > p.max_busy_cores:
                top = ", ".join(f"{t['name']} (pid {t['pid']}, {t['cores']:.2f} cores)"
                                for t in a.get("top", [])[:3]) or "unknown processes"
                log.warning("CPU not idle before timing round %d: %.2f cores busy with other "
                            "work (%s); these latencies are flagged busy and may be slow",
                            rnd, a["busy_cores"], top)

    if p.schedule == "interleaved":
        plan = [(v, int(i)) for v in range(p.visits) for i in rng.permutation(n)]
    else:
        plan = [(v, i) for i in range(n) for v in range(p.visits)]
    bar = tqdm(total=len(plan), desc="timing", unit="visit", disable=not progress)
    for pos, (v, i) in enumerate(plan):
        rnd = v if p.schedule == "interleaved" else i
        if (p.schedule == "interleaved" and pos % n == 0) or (
                p.schedule == "consecutive" and v == 0):
            check(rnd)
        warm = p.schedule == "interleaved" or v == 0
        t_s = time.perf_counter() - t0
        res = _visit(pairs[i], runs[i], p, flip=_flip(v), warmup=warm)
        for prec, r in zip(PRECISIONS, res):
            rows.append({"network": i, "visit": v, "round": rnd, "precision": prec,
                         "t_s": t_s, **r})
        bar.update()
    bar.close()
    return pd.DataFrame(rows), pd.DataFrame(checks)


def _stats(g) -> dict[str, float]:
    mins, meds = g["min_ms"].to_numpy(), g["median_ms"].to_numpy()
    return {"min": float(mins.min()), "median_of_min": float(np.median(mins)),
            "median": float(np.median(meds))}


def summarize_visits(visits, checks, protocol: Protocol = Protocol()):
    """Per network: every statistic of :data:`STATS` over all visits and over each half (even /
    odd visits), spreads, the paired speedup, and the ``noisy`` / ``busy`` flags.

    Columns per precision ``p``: ``p_<stat>_ms``, ``p_<stat>_a_ms``, ``p_<stat>_b_ms`` (halves;
    NaN with one visit), ``p_iqr_ms`` / ``p_rel_iqr`` (median over visits of the visit's
    interquartile range, absolute / relative to its median), ``p_runs`` (timed runs per visit);
    then ``speedup`` (median over visits of FP32 visit median / INT8 visit median),
    ``speedup_iqr``, ``half_spread`` (largest |a / b - 1| of the ``min`` statistic), ``noisy``
    (``half_spread`` > ``max_rel_spread``), ``busy_cores`` (most other work seen by the idle
    checks before this network's visits) and ``busy``.
    """
    p = protocol
    busy_by_round = (checks.groupby("round")["busy_cores"].max().to_dict()
                     if len(checks) else {})
    out = []
    for i, g in visits.groupby("network", sort=True):
        row: dict = {"network": int(i)}
        spread = 0.0
        for prec in PRECISIONS:
            gp = g[g.precision == prec].sort_values("visit")
            halves = {"": gp, "_a": gp[gp.visit % 2 == 0], "_b": gp[gp.visit % 2 == 1]}
            for suffix, h in halves.items():
                st = _stats(h) if len(h) else dict.fromkeys(STATS, float("nan"))
                for s in STATS:
                    row[f"{prec}_{s}{suffix}_ms"] = st[s]
            iqr = (gp["q3_ms"] - gp["q1_ms"]).to_numpy()
            row[f"{prec}_iqr_ms"] = float(np.median(iqr))
            row[f"{prec}_rel_iqr"] = float(np.median(iqr / gp["median_ms"].to_numpy()))
            row[f"{prec}_runs"] = int(gp["runs"].iloc[0])
            a, b = row[f"{prec}_min_a_ms"], row[f"{prec}_min_b_ms"]
            if np.isfinite(a) and np.isfinite(b):
                spread = max(spread, abs(a / b - 1))
        f = g[g.precision == "fp32"].set_index("visit")["median_ms"]
        q = g[g.precision == "int8"].set_index("visit")["median_ms"]
        ratios = (f / q).to_numpy()
        row["speedup"] = float(np.median(ratios))
        row["speedup_iqr"] = float(np.subtract(*np.percentile(ratios, [75, 25])))
        row["half_spread"] = float(spread)
        row["noisy"] = bool(spread > p.max_rel_spread)
        rounds = g["round"].unique()
        seen = [busy_by_round[r] for r in rounds if r in busy_by_round]
        row["busy_cores"] = float(max(seen)) if seen else float("nan")
        row["busy"] = bool(seen and max(seen) > p.max_busy_cores)
        out.append(row)
    return pd.DataFrame(out)


def measure_pair(fp32_runner: Runner, int8_runner: Runner, protocol: Protocol = Protocol(),
                 seed: int = 0) -> dict:
    """Time one FP32/INT8 pair (inputs set) under ``protocol``: its visits run back to back
    (there is nothing to interleave with). Returns the :func:`summarize_visits` row."""
    visits, checks = time_networks([(fp32_runner, int8_runner)], protocol, seed)
    return summarize_visits(visits, checks, protocol).iloc[0].drop("network").to_dict()


def latency_column(precision: str, stat: str, half: str = "") -> str:
    """The record column of a statistic: ``<precision>_<stat>[_a|_b]_ms``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if stat not in STATS:
        raise ValueError(f"latency statistic must be one of {STATS}; got {stat!r}")
    if half not in ("", "a", "b"):
        raise ValueError(f"half must be '', 'a' or 'b'; got {half!r}")
    return f"{precision}_{stat}{'_' + half if half else ''}_ms"


def check_protocol_version(table, where: str) -> None:
    """Refuse a measurement table made under another protocol version (its numbers mean
    something else); ``where`` names the table for the message."""
    versions = (set(table["protocol_version"].dropna().astype(int))
                if "protocol_version" in table else {1})
    if versions and versions != {PROTOCOL_VERSION}:
        raise ProtocolMismatch(
            f"{where} was measured with timing protocol version "
            f"{', '.join(map(str, sorted(versions)))}; this library measures with version "
            f"{PROTOCOL_VERSION} (visits interleaved across networks), and the two do not mix. "
            f"Delete that file (or use another runs folder) to measure again.")
