"""ImageNet for the ``paper`` profile: a user-supplied ImageFolder in the data directory.

ImageNet cannot be downloaded without an account, so the study never fetches it. Put the
standard layout (one folder per WordNet id) at::

    <data>/imagenet/train/n01440764/*.JPEG ...
    <data>/imagenet/val/n01440764/*.JPEG ...

The paper's pipeline (paper-notes §7): RandomResizedCrop + flip for training, resize to
``resolution / 0.875`` and centre crop for evaluation, ImageNet mean and std.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import DATA_ENV, data_dir
from .errors import MissingDataError
from .imagenette import IMAGENET_MEAN, IMAGENET_STD

SPLITS = ("train", "val")


def imagenet_root(root: Path | None = None) -> Path:
    return (root or data_dir()) / "imagenet"


def _missing(path: Path, why: str) -> MissingDataError:
    return MissingDataError(
        f"ImageNet is needed by the paper profile but {why}: {path}\n"
        "ImageNet is not downloadable without an account, so this study never fetches it. "
        "Put the ILSVRC-2012 train and val images in ImageFolder layout (one folder per WordNet "
        f"id) at <data>/imagenet/train and <data>/imagenet/val, with {DATA_ENV} pointing at "
        "<data>; or use the default profile (Imagenette).")


def imagenet_transforms(resolution: int, train: bool):
    import torch  # heavy: torch
    from torchvision.transforms import v2  # heavy: torchvision
    steps = ([v2.RandomResizedCrop(resolution, antialias=True), v2.RandomHorizontalFlip()]
             if train else [v2.Resize(round(resolution / 0.875), antialias=True),
                            v2.CenterCrop(resolution)])
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def load_imagenet(split: str, resolution: int = 224, root: Path | None = None,
                  augment: bool | None = None):
    """The ImageFolder of ``split`` ('train' or 'val') with the paper's transforms (``augment``:
    the training ones; default for the train split; block-wise distillation reads training
    images with the evaluation ones); a missing or empty folder raises
    :class:`MissingDataError` saying where it must be."""
    from torchvision.datasets import ImageFolder  # heavy: torchvision
    if split not in SPLITS:
        raise ValueError(f"ImageNet split must be one of {SPLITS}; got {split!r}")
    path = imagenet_root(root) / split
    if not path.is_dir():
        raise _missing(path, "the folder does not exist")
    classes = [d for d in path.iterdir() if d.is_dir()]
    if not classes:
        raise _missing(path, "the folder has no class sub-folders")
    try:
        return ImageFolder(str(path), transform=imagenet_transforms(
            resolution, split == "train" if augment is None else augment))
    except FileNotFoundError as e:  # class folders without images
        raise _missing(path, f"it holds no images ({e})") from None
