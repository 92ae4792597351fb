"""Figures of the chapter "The quantized-for-all supernet": training curves, Figure 1 (INT8
top-1 error of subnets in one latency window), the proxy and weight-sharing rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd


def plot_training_curves(history):
    """Held-out top-1 of the max and min subnets per epoch, phase after phase (the FP32 ones,
    then LSQ+ INT8), per space; grey lines separate the phases."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for space, h in history.groupby("space", sort=False):
        h = h.reset_index(drop=True)
        x = np.arange(1, len(h) + 1)
        for kind, style in (("max", "-"), ("min", "--")):
            col = f"valid_top1_{kind}"
            if col in h:
                ax.plot(x, h[col], style, marker="o", label=f"{space} {kind}")
        for edge in np.flatnonzero(np.diff(h.step.to_numpy())):
            ax.axvline(edge + 1.5, color="0.7", lw=1)
    phases = " -> ".join(dict.fromkeys(history.stage))
    ax.set_xlabel(f"epoch ({phases}; grey lines between phases)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("Supernet training: max and min subnets, BN re-estimated")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pass_losses(history):
    """Each sandwich pass's training loss per epoch (max: cross-entropy, the others:
    distillation), per space: which pass stops learning first."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    spaces = list(dict.fromkeys(history.space))
    fig, axes = plt.subplots(1, len(spaces), figsize=(4.5 * len(spaces), 3.2), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        h = history[history.space == space].reset_index(drop=True)
        x = np.arange(1, len(h) + 1)
        for kind in ("max", "min", "random"):
            col = f"train_loss_{kind}"
            if col in h:
                ax.plot(x, h[col], marker="o", label=kind)
        for edge in np.flatnonzero(np.diff(h.step.to_numpy())):
            ax.axvline(edge + 1.5, color="0.7", lw=1)
        ax.set_title(space, fontsize=10)
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel("training loss per pass")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_recipe_curves(bench: dict):
    """The saved recipe benchmark: held-out INT8 top-1 of the max, min and median random
    subnet against training minutes, one line per candidate (INT8 with min-max scales during
    the FP32 phases, the learned ones in the final LSQ+ phase)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    curves = pd.DataFrame(bench["curves"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for i, (name, c) in enumerate(curves.groupby("candidate", sort=False)):
        for ax, kind in zip(axes, ("max", "min", "random")):
            ax.plot(c.minutes, c[f"valid_top1_{kind}_int8"], marker="o", ms=3, color=f"C{i}",
                    label=name + (" (chosen)" if name == bench["chosen"] else ""),
                    lw=2.5 if name == bench["chosen"] else 1.2)
    for ax, kind in zip(axes, ("max subnet", "min subnet", "median of the random subnets")):
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel("training minutes on this host")
        ax.axhline(10, color="0.8", lw=1, ls=":")
    axes[0].set_ylabel("held-out INT8 top-1 (%)")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Recipes at {bench['minutes']:g} FP32 minutes each, then LSQ+ "
                 f"({bench['host']['cpu']}, commit {str(bench['commit'])[:7]})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_fig1(fig1: dict):
    """The paper's Figure 1 on this host. Left: each space's pool of subnets by predicted INT8
    latency (ticks) and the evaluated ones' INT8 top-1, the common window shaded; right: the
    distribution (empirical CDF) of INT8 top-1 error of the evaluated subnets."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    window = fig1["window"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (label, df) in enumerate(fig1["evaluated"].items()):
        color = f"C{i}"
        pool = fig1["pools"][label]
        left.plot(pool.int8_ms, np.full(len(pool), -0.04 - 0.03 * i), "|", color=color,
                  alpha=0.4, transform=left.get_xaxis_transform(), clip_on=False)
        left.scatter(df.int8_ms, df.top1_int8, s=14, color=color, label=label)
        if not len(df):
            continue
        err = np.sort(100.0 - df.top1_int8.to_numpy())
        right.step(err, np.arange(1, len(err) + 1) / len(err), where="post", color=color,
                   label=f"{label} (median {np.median(err):.1f} %, n={len(err)})")
    if window["common"]:
        left.axvspan(window["low"], window["high"], color="0.85", zorder=0,
                     label="common window")
        title = f"subnets at {window['low']:.3f}-{window['high']:.3f} ms INT8"
    else:
        title = "no common latency window: subnets nearest the pools' median"
    left.set_xlabel("predicted INT8 latency (ms, ort-vnni); ticks: each space's pool")
    left.set_ylabel("INT8 top-1 (%)")
    left.legend(fontsize=8)
    right.set_xlabel("INT8 top-1 error (%), inherited weights, fake-quant")
    right.set_ylabel("share of subnets")
    right.legend(fontsize=8)
    fig.suptitle(f"Figure 1 on this host: {title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_rankings(evaluated: dict, standalone=None):
    """Left: per-stage NSR sum (the block-wise proxy) against INT8 top-1; right: inherited
    INT8 top-1 against the same subnet trained alone (the weight-sharing check)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, df in evaluated.items():
        axes[0].scatter(df.nsr_sum, df.top1_int8, s=14, label=label)
    axes[0].set_xlabel("sum of per-stage NSR (own tables)")
    axes[0].set_ylabel("INT8 top-1 (%)")
    axes[0].set_title("Block-wise proxy vs supernet", fontsize=10)
    axes[0].legend(fontsize=8)
    if standalone is not None and len(standalone):
        axes[1].scatter(standalone.standalone_top1, standalone.top1_int8, s=18)
        axes[1].set_xlabel("trained alone, FP32 top-1 (%)")
        axes[1].set_ylabel("inherited INT8 top-1 (%)")
    axes[1].set_title("Weight sharing vs training alone", fontsize=10)
    fig.tight_layout()
    return fig
