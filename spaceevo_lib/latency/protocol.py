"""How one FP32/INT8 latency pair is timed: warm-up, interleaved rounds, spread checks.

Timings on the study's shared 2-vCPU machines drift by about +-20 % between runs
(toolchain-notes), while the quantity of interest is the INT8 speedup. FP32 and INT8 are
therefore timed in alternating rounds, so slow phases of the machine hit both, and the speedup
is the median of per-round ratios (a paired estimate). A measurement whose spread is above the
protocol's threshold is retried and, if it stays noisy, is kept and flagged, never dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Protocol as TypingProtocol

import numpy as np

log = logging.getLogger(__name__)


class Runner(TypingProtocol):
    """Anything with an input already set and an ``invoke()`` that runs the model once."""

    def invoke(self) -> None: ...


@dataclass(frozen=True)
class Protocol:
    """Benchmark settings; the defaults are this study's protocol (see paper-notes 9.4, 9.5)."""

    threads: int = 1  # intra-op threads: the paper uses 1 on both devices
    warmup: int = 10  # untimed runs per model before the first round
    runs: int = 30  # timed runs per precision per round
    rounds: int = 5  # rounds; FP32/INT8 order alternates each round
    max_rel_iqr: float = 0.10  # IQR / median above which a measurement counts as noisy
    retries: int = 2  # extra attempts for a noisy measurement (the least noisy one is kept)
    budget_ms: float = 0.0  # if > 0: runs per round are sized to about this much time per
    #                         precision (at least min_runs, at most runs): microsecond kernels
    #                         get many runs, slow models few; 0 = always exactly `runs`
    min_runs: int = 3  # lower bound on runs per round when budget_ms sizes them

    def __post_init__(self) -> None:
        for name in ("threads", "runs", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"Protocol.{name} must be >= 1; got {getattr(self, name)}")
        if self.min_runs < 1 or self.budget_ms < 0:
            raise ValueError("Protocol.min_runs must be >= 1 and budget_ms >= 0")
        for name in ("warmup", "retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"Protocol.{name} must be >= 0; got {getattr(self, name)}")
        if not self.max_rel_iqr > 0:
            raise ValueError(f"Protocol.max_rel_iqr must be > 0; got {self.max_rel_iqr}")

    def as_dict(self) -> dict:
        return asdict(self)


def time_runner(runner: Runner, n: int) -> np.ndarray:
    """Wall time of ``n`` consecutive ``runner.invoke()`` calls, in ms each."""
    out = np.empty(n, dtype=np.float64)
    clock, invoke = time.perf_counter_ns, runner.invoke
    for i in range(n):
        t0 = clock()
        invoke()
        out[i] = clock() - t0
    return out / 1e6


def _iqr(x: np.ndarray) -> float:
    q1, q3 = np.percentile(x, [25, 75])
    return float(q3 - q1)


def _attempt(fp32: Runner, int8: Runner, p: Protocol, runs: int) -> dict:
    times: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
    ratios = []
    for r in range(p.rounds):
        order = ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")
        for name in order:
            times[name].append(time_runner(fp32 if name == "fp32" else int8, runs))
        ratios.append(np.median(times["fp32"][-1]) / np.median(times["int8"][-1]))
    res: dict = {}
    for name in ("fp32", "int8"):
        allt = np.concatenate(times[name])
        med = float(np.median(allt))
        res[f"{name}_median_ms"] = med
        res[f"{name}_min_ms"] = float(np.min(allt))
        res[f"{name}_iqr_ms"] = _iqr(allt)
        res[f"{name}_rel_iqr"] = res[f"{name}_iqr_ms"] / med if med > 0 else float("inf")
    ratios_a = np.asarray(ratios)
    res["speedup"] = float(np.median(ratios_a))
    res["speedup_iqr"] = _iqr(ratios_a)
    return res


def measure_pair(fp32_runner: Runner, int8_runner: Runner, protocol: Protocol = Protocol()
                 ) -> dict:
    """Time an FP32 and an INT8 runner (inputs already set) under ``protocol``.

    Returns ``fp32_median_ms``, ``fp32_min_ms``, ``fp32_iqr_ms``, ``fp32_rel_iqr`` (same for
    ``int8``) over all
    timed runs; ``speedup`` = median over rounds of FP32 round median / INT8 round median, and
    ``speedup_iqr`` over rounds; ``attempts`` (1 + retries used), ``noisy`` (the kept
    attempt still has a rel. IQR above ``max_rel_iqr``) and ``runs`` (timed runs per precision
    per round actually used: between ``min_runs`` and ``runs`` when ``budget_ms`` sizes them).
    """
    p = protocol
    warm = [time_runner(r, max(p.warmup, 1)) for r in (fp32_runner, int8_runner)]
    runs = p.runs
    if p.budget_ms > 0:  # size rounds to about budget_ms per precision
        per_run = max(float(np.median(w[len(w) // 2:])) for w in warm)
        runs = int(min(p.runs, max(p.min_runs, np.ceil(p.budget_ms / max(per_run, 1e-6)))))
    best: dict | None = None
    attempts = 0
    for attempts in range(1, p.retries + 2):
        res = _attempt(fp32_runner, int8_runner, p, runs)
        res["spread"] = max(res["fp32_rel_iqr"], res["int8_rel_iqr"])
        if best is None or res["spread"] < best["spread"]:
            best = res
        if res["spread"] <= p.max_rel_iqr:
            break
        log.info("noisy attempt %d: rel. IQR %.3f > %.3f", attempts, res["spread"],
                 p.max_rel_iqr)
    assert best is not None
    spread = best.pop("spread")
    best["attempts"] = attempts
    best["runs"] = runs
    best["noisy"] = bool(spread > p.max_rel_iqr)
    if best["noisy"]:
        log.warning("measurement still noisy after %d attempts (rel. IQR %.3f > %.3f); "
                    "kept and flagged", attempts, spread, p.max_rel_iqr)
    return best
