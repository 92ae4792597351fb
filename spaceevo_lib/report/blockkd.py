"""Figures of the block-wise distillation chapter: training curves, INT8 against FP32 NSR per
block, and the Q-T scores of the spaces with their error bars."""

from __future__ import annotations

import numpy as np
import pandas as pd


def plot_kd_curves(history, hyperspace: str):
    """Held-out NSR of the max (solid) and min (dashed) sub-stage per epoch, FP32 epochs then
    LSQ+ ones, one panel per stage and one colour per block."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    h = history[history.hyperspace == hyperspace]
    codes = list(dict.fromkeys(h.sort_values("block").code))
    colours = dict(zip(codes, plt.cm.tab10(np.linspace(0, 1, 10))))
    fig, axes = plt.subplots(1, 6, figsize=(16, 3.2), sharey=True)
    for stage, ax in zip(range(1, 7), axes):
        for code in codes:
            g = h[(h.stage == stage) & (h.code == code)].reset_index(drop=True)
            if not len(g):
                continue
            x = np.arange(1, len(g) + 1)
            ax.plot(x, g.valid_nsr_max, "-o", color=colours[code], ms=3, label=code)
            ax.plot(x, g.valid_nsr_min, "--", color=colours[code], lw=1)
            n32 = int((g.phase == "fp32").sum())
            ax.axvline(n32 + 0.5, color="0.7", lw=0.8)
        ax.set_title(f"stage{stage}")
        ax.set_xlabel("epoch (FP32 | LSQ+)")
        ax.set_yscale("log")
    axes[0].set_ylabel("held-out NSR")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{hyperspace}: block-KD, max (solid) and min (dashed) sub-stage", y=1.02)
    fig.tight_layout()
    return fig


def plot_int8_vs_fp32(records):
    """Quantized NSR (the FP32 student's weights with min-max ranges, against the INT8
    teacher) over FP32 NSR of the max sub-stage, per (stage, block); SE blocks marked."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    hss = list(dict.fromkeys(records.hyperspace))
    fig, axes = plt.subplots(1, len(hss), figsize=(6 * len(hss), 3.8), squeeze=False)
    for ax, hs in zip(axes[0], hss):
        r = records[records.hyperspace == hs]
        for (code, se), g in r.groupby(["code", "se"], sort=False):
            ax.scatter(g.fp32_nsr_max, g.ptq_nsr_max, s=22, marker="^" if se else "o",
                       label=f"{code}{' (SE)' if se else ''}")
        lo = float(min(r.fp32_nsr_max.min(), r.ptq_nsr_max.min()))
        hi = float(max(r.fp32_nsr_max.max(), r.ptq_nsr_max.max()))
        ax.plot([lo, hi], [lo, hi], "--", color="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("FP32 NSR (max sub-stage)")
        ax.set_ylabel("quantized NSR (max sub-stage)")
        ax.set_title(hs)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_space_scores(scores, device: str, top_uniform: int = 8):
    """Q-T (mean +- std over seeds) of the evolved, published, hand-designed and the best
    uniform spaces of one device."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    s = pd.concat([scores[scores.kind != "uniform"],
                   scores[scores.kind == "uniform"].head(top_uniform)]).sort_values("qt_mean")
    colours = {"evolved": "C3", "random": "C1", "published": "C0", "hand-designed": "C2",
               "uniform": "0.6"}
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(s) + 1.2))
    y = np.arange(len(s))
    ax.barh(y, s.qt_mean, xerr=s.qt_std, color=[colours[k] for k in s.kind])
    ax.set_yticks(y, [f"{a} ({k})" if k == "uniform" else a for a, k in zip(s.space, s.kind)],
                  fontsize=7)
    ax.set_xlabel("Q-T score on this host's tables (higher is better)")
    ax.set_title(f"{device}: spaces scored on the same tables")
    fig.tight_layout()
    return fig
