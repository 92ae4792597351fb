"""Imagenette at 32 and 64 px: checked loading, statistics and PyTorch loaders.

Imagenette (fast.ai) is 10 ImageNet classes; the study uses it as its ImageNet proxy. The
arrays follow the layout of ``../shared/data/imagenette/README.md``: uint8 NHWC RGB images,
int64 labels, class names, WordNet ids and source paths, rows in source order (not shuffled).

A file is trusted when its sha256 is one of the published copies' or the one our own
``spaceevo fetch imagenette`` conversion recorded in ``MANIFEST.json`` beside it.
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import file_hash
from ..settings import DATA_ENV, data_dir
from .errors import CorruptDataError, MissingDataError

RESOLUTIONS = (32, 64)
# sha256 of the published copies (../shared/data/imagenette/README.md).
PUBLISHED_SHA256 = {
    32: "478e03ab134f5dff7045a1555ece73dedc9194ee690da0799cd238ee589591b5",
    64: "82be13fbb0c4fc34b5111eab689977044d4666dd26907b51b191566237f199bc",
}
ARRAYS = ("x_train", "y_train", "x_test", "y_test", "classes", "wnids", "files_train",
          "files_test")
N_CLASSES = 10
# Normalisation of ImageNet-pretrained torchvision models (teachers later in the book).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip", "crop_flip")


def how_to_get(relpath: str, fetch_name: str) -> str:
    """The two ways to obtain a missing data file, for error messages."""
    return (
        "Get it one of two ways:\n"
        f"  1. download the original (needs internet): spaceevo fetch {fetch_name}\n"
        f"  2. point {DATA_ENV} at a folder that already has {relpath}\n"
        f"     (on the study's machines: export {DATA_ENV}=../shared/data)"
    )


def imagenette_path(resolution: int, root: Path | None = None) -> Path:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"Imagenette resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    return (root or data_dir()) / "imagenette" / f"imagenette-{resolution}.npz"


@dataclass(frozen=True)
class ImagenetteArrays:
    """One Imagenette file, loaded and checked."""

    resolution: int
    x_train: np.ndarray  # (N, H, W, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    wnids: tuple[str, ...]
    files_train: np.ndarray
    files_test: np.ndarray
    path: Path
    sha256: str
    origin: str  # "published copy" or "converted by spaceevo fetch"


def verify_file(path: Path, resolution: int) -> tuple[str, str]:
    """Return (sha256, origin) of a trusted Imagenette file, else raise a data error."""
    rel = f"imagenette/{path.name}"
    if not path.is_file():
        raise MissingDataError(
            f"Imagenette at {resolution} px is missing: {path} does not exist.\n"
            + how_to_get(rel, "imagenette"))
    return _verify_cached(path, resolution, path.stat().st_size, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _verify_cached(path: Path, resolution: int, size: int, mtime_ns: int) -> tuple[str, str]:
    digest = file_hash(path)
    if digest == PUBLISHED_SHA256[resolution]:
        return digest, "published copy"
    manifest = path.parent / "MANIFEST.json"
    if manifest.is_file():
        entry = json.loads(manifest.read_text()).get("files", {}).get(path.name, {})
        if entry.get("sha256") == digest:
            return digest, "converted by spaceevo fetch"
    raise CorruptDataError(
        f"{path} is corrupt or unknown: its sha256 {digest} matches neither the published copy "
        f"({PUBLISHED_SHA256[resolution]}) nor a MANIFEST.json written by `spaceevo fetch`.\n"
        "Delete it and get a good copy. " + how_to_get(f"imagenette/{path.name}", "imagenette"))


def load_imagenette(resolution: int = 64, root: Path | None = None,
                    verify: bool = True) -> ImagenetteArrays:
    """Load one Imagenette file; with ``verify`` its checksum and contents are checked first."""
    path = imagenette_path(resolution, root)
    if verify:
        digest, origin = verify_file(path, resolution)
    elif path.is_file():
        digest, origin = "", "not verified"
    else:
        verify_file(path, resolution)  # raises MissingDataError
    try:
        with np.load(path) as z:
            missing = [a for a in ARRAYS if a not in z.files]
            if missing:
                raise CorruptDataError(f"{path} lacks the arrays {missing}")
            arrs = {a: z[a] for a in ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptDataError(f"{path} cannot be read as .npz ({e}); delete it and get a "
                               "good copy. " + how_to_get(f"imagenette/{path.name}", "imagenette")
                               ) from e
    _check_contents(arrs, resolution, path)
    return ImagenetteArrays(
        resolution=resolution, x_train=arrs["x_train"], y_train=arrs["y_train"],
        x_test=arrs["x_test"], y_test=arrs["y_test"],
        classes=tuple(str(c) for c in arrs["classes"]),
        wnids=tuple(str(w) for w in arrs["wnids"]),
        files_train=arrs["files_train"], files_test=arrs["files_test"],
        path=path, sha256=digest, origin=origin)


def _check_contents(a: dict[str, np.ndarray], res: int, path: Path) -> None:
    for split in ("train", "test"):
        x, y, f = a[f"x_{split}"], a[f"y_{split}"], a[f"files_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (res, res, 3):
            raise CorruptDataError(
                f"{path}: x_{split} must be uint8 (N, {res}, {res}, 3); got {x.dtype} {x.shape}")
        if len(y) != len(x) or len(f) != len(x):
            raise CorruptDataError(f"{path}: x_{split}, y_{split}, files_{split} differ in length")
        if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
            raise CorruptDataError(f"{path}: y_{split} has labels outside 0..{N_CLASSES - 1}")
    if len(a["classes"]) != N_CLASSES or len(a["wnids"]) != N_CLASSES:
        raise CorruptDataError(f"{path}: expected {N_CLASSES} class names and wnids")


# ---- statistics (the data chapter) ---------------------------------------------------------
def class_counts(data: ImagenetteArrays):
    """Images per class and split, as a DataFrame (one row per class)."""
    rows = []
    for i, (name, wnid) in enumerate(zip(data.classes, data.wnids)):
        rows.append({"label": i, "class": name, "wnid": wnid,
                     "train": int((data.y_train == i).sum()),
                     "test": int((data.y_test == i).sum())})
    return pd.DataFrame(rows)


def pixel_stats(x: np.ndarray, chunk: int = 1024):
    """Per-channel mean, std, min and max of uint8 images in 0-255, computed in chunks."""
    n = np.zeros(3)
    s = np.zeros(3)
    ss = np.zeros(3)
    for i in range(0, len(x), chunk):
        b = x[i:i + chunk].reshape(-1, 3).astype(np.float64)
        n += len(b)
        s += b.sum(0)
        ss += (b * b).sum(0)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))
    flat = x.reshape(-1, 3)
    return pd.DataFrame({"channel": ["R", "G", "B"], "mean": mean, "std": std,
                         "min": flat.min(0).astype(int), "max": flat.max(0).astype(int)})


def subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of ``n`` rows (all rows when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return x[idx], y[idx]


def class_balanced(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` rows of ``labels`` taken round-robin over the classes, a seeded
    random order within each class: every prefix of k x (classes) rows holds k images of
    each class while the classes last. For the fixed image sets that a prefix is taken of
    (calibration, BN re-estimation, quantizer initialisation, fitness): the splits keep the
    source order, which is sorted by class, so a plain prefix is one or two classes."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    n = min(int(n), len(labels))
    out: list[int] = []
    depth = 0
    while len(out) < n:
        out += [int(p[depth]) for p in pools if depth < len(p)][:n - len(out)]
        depth += 1
    return np.asarray(out, dtype=np.int64)


# ---- PyTorch -------------------------------------------------------------------------------
def _transform(resolution: int, augment: str, mean, std):
    import torch  # heavy: torch
    from torchvision.transforms import v2  # heavy: torchvision
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}; got {augment!r}")
    steps = []
    if augment == "crop_flip":
        steps.append(v2.RandomCrop(resolution, padding=resolution // 8, padding_mode="reflect"))
    if augment in ("flip", "crop_flip"):
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if mean is not None:
        steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)


def normalization(data: ImagenetteArrays, kind: str | None) -> tuple | None:
    """(mean, std) in 0-1 for ``kind``: 'imagenet' (pretrained teachers), 'dataset' (train set
    statistics) or None (no normalisation)."""
    if kind == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if kind == "dataset":
        st = pixel_stats(data.x_train)
        return tuple(st["mean"] / 255), tuple(st["std"] / 255)
    if kind is None:
        return None
    raise ValueError(f"normalize must be 'imagenet', 'dataset' or None; got {kind!r}")


def normalize_images(x_nhwc: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, 3) as the networks take them: float32 (N, 3, H, W) in 0-1,
    normalised with the ImageNet mean and std (the one normalisation of the study; loaders
    apply the same constants as a transform)."""
    x = x_nhwc.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def calibration_images(n: int, seed: int = 0, resolution: int = 64) -> np.ndarray:
    """``n`` real Imagenette test images (N, 3, H, W), normalised as the networks expect: the
    inputs every latency job is calibrated and timed with. The test split is used because
    nothing is trained on it; a seeded draw keeps classes mixed."""
    data = load_imagenette(resolution)
    idx = np.sort(np.random.default_rng(seed).choice(len(data.x_test), size=n, replace=False))
    return normalize_images(data.x_test[idx])


class ImagenetteDataset:
    """A map-style PyTorch dataset over uint8 NHWC arrays; yields (C,H,W) float tensors."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: str = "none",
                 mean_std: tuple | None = (IMAGENET_MEAN, IMAGENET_STD)):
        self.x, self.y = x, y
        mean, std = mean_std if mean_std is not None else (None, None)
        self.transform = _transform(x.shape[1], augment, mean, std)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        import torch  # heavy: torch
        img = torch.from_numpy(np.ascontiguousarray(self.x[i])).permute(2, 0, 1)  # (3, H, W)
        return self.transform(img), int(self.y[i])


def split_train(n: int, valid_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) row indices of a training set of ``n`` images: ``valid_size`` held out
    for model selection, the same for the same seed (sorted: source order is kept)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[valid_size:]), np.sort(order[:valid_size])


def make_loaders(data: ImagenetteArrays, batch_size: int = 128, augment: str = "crop_flip",
                 normalize: str | None = "imagenet", valid_size: int = 0, seed: int = 0,
                 num_workers: int = 0) -> dict:
    """Train / (valid) / test DataLoaders; ``valid_size`` images are held out of train.

    The hold-out follows the paper, which validates on images held out of ImageNet train; the
    official val split stays the test set. The same seed gives the same split and batch order.
    """
    import torch  # heavy: torch
    from torch.utils.data import DataLoader  # heavy: torch
    ms = normalization(data, normalize)
    train_idx, valid_idx = split_train(len(data.x_train), valid_size, seed)
    gen = torch.Generator().manual_seed(seed)
    loaders = {"train": DataLoader(
        ImagenetteDataset(data.x_train[train_idx], data.y_train[train_idx], augment, ms),
        batch_size=batch_size, shuffle=True, generator=gen, num_workers=num_workers)}
    if valid_size:
        loaders["valid"] = DataLoader(
            ImagenetteDataset(data.x_train[valid_idx], data.y_train[valid_idx], "none", ms),
            batch_size=batch_size, num_workers=num_workers)
    loaders["test"] = DataLoader(ImagenetteDataset(data.x_test, data.y_test, "none", ms),
                                 batch_size=batch_size, num_workers=num_workers)
    return loaders
