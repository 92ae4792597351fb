"""Figures of the chapter "The quantized-for-all supernet": training curves, Figure 1 (INT8
top-1 error of subnets in one latency window), the proxy and weight-sharing rankings."""

from __future__ import annotations

import numpy as np


def plot_training_curves(history):
    """Held-out top-1 of the max and min subnets per epoch, FP32 then LSQ+ INT8, per space."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for (space, init), h in history.groupby(["space", "init"], sort=False):
        h = h.reset_index(drop=True)
        x = np.arange(1, len(h) + 1)
        for kind, style in (("max", "-"), ("min", "--")):
            col = f"valid_top1_{kind}"
            if col in h:
                ax.plot(x, h[col], style, marker="o", label=f"{space} ({init}) {kind}")
        n32 = int((h.phase == "fp32").sum())
        ax.axvline(n32 + 0.5, color="0.7", lw=1)
    ax.set_xlabel("epoch (FP32, then LSQ+ INT8 right of the grey line)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("Supernet training: max and min subnets, BN re-calibrated")
    ax.legend(fontsize=8)
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
