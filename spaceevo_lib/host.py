"""Facts about the machine a run happens on, recorded beside every measurement.

The paper's devices are an Intel CPU with VNNI (onnxruntime) and a Pixel 4 (TFLite). Whether
this host has VNNI decides whether its INT8 numbers are comparable with the paper's CPU ones.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model, logical cores, ISA flags relevant to INT8 and whether VNNI is present."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    int8_flags = sorted(f for f in flags if "vnni" in f or f.startswith(("avx512", "avx2"))
                        or f in ("asimddp", "i8mm"))
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "machine": platform.machine(),
        "int8_flags": int8_flags,
        "vnni": any(f in flags for f in VNNI_FLAGS),
    }


def memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def gpu_available() -> bool:
    try:
        import torch  # heavy: torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# ----------------------------------------------------------------------------- idle check

_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _cpu_times(stat: Path) -> dict[str, int]:
    first = stat.read_text().splitlines()[0].split()
    return dict(zip(_CPU_FIELDS, (int(v) for v in first[1:1 + len(_CPU_FIELDS)])))


def _process_ticks(proc: Path) -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system clock ticks) of every readable process."""
    out: dict[int, tuple[str, int]] = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(d.name)] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return out


def cpu_activity(seconds: float = 0.2, proc: Path = Path("/proc")) -> dict:
    """What else the CPU does while the caller sleeps ``seconds``: the idle check before timing.

    Returns ``busy_cores`` (cores' worth of non-idle time on the whole machine, which includes
    this process's own background threads: the caller's main thread sleeps meanwhile),
    ``steal_cores`` (time the hypervisor gave to other virtual machines), ``load1`` (the
    1-minute load average) and ``top``: up to five processes that used the most CPU, as
    ``{"pid", "name", "cores"}``. On a system without ``/proc`` every number is NaN.
    """
    stat = proc / "stat"
    if not stat.is_file():
        return {"busy_cores": math.nan, "steal_cores": math.nan, "load1": math.nan, "top": []}
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    a, pa, t0 = _cpu_times(stat), _process_ticks(proc), time.perf_counter()
    time.sleep(seconds)
    b, pb, dt = _cpu_times(stat), _process_ticks(proc), time.perf_counter() - t0
    delta = {k: b[k] - a[k] for k in _CPU_FIELDS}
    busy = sum(delta[k] for k in ("user", "nice", "system", "irq", "softirq"))
    top = sorted(({"pid": pid, "name": name, "cores": (ticks - pa[pid][1]) / hz / dt}
                  for pid, (name, ticks) in pb.items() if pid in pa and ticks > pa[pid][1]),
                 key=lambda r: -r["cores"])[:5]
    try:
        load1 = float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        load1 = math.nan
    return {"busy_cores": busy / hz / dt, "steal_cores": delta["steal"] / hz / dt,
            "load1": load1, "top": top}
