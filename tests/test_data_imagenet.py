"""ImageNet for the paper profile: a user-supplied ImageFolder, read with the paper's
transforms; a clear message when it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from spaceevo_lib.data import MissingDataError
from spaceevo_lib.data.imagenet import load_imagenet


def _tiny_folder(root, classes=("n01440764", "n02102040"), per_class=3):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
                    d / f"{c}_{i}.JPEG")


def test_a_generated_folder_reads_with_the_papers_transforms(tmp_path):
    _tiny_folder(tmp_path)
    train = load_imagenet("train", 32, root=tmp_path)
    val = load_imagenet("val", 32, root=tmp_path)
    assert train.classes == ["n01440764", "n02102040"] and len(train) == len(val) == 6
    x, y = val[0]
    assert tuple(x.shape) == (3, 32, 32) and y == 0 and abs(float(x.mean())) < 3


def test_a_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(MissingDataError, match="(?s)imagenet/train.*ImageFolder layout"):
        load_imagenet("train", root=tmp_path)
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    with pytest.raises(MissingDataError, match="no class sub-folders"):
        load_imagenet("val", root=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_imagenet("test", root=tmp_path)
