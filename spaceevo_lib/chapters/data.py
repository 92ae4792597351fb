"""The chapter "The data": where the loaded Imagenette file comes from, how it was checked, and
the chapter's tables and records."""

from __future__ import annotations

import pandas as pd

from ..data.imagenette import IMAGENET_MEAN, IMAGENET_STD, ImagenetteArrays
from ..data.paper import paper_setup
from ..store import record


def provenance(data: ImagenetteArrays):
    """Where the loaded file comes from and how it was checked, as a two-column table."""
    rows = [
        ("file", str(data.path)),
        ("sha256", data.sha256 or "not verified"),
        ("checked as", data.origin),
        ("resolution", f"{data.resolution} x {data.resolution} px, RGB, uint8"),
        ("train / test images", f"{len(data.x_train)} / {len(data.x_test)}"),
        ("classes", ", ".join(data.classes)),
        ("WordNet ids", " ".join(data.wnids)),
        ("first source file", str(data.files_train[0])),
        ("original dataset", "Imagenette (fast.ai, imagenette2 split), a 10-class ImageNet subset"),
        ("terms", "ImageNet images: non-commercial research and education only"),
    ]
    return pd.DataFrame(rows, columns=["property", "value"])


def normalisation_table(stats: pd.DataFrame) -> pd.DataFrame:
    """This file's per-channel mean and std (0-1) beside the ImageNet normalisation every
    network of the study uses."""
    out = stats.assign(mean_01=stats["mean"] / 255, std_01=stats["std"] / 255,
                       imagenet_mean=IMAGENET_MEAN, imagenet_std=IMAGENET_STD)
    return out[["channel", "mean_01", "imagenet_mean", "std_01", "imagenet_std"]]


def glue_values(cfg, counts: pd.DataFrame, n_stats: int, batch_shape) -> dict:
    """The numbers the chapter's text cites, from this run."""
    return {"res": cfg.resolution, "paper_dataset": paper_setup("dataset"),
            "n_train": int(counts.train.sum()), "n_test": int(counts.test.sum()),
            "test_min": int(counts.test.min()), "test_max": int(counts.test.max()),
            "stats_n": n_stats, "batch_shape": str(tuple(batch_shape)),
            "augment_name": cfg.augment}


def summary_records(cfg, data: ImagenetteArrays, counts: pd.DataFrame,
                    stats: pd.DataFrame) -> list[dict]:
    """Image and class counts, the resolution and the per-channel pixel statistics."""
    return [record("images/train", int(counts.train.sum()), "images"),
            record("images/test", int(counts.test.sum()), "images"),
            record("classes", len(data.classes), "classes"),
            record("resolution", cfg.resolution, "px"),
            *[record(f"pixel_mean/{r.channel}", round(r.mean, 2), "0-255")
              for r in stats.itertuples()],
            *[record(f"pixel_std/{r.channel}", round(r.std, 2), "0-255")
              for r in stats.itertuples()]]
