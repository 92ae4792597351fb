"""Checked, atomic downloads: a file is either complete and verified at ``dest`` or absent.

``urllib`` is used on purpose: it needs no extra dependency and also opens ``file://`` URLs,
which lets the tests exercise the real code path offline.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .._io import atomic_path
from ..settings import DATA_ENV
from .errors import CorruptDataError, DataError

CHUNK = 1 << 20


def _network_error(url: str, err: BaseException) -> DataError:
    """A download failure with the way out for machines without internet."""
    return DataError(
        f"could not download {url}: {err}\n"
        "This machine may be offline. If a copy of the data already exists somewhere, point "
        f"{DATA_ENV} at the folder that holds it instead of downloading.")


def download(url: str, dest: Path | str, *, md5: str | None = None, sha256: str | None = None,
             desc: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest``, verifying md5/sha256 before the file appears at ``dest``.

    Raises ``CorruptDataError`` on a checksum mismatch and ``DataError`` when the URL cannot be
    read; in both cases nothing (not even a ``.part`` file) is left behind.
    """
    dest = Path(dest)
    hashers = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256))
               if want is not None}
    with atomic_path(dest) as tmp:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _network_error(url, e) from e
        with resp, open(tmp, "wb") as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=desc or dest.name, disable=None if progress else True,
                      leave=False) as bar:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _network_error(url, e) from e
                    if not block:
                        break
                    f.write(block)
                    for h in hashers.values():
                        h.update(block)
                    bar.update(len(block))
        for name, want in (("md5", md5), ("sha256", sha256)):
            if want is None:
                continue
            got = hashers[name].hexdigest()
            if got.lower() != want.lower():
                raise CorruptDataError(
                    f"{url}: {name} mismatch, expected {want}, got {got}. The download was "
                    f"discarded; nothing was written to {dest}.")
    return dest
