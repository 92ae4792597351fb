"""Atomic file writes and hashing, shared by the data layer and the artifact store.

Nothing the study writes is ever left half-written: every writer goes to a temporary file in
the destination folder and is renamed into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, else delete it.

    A writer killed outright (SIGKILL) cannot delete its temporary file; the next write of the
    same ``dest`` removes it (hidden files ``.<stem>.*.part<suffix>``: one writer per file)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.stem}.*.part{dest.suffix}"):
        stale.unlink(missing_ok=True)
    # keep the real suffix last: tools such as numpy and papermill look at it
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}",
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(dest: Path | str, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        write(tmp)
    return Path(dest)


def write_json(dest: Path | str, obj: Any) -> Path:
    return atomic_write(dest, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def file_hash(path: Path | str, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-able object, independent of dict order: the cache key of a result."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
