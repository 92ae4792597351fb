"""Runtime memory release in converter processes: TensorFlow's and Keras' global graph state
grows with every conversion, so it is dropped every few conversions or when memory grows."""

from __future__ import annotations

import gc
import os
from pathlib import Path

#: Keras' and TensorFlow's global graph state is dropped after this many conversions, or
#: sooner when the process has grown by RELEASE_GROWTH_MB since the last drop. Dropping it
#: after every conversion cost more than the conversion of a block (0.75 s of 1.3 s per
#: 32-px block here, and later conversions ran slower); never dropping it grows a worker by
#: gigabytes (seen: 6.5 GB after ~250 conversions, and the machine ran out of memory).
RELEASE_EVERY = 16
RELEASE_GROWTH_MB = 1024.0
_since_release = {"conversions": 0, "rss_mb": None}


def _rss_mb() -> float | None:
    """This process's resident memory in MB (Linux ``/proc``; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def release_keras(force: bool = False) -> bool:
    """Count one conversion; drop Keras' global state when :data:`RELEASE_EVERY` conversions
    have passed or memory grew by :data:`RELEASE_GROWTH_MB` (or ``force``). True if dropped."""
    st = _since_release
    st["conversions"] += 1
    rss = _rss_mb()
    if st["rss_mb"] is None:
        st["rss_mb"] = rss
    grown = rss is not None and st["rss_mb"] is not None and rss - st["rss_mb"] > RELEASE_GROWTH_MB
    if not (force or grown or st["conversions"] >= RELEASE_EVERY):
        return False
    import keras  # heavy: keras
    keras.backend.clear_session()
    gc.collect()
    st["conversions"], st["rss_mb"] = 0, _rss_mb()
    return True
