"""Download the originals and rebuild the data directory on a machine with internet.

``fetch("imagenette")`` downloads fast.ai's ``imagenette2-160.tgz`` and converts it, in memory,
to the ``.npz`` layout of ``../shared/data/imagenette/README.md``; ``fetch("spaceevo-reference")``
downloads the paper's published files pinned by sha256 in ``configs/reference_manifest.json``.
Every file is verified and written atomically, so an interrupted fetch can simply be rerun.
"""

from __future__ import annotations

import io
import re
import tarfile
import urllib.parse
import zlib
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from PIL import Image
from tqdm import tqdm

from .._io import atomic_write, file_hash, write_json
from ..settings import data_dir as default_data_dir
from .download import download
from .errors import CorruptDataError, MissingDataError
from .reference import manifest

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
# The md5 torchvision's ``Imagenette`` dataset class checks for this archive.
IMAGENETTE_MD5 = "e793b78cc4c9e9a4ccc0c1155377a412"
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257")
IMAGENETTE_CLASSES = ("tench", "English springer", "cassette player", "chain saw", "church",
                      "French horn", "garbage truck", "gas pump", "golf ball", "parachute")
IMAGENETTE_SIZES = (32, 64)
# The 64 px file keeps a class-balanced train subset to stay within its size budget.
IMAGENETTE_TRAIN_PER_CLASS: Mapping[int, int] = MappingProxyType({64: 800})
SUBSET_SEED = 0
REFERENCE_NAME = "spaceevo-reference"

# <top>/{train,val}/<wnid>/<name>.JPEG; anything else in the archive (CSV files) is ignored.
_MEMBER = re.compile(r"^[^/]+/(train|val)/(n\d{8})/([^/]+\.jpe?g)$", re.IGNORECASE)
_SPLITS = {"train": "train", "val": "test"}

RECIPE = """\
Source: fast.ai imagenette2-160.tgz (official imagenette2 train/val split; val is used as test).
Each JPEG is decoded once with Pillow, converted to 8-bit RGB (grayscale repeated over the
3 channels) and resized directly to a square of each size with Image.Resampling.BOX (aspect
ratio not kept); every size is made from the decoded source, not from another size.
Labels: index of the wnid folder in the sorted wnid list. Rows in source order: by class index,
then by file name. Sizes listed in train_per_class keep a class-balanced train subset drawn with
one numpy default_rng({seed}): rng.choice(rows_of_class, size=n, replace=False) once per class
in class-index order, then re-sorted into source order. Other sizes and all test rows keep
everything. Arrays saved with numpy.savez_compressed; string arrays are numpy unicode arrays.
Note: the published copies were made from a 224x224 re-encode of Imagenette, so the pixels of
this conversion differ from theirs; layout, labels and the subset recipe are the same.
"""


# --------------------------------------------------------------------------------- Imagenette

def _decode(data: bytes, name: str, sizes: Iterable[int]) -> dict[int, np.ndarray]:
    """One decode per image, then one BOX resize from the source per requested size."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptDataError(f"cannot decode {name} from the archive: {e}") from e
    return {s: np.asarray(rgb.resize((s, s), Image.Resampling.BOX), dtype=np.uint8)
            for s in sizes}


def _read_archive(archive: Path, sizes: tuple[int, ...]
                  ) -> dict[tuple[str, str, str], dict[int, np.ndarray]]:
    """Decode every train/val JPEG of the .tgz in one streaming pass, without extracting."""
    if not archive.is_file():
        raise MissingDataError(f"the Imagenette archive {archive} does not exist")
    images: dict[tuple[str, str, str], dict[int, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:*") as tf, \
                tqdm(desc="decode Imagenette", unit="img", disable=None, leave=False) as bar:
            for member in tf:
                m = _MEMBER.match(member.name)
                if not member.isfile() or m is None:
                    continue
                split, wnid, fname = m.groups()
                fobj = tf.extractfile(member)
                if fobj is None:
                    continue
                images[(split, wnid, fname)] = _decode(fobj.read(), member.name, sizes)
                bar.update(1)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CorruptDataError(f"cannot read the Imagenette archive {archive}: {e}") from e
    return images


def _subset_rows(y: np.ndarray, n_classes: int, per_class: int, seed: int = SUBSET_SEED
                 ) -> np.ndarray:
    """Row indices of the class-balanced subset, in source order (the README's recipe)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False)
              for c in range(n_classes)]
    return np.sort(np.concatenate(chosen))


def _save_npz(dest: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """savez_compressed through a file object: given a path it would append ``.npz``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return atomic_write(dest, write)


def convert_imagenette(archive: Path, out_dir: Path, *, sizes: Iterable[int] = IMAGENETTE_SIZES,
                       train_per_class: Mapping[int, int] = IMAGENETTE_TRAIN_PER_CLASS,
                       source_url: str = IMAGENETTE_URL) -> dict[int, Path]:
    """Turn the Imagenette .tgz into ``imagenette-<size>.npz`` files plus ``MANIFEST.json``.

    The manifest records each file's sha256, which is what lets the loader trust a locally
    converted copy whose hash differs from the published one.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    sizes = tuple(sorted({int(s) for s in sizes}))
    images = _read_archive(archive, sizes)

    found = sorted({wnid for _, wnid, _ in images})
    missing = [w for w in IMAGENETTE_WNIDS if w not in found]
    extra = [w for w in found if w not in IMAGENETTE_WNIDS]
    if missing or extra:
        raise CorruptDataError(
            f"{archive} is not the Imagenette archive expected: missing wnid folders {missing}, "
            f"unexpected ones {extra}")
    wnids = sorted(IMAGENETTE_WNIDS)
    index = {w: i for i, w in enumerate(wnids)}
    names = dict(zip(IMAGENETTE_WNIDS, IMAGENETTE_CLASSES))

    rows: dict[str, list[tuple[int, str, str]]] = {"train": [], "val": []}
    for split, wnid, fname in images:
        rows[split].append((index[wnid], fname, wnid))
    for split in rows:
        rows[split].sort()
    y = {split: np.array([c for c, _, _ in r], dtype=np.int64) for split, r in rows.items()}
    counts = np.bincount(y["train"], minlength=len(wnids))
    for size, n in train_per_class.items():
        if size in sizes and counts.min() < n:
            short = {wnids[c]: int(k) for c, k in enumerate(counts) if k < n}
            raise CorruptDataError(
                f"{archive}: {n} train images per class requested for {size} px, but some "
                f"classes have fewer: {short}")

    common = {"classes": np.array([names[w] for w in wnids], dtype=np.str_),
              "wnids": np.array(wnids, dtype=np.str_)}
    out: dict[int, Path] = {}
    entries: dict[str, Any] = {}
    for size in sizes:
        arrays: dict[str, np.ndarray] = {}
        for split, key in _SPLITS.items():
            r = rows[split]
            x = [images[(split, w, f)][size] for _, f, w in r]
            arrays[f"x_{key}"] = np.stack(x) if x else np.zeros((0, size, size, 3), np.uint8)
            arrays[f"y_{key}"] = y[split]
            arrays[f"files_{key}"] = np.array([f"{split}/{w}/{f}" for _, f, w in r],
                                              dtype=np.str_)
        if size in train_per_class:
            keep = _subset_rows(y["train"], len(wnids), train_per_class[size])
            for a in ("x_train", "y_train", "files_train"):
                arrays[a] = arrays[a][keep]
        ordered = {"x_train": arrays["x_train"], "y_train": arrays["y_train"],
                   "x_test": arrays["x_test"], "y_test": arrays["y_test"], **common,
                   "files_train": arrays["files_train"], "files_test": arrays["files_test"]}
        path = _save_npz(out_dir / f"imagenette-{size}.npz", ordered)
        out[size] = path
        entries[path.name] = {
            "sha256": file_hash(path), "bytes": path.stat().st_size,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                       for k, v in ordered.items()}}

    write_json(out_dir / "MANIFEST.json", {
        "source_url": source_url,
        "archive": archive.name,
        "archive_md5": file_hash(archive, "md5"),
        "sizes": list(sizes),
        "train_per_class": {str(k): v for k, v in train_per_class.items() if k in sizes},
        "recipe": RECIPE.format(seed=SUBSET_SEED),
        "software": {"numpy": np.__version__, "pillow": Image.__version__},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": entries,
    })
    return out


def fetch_imagenette(data_dir: Path | None = None, *, url: str = IMAGENETTE_URL,
                     md5: str | None = IMAGENETTE_MD5, keep_archive: bool = True,
                     sizes: Iterable[int] = IMAGENETTE_SIZES,
                     train_per_class: Mapping[int, int] = IMAGENETTE_TRAIN_PER_CLASS
                     ) -> dict[int, Path]:
    """Download (unless a verified archive is already there) and convert Imagenette."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "imagenette2-160.tgz"
    archive = root / "downloads" / name
    if not (archive.is_file() and (md5 is None or file_hash(archive, "md5") == md5.lower())):
        download(url, archive, md5=md5, desc=name)
    out = convert_imagenette(archive, root / "imagenette", sizes=sizes,
                             train_per_class=train_per_class, source_url=url)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------- reference artifacts

def reference_manifest() -> dict:
    """Pinned commit, upstream paths and sha256 of the reference files (the data layer's one
    loader, :func:`spaceevo_lib.data.reference.manifest`; a separate name so tests can swap it)."""
    return manifest()


def fetch_reference(data_dir: Path | None = None, *, base_url: str | None = None) -> list[Path]:
    """Download every file of the reference manifest, verified by sha256; present ones are kept."""
    man = reference_manifest()
    if base_url is None:
        base_url = man["base_url"].format(commit=man["commit"])
    if not base_url.endswith("/"):
        base_url += "/"
    root = (Path(data_dir) if data_dir is not None else default_data_dir()) / REFERENCE_NAME
    paths: list[Path] = []
    for local, entry in tqdm(sorted(man["files"].items()), desc=REFERENCE_NAME, unit="file",
                             disable=None):
        rel = PurePosixPath(local)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"reference manifest path escapes the data folder: {local!r}")
        dest = root.joinpath(*rel.parts)
        want = entry["sha256"].lower()
        if not (dest.is_file() and file_hash(dest) == want):
            download(base_url + urllib.parse.quote(entry["upstream"]), dest, sha256=want,
                     desc=local, progress=False)
        paths.append(dest)
    return paths


# ------------------------------------------------------------------------------------ dispatch

FETCHERS: Mapping[str, Callable[..., Any]] = MappingProxyType({
    "imagenette": fetch_imagenette,
    REFERENCE_NAME: fetch_reference,
})


def fetch(name: str, data_dir: Path | None = None, **kw: Any) -> Any:
    """Fetch one named data set into the data directory (the ``spaceevo fetch`` command)."""
    try:
        fetcher = FETCHERS[name]
    except KeyError:
        allowed = ", ".join(FETCHERS)
        raise ValueError(f"unknown data set {name!r}; choose one of: {allowed}") from None
    return fetcher(data_dir, **kw)


def missing_data(data_dir: Path | None = None) -> list[str]:
    """The data sets a book build needs whose files are not in the data directory (existence
    only: every chapter verifies sha256 before it reads a file)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    out = []
    if not all((root / "imagenette" / f"imagenette-{s}.npz").is_file()
               for s in IMAGENETTE_SIZES):
        out.append("imagenette")
    if not all((root / REFERENCE_NAME / rel).is_file() for rel in reference_manifest()["files"]):
        out.append(REFERENCE_NAME)
    return out


def ensure_data(data_dir: Path | None = None, **options: Mapping[str, Any]) -> list[str]:
    """Fetch every data set :func:`missing_data` names (what ``make book`` and ``make test``
    do first, so that one command sets a fresh machine up); returns the names fetched.
    ``options``: per data set, keyword arguments of its fetcher (tests pass ``file://`` URLs).
    Offline, the failed download's DataError keeps the two ways to get the data."""
    fetched = []
    for name in missing_data(data_dir):
        print(f"[spaceevo] {name} is not in the data directory: fetching it", flush=True)
        fetch(name, data_dir, **options.get(name.replace("-", "_"), {}))
        fetched.append(name)
    return fetched

