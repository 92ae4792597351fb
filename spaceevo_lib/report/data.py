"""Figures of the chapter "The data", drawn from the loaded arrays."""

from __future__ import annotations

import numpy as np

from ..data.imagenette import ImagenetteArrays


def plot_class_counts(counts):
    """Grouped bars of images per class for train and test."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    import seaborn as sns  # heavy: seaborn
    long = counts.melt(id_vars=["class"], value_vars=["train", "test"], var_name="split",
                       value_name="images")
    fig, ax = plt.subplots(figsize=(9, 3.2))
    sns.barplot(long, x="class", y="images", hue="split", ax=ax)
    ax.tick_params(axis="x", rotation=30)
    ax.set_xlabel("")
    ax.set_title("Images per class")
    fig.tight_layout()
    return fig


def sample_grid(data: ImagenetteArrays, per_class: int, seed: int = 0):
    """A grid with one row per class and ``per_class`` random training images in each."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    rng = np.random.default_rng(seed)
    n = len(data.classes)
    fig, axes = plt.subplots(n, per_class, figsize=(1.1 * per_class + 1.6, 1.1 * n),
                             squeeze=False)
    for c in range(n):
        rows = np.flatnonzero(data.y_train == c)
        pick = rng.choice(rows, size=min(per_class, len(rows)), replace=False)
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(pick):
                ax.imshow(data.x_train[pick[j]], interpolation="nearest")
        axes[c, 0].set_ylabel(data.classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Random training images per class ({data.resolution} px)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_pixel_histograms(x: np.ndarray):
    """Histogram of pixel intensities per colour channel."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, ax = plt.subplots(figsize=(7, 3))
    flat = x.reshape(-1, 3)
    bins = np.arange(257)
    for ch, colour in enumerate(("tab:red", "tab:green", "tab:blue")):
        counts, _ = np.histogram(flat[:, ch], bins=bins)
        ax.plot(bins[:-1], counts / counts.sum(), color=colour, label="RGB"[ch])
    ax.set_xlabel("pixel value")
    ax.set_ylabel("share of pixels")
    ax.set_title(f"Pixel intensities ({len(x)} images)")
    ax.legend()
    fig.tight_layout()
    return fig


def show_batch(images, labels, classes, mean_std, n: int = 16):
    """The first ``n`` images of a loader batch, un-normalised, with their labels."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    imgs = images[:n].permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    if mean_std is not None:
        mean, std = (np.asarray(v, dtype=np.float32) for v in mean_std)
        imgs = imgs * std + mean
    cols = min(8, len(imgs))
    rows = int(np.ceil(len(imgs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y in zip(axes.flat, imgs, labels[:n]):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(classes[int(y)], fontsize=7)
    fig.tight_layout()
    return fig
