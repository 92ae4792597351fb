"""The data every training run reads: training, held-out and test loaders, the raw test images
deployed files are evaluated on, calibration images and the files' preprocessing.

One place for it, so that the notebooks and ``spaceevo train`` (under torchrun too) split,
augment and normalise the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..data.imagenet import load_imagenet
from ..data.imagenette import (IMAGENET_MEAN, IMAGENET_STD, ImagenetteDataset, class_balanced,
                               load_imagenette, normalization, split_train, subset)
from ..export.metadata import Preprocessing
from .config import TrainConfig
from .engine import train_loader

#: Images per evaluation batch of the small-image loaders (held-out and test). Measured at
#: 32 px on 2 cores (a middle subnet of the evolved space, 1,024 images): batch 64 took
#: 1.2 s FP32 / 1.8 s INT8 fake-quant against 1.9 / 3.1 s at 256, with the same logits (the
#: activations of a smaller batch stay in cache); ImageNet's 224-px loaders keep 256.
EVAL_BATCH = 64


@dataclass
class TrainingData:
    """Loaders (train / valid / test), the raw test images for the deployed files, calibration
    images (normalised NCHW, from the training split, class-balanced and interleaved by class)
    and the files' preprocessing."""

    loaders: dict
    x_test: np.ndarray  # (N, H, W, 3) uint8
    y_test: np.ndarray
    calibration: np.ndarray  # (N, 3, H, W) float32
    preprocessing: object  # export.metadata.Preprocessing
    n_classes: int


def load_training_data(resolution: int, cfg: TrainConfig, test_images: int = 0,
                       calibration_images: int = 100, dataset: str = "imagenette"
                       ) -> TrainingData:
    """Training, held-out and test data: ``cfg.valid_size`` training images held out for
    model selection, ``cfg.train_images`` (0: all the rest) to train on, the test split (or a
    seeded ``test_images`` subset) for the final numbers only. ``dataset``: ``imagenette``
    (the study's 32/64-px files) or ``imagenet`` (the paper profile: a user-supplied
    ImageFolder, see :mod:`spaceevo_lib.data.imagenet`)."""
    if dataset == "imagenet":
        return _load_imagenet(resolution, cfg, test_images, calibration_images)
    if dataset != "imagenette":
        raise ValueError(f"dataset must be 'imagenette' or 'imagenet'; got {dataset!r}")

    data = load_imagenette(resolution)
    mean, std = normalization(data, "imagenet")
    train_idx, valid_idx = split_train(len(data.x_train), cfg.valid_size, cfg.seed)
    if cfg.train_images:
        train_idx = subset(train_idx, train_idx, cfg.train_images, cfg.seed)[0]
    x_test, y_test = data.x_test, data.y_test
    if test_images:
        x_test, y_test = subset(x_test, y_test, test_images, cfg.seed)
    ds = lambda x, y, aug: ImagenetteDataset(x, y, aug, (mean, std))  # noqa: E731
    loaders = {"train": train_loader(ds(data.x_train[train_idx], data.y_train[train_idx],
                                        cfg.augment), cfg.batch_size, cfg.seed,
                                     drop_last=True),
               "test": DataLoader(ds(x_test, y_test, "none"), batch_size=EVAL_BATCH)}
    if cfg.valid_size:
        loaders["valid"] = DataLoader(ds(data.x_train[valid_idx], data.y_train[valid_idx],
                                         "none"), batch_size=EVAL_BATCH)
    # class-balanced and interleaved by class: any prefix (e.g. the first 64 images that
    # initialise quantizers) covers every class
    cal_idx = train_idx[class_balanced(data.y_train[train_idx], calibration_images,
                                       cfg.seed + 1)]
    cal_ds = ds(data.x_train[cal_idx], data.y_train[cal_idx], "none")
    cal = torch.stack([cal_ds[i][0] for i in range(len(cal_ds))]).numpy()
    pre = Preprocessing("NCHW", (resolution, resolution), tuple(mean), tuple(std),
                        classes=tuple(data.classes))
    return TrainingData(loaders, x_test, y_test, cal, pre, len(data.classes))


def labels_of(dataset) -> np.ndarray:
    """The labels of a loader's dataset (an Imagenette array dataset, an ImageFolder or a
    Subset of either), in dataset order."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    if hasattr(dataset, "y"):
        return np.asarray(dataset.y)
    return np.asarray(dataset.targets)


def balanced_loader(loader: DataLoader, n: int, seed: int) -> DataLoader:
    """A loader over ``n`` images of ``loader``'s dataset, class-balanced and interleaved by
    class (:func:`~spaceevo_lib.data.imagenette.class_balanced`; all of them when ``n`` is 0
    or too large), same batch size: e.g. a search's fitness images from a held-out split
    that is sorted by class."""
    ds = loader.dataset
    n = len(ds) if not n or n >= len(ds) else n
    pos = class_balanced(labels_of(ds), n, seed)
    return DataLoader(Subset(ds, pos.tolist()), batch_size=loader.batch_size)


def _load_imagenet(resolution: int, cfg: TrainConfig, test_images: int,
                   calibration_images: int) -> TrainingData:
    """ImageNet (paper profile): train/val ImageFolders with the paper's transforms; the test
    images for the deployed files are the val images resized and centre-cropped as uint8
    (``resize`` in their preprocessing metadata). Written for the paper profile, exercised by
    the tests on a tiny generated folder only."""
    from torchvision.transforms import v2  # heavy: torchvision

    train_all, test = load_imagenet("train", resolution), load_imagenet("val", resolution)
    train_idx, valid_idx = split_train(len(train_all), cfg.valid_size, cfg.seed)
    if cfg.train_images:
        train_idx = np.sort(np.random.default_rng(cfg.seed).permutation(train_idx)
                            [:cfg.train_images])
    plain = load_imagenet("train", resolution)
    plain.transform = test.transform  # held-out and calibration images: no augmentation
    loaders = {"train": train_loader(Subset(train_all, train_idx.tolist()), cfg.batch_size,
                                     cfg.seed, drop_last=True)}
    if cfg.valid_size:
        loaders["valid"] = DataLoader(Subset(plain, valid_idx.tolist()), batch_size=256)
    test_idx = np.arange(len(test))
    if test_images:
        test_idx = np.sort(np.random.default_rng(cfg.seed).permutation(test_idx)[:test_images])
    loaders["test"] = DataLoader(Subset(test, test_idx.tolist()), batch_size=256)
    resize = round(resolution / 0.875)
    as_uint8 = v2.Compose([v2.ToImage(), v2.Resize(resize, antialias=True),
                           v2.CenterCrop(resolution)])
    raw = load_imagenet("val", resolution)
    raw.transform = as_uint8
    x_test = np.stack([raw[i][0].permute(1, 2, 0).numpy() for i in test_idx])
    y_test = np.array([raw.targets[i] for i in test_idx])
    cal_idx = train_idx[class_balanced(np.asarray(train_all.targets)[train_idx],
                                       calibration_images, cfg.seed + 1)]
    cal = torch.stack([plain[i][0] for i in cal_idx]).numpy()
    pre = Preprocessing("NCHW", (resolution, resolution), IMAGENET_MEAN, IMAGENET_STD,
                        classes=tuple(test.classes), resize=resize)
    return TrainingData(loaders, x_test, y_test, cal, pre, len(test.classes))
