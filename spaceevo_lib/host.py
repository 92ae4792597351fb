"""Facts about the machine a run happens on, recorded beside every measurement.

The paper's devices are an Intel CPU with VNNI (onnxruntime) and a Pixel 4 (TFLite). Whether
this host has VNNI decides whether its INT8 numbers are comparable with the paper's CPU ones.
"""

from __future__ import annotations

import os
import platform
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
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
