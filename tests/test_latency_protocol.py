"""The visit protocol: interleaving, warm-up, statistics, split halves, idle check, versions."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from spaceevo_lib.host import cpu_activity
from spaceevo_lib.latency import protocol as P
from spaceevo_lib.latency.protocol import (PROTOCOL_VERSION, Protocol, ProtocolMismatch,
                                           check_protocol_version, latency_column,
                                           measure_pair, summarize_visits, time_networks)

QUIET = {"busy_cores": 0.0, "steal_cores": 0.0, "load1": 0.0, "top": []}


def quiet(_seconds: float) -> dict:
    return dict(QUIET)


class BusyRunner:
    """A fake runner whose ``invoke`` busy-waits a fixed time (deterministic, no sleep)."""

    def __init__(self, *ms: float, log: list | None = None, name: str = ""):
        self.ns, self.i, self.log, self.name = [int(m * 1e6) for m in ms], 0, log, name

    def invoke(self) -> None:
        wait = self.ns[self.i % len(self.ns)]
        self.i += 1
        if self.log is not None:
            self.log.append(self.name)
        t0 = time.perf_counter_ns()
        while time.perf_counter_ns() - t0 < wait:
            pass


FAST = Protocol(visits=4, warmup=1, warmup_ms=0, budget_ms=0, runs=3, min_runs=1,
                idle_check_s=0)


def test_measure_pair_speedup_is_the_fp32_int8_ratio():
    res = measure_pair(BusyRunner(2.0), BusyRunner(0.5), FAST)
    assert res["speedup"] == pytest.approx(4.0, rel=0.1)
    assert res["fp32_median_ms"] == pytest.approx(2.0, rel=0.1)
    assert res["int8_min_ms"] == pytest.approx(0.5, rel=0.2)
    assert res["fp32_runs"] == 3 and not res["busy"]


def test_budget_sizes_the_runs_of_each_precision():
    p = Protocol(visits=2, warmup=1, warmup_ms=0, runs=20, budget_ms=10.0, min_runs=3,
                 idle_check_s=0)
    slow = measure_pair(BusyRunner(4.0), BusyRunner(0.1), p)
    assert slow["fp32_runs"] == 3  # ceil(10 ms / 4 ms) = 3 runs per visit
    assert slow["int8_runs"] == 20  # a fast model gets the most runs allowed


def test_warm_up_runs_for_at_least_its_time():
    r = BusyRunner(1.0)
    assert P.warm_up(r, runs=1, ms=8.0) >= 8
    assert P.warm_up(r, runs=5, ms=0.0) == 5


def test_interleaved_visits_take_every_network_once_per_round_in_fresh_orders():
    log: list = []
    pairs = [(BusyRunner(0.01, log=log, name=f"{i}f"), BusyRunner(0.01, log=log, name=f"{i}q"))
             for i in range(5)]
    p = Protocol(visits=4, warmup=0, warmup_ms=0, budget_ms=0, runs=1, min_runs=1,
                 idle_check_s=0.01)
    visits, checks = time_networks(pairs, p, seed=3, activity=quiet)
    assert len(checks) == 4  # one idle check before every round
    order = visits[visits.precision == "fp32"].sort_values("t_s")
    rounds = [list(g.network) for _, g in order.groupby("visit")]
    assert all(sorted(r) == list(range(5)) for r in rounds)  # each network once per round
    assert len({tuple(r) for r in rounds}) > 1  # a fresh random order per round
    # consecutive (the earlier protocol): all visits of one network, then the next
    visits, _ = time_networks(pairs, replace(p, schedule="consecutive"), activity=quiet)
    seq = list(visits[visits.precision == "fp32"].sort_values("t_s").network)
    assert seq == sorted(seq)


def test_visit_order_is_abba_so_each_half_has_both_orders():
    flips = [P._flip(v) for v in range(8)]
    assert flips == [False, True, True, False, False, True, True, False]
    assert sum(flips[0::2]) == sum(flips[1::2]) == 2


def _visits(mins: dict[int, list[float]], medians_scale: float = 1.1) -> pd.DataFrame:
    rows = []
    for net, values in mins.items():
        for v, m in enumerate(values):
            for prec, f in (("fp32", 2.0), ("int8", 1.0)):
                rows.append({"network": net, "visit": v, "round": v, "precision": prec,
                             "t_s": float(v), "runs": 5, "min_ms": m * f, "q1_ms": m * f,
                             "median_ms": m * f * medians_scale, "q3_ms": m * f * 1.2})
    return pd.DataFrame(rows)


def test_statistics_and_split_halves_on_synthetic_visits():
    # network 0 repeats; network 1 had a slow phase during its odd visits
    vis = _visits({0: [1.0, 1.02, 1.01, 1.0], 1: [1.0, 1.5, 1.02, 1.4]})
    s = summarize_visits(vis, pd.DataFrame(), Protocol(max_rel_spread=0.10))
    a, b = s.iloc[0], s.iloc[1]
    assert a.fp32_min_ms == pytest.approx(2.0) and a.int8_min_ms == pytest.approx(1.0)
    assert a.int8_median_of_min_ms == pytest.approx(1.005)
    assert a.int8_median_ms == pytest.approx(1.005 * 1.1)
    assert b.int8_min_a_ms == pytest.approx(1.0) and b.int8_min_b_ms == pytest.approx(1.4)
    assert a.speedup == pytest.approx(2.0)
    assert not a.noisy and b.noisy and b.half_spread == pytest.approx(0.4 / 1.4)
    assert np.isnan(summarize_visits(_visits({0: [1.0]}), pd.DataFrame()).iloc[0]
                    .int8_min_b_ms)  # one visit: no second half


def test_a_busy_cpu_is_flagged_and_warned_about(caplog):
    def busy(_s):
        return {**QUIET, "busy_cores": 0.9, "top": [{"pid": 42, "name": "converter",
                                                      "cores": 0.9}]}
    p = Protocol(visits=2, warmup=0, warmup_ms=0, budget_ms=0, runs=2, min_runs=1,
                 idle_check_s=0.01)
    with caplog.at_level(logging.WARNING, logger="spaceevo_lib.latency.protocol"):
        visits, checks = time_networks([(BusyRunner(0.01), BusyRunner(0.01))], p,
                                       activity=busy)
    s = summarize_visits(visits, checks, p).iloc[0]
    assert s.busy and s.busy_cores == pytest.approx(0.9)
    assert "converter (pid 42" in caplog.text and "flagged busy" in caplog.text
    quiet_s = summarize_visits(*time_networks([(BusyRunner(0.01), BusyRunner(0.01))], p,
                                              activity=quiet), p).iloc[0]
    assert not quiet_s.busy


def test_cpu_activity_sees_another_process():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        a = cpu_activity(0.5)
    finally:
        proc.kill()
        proc.wait()
    assert a["busy_cores"] > 0.5
    assert any(t["pid"] == proc.pid and t["cores"] > 0.5 for t in a["top"])


def test_protocol_rejects_nonsense():
    with pytest.raises(ValueError, match="visits"):
        Protocol(visits=0)
    with pytest.raises(ValueError, match="min_runs"):
        Protocol(min_runs=5, runs=3)
    with pytest.raises(ValueError, match="schedule"):
        Protocol(schedule="random")
    with pytest.raises(ValueError, match="warmup_ms"):
        Protocol(warmup_ms=-1)
    assert Protocol().as_dict()["version"] == PROTOCOL_VERSION


def test_tables_of_another_protocol_version_are_refused():
    check_protocol_version(pd.DataFrame({"protocol_version": [PROTOCOL_VERSION]}), "t")
    for old in (pd.DataFrame({"fp32_min_ms": [1.0]}), pd.DataFrame({"protocol_version": [1]})):
        with pytest.raises(ProtocolMismatch, match="version 1; this library measures"):
            check_protocol_version(old, "table 'units'")


def test_latency_columns_are_named_and_checked():
    assert latency_column("int8", "median_of_min", "a") == "int8_median_of_min_a_ms"
    with pytest.raises(ValueError, match="statistic"):
        latency_column("int8", "norm")
    with pytest.raises(ValueError, match="precision"):
        latency_column("fp16", "min")
