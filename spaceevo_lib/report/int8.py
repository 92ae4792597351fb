"""Figures of the chapter "Training in INT8": training curves and the learned LSQ+ scales."""

from __future__ import annotations

import numpy as np


def plot_training_curves(history):
    """Training loss and held-out top-1 per epoch, FP32 then LSQ+, one panel pair per network
    (``history``: the trainers' metrics with ``network`` and ``phase`` columns)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    nets = list(dict.fromkeys(history.network))
    fig, axes = plt.subplots(len(nets), 2, figsize=(10, 3.0 * len(nets)), squeeze=False)
    for row, net in zip(axes, nets):
        h = history[history.network == net].reset_index(drop=True)
        x = np.arange(1, len(h) + 1)
        for phase, style in (("fp32", "-o"), ("lsq+", "-s")):
            m = (h.phase == phase).to_numpy()
            row[0].plot(x[m], h.train_loss[m], style, label=phase, ms=3)
            if "valid_top1" in h:
                row[1].plot(x[m], h.valid_top1[m], style, label=phase, ms=3)
        row[0].set_ylabel("training loss")
        row[1].set_ylabel("held-out top-1 (%)")
        for ax in row:
            ax.set_xlabel("epoch (FP32, then LSQ+ fine-tuning)")
            ax.set_title(net)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_learned_scales(scales):
    """Every activation quantizer's learned scale against its min-max initial scale."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    nets = list(dict.fromkeys(scales.network))
    fig, axes = plt.subplots(1, len(nets), figsize=(5 * len(nets), 3.6), squeeze=False)
    for ax, net in zip(axes[0], nets):
        s = scales[scales.network == net]
        ax.scatter(s.scale_init, s.scale, s=10)
        lo, hi = float(min(s.scale_init.min(), s.scale.min())), float(max(s.scale_init.max(),
                                                                          s.scale.max()))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("min-max initial scale")
        ax.set_ylabel("learned scale")
        ax.set_title(f"{net}: {len(s)} activation quantizers")
    fig.tight_layout()
    return fig
