"""Figures of the Q-T chapter: evolution curves, space rankings with error bars, Figure 1."""

from __future__ import annotations

import pandas as pd


def plot_evolution(histories: dict):
    """Best Q-T so far and population mean against evaluated spaces, one panel per hyperspace."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.4),
                             squeeze=False)
    for ax, (hs, h) in zip(axes[0], histories.items()):
        ax.plot(h.evaluated, h.best_so_far, label="best so far")
        ax.plot(h.evaluated, h.population_mean, label="population mean", alpha=0.8)
        ax.set_title(f"{hs}")
        ax.set_xlabel("spaces evaluated")
        ax.set_ylabel("Q-T score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_space_scores(scores, n_uniform: int = 8):
    """Published spaces, the best space found and the best uniform spaces: Q-T mean +- std."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    keep = scores[scores.kind != "uniform"]
    uni = scores[scores.kind == "uniform"].head(n_uniform)
    d = pd.concat([keep, uni]).sort_values("qt_mean")
    colours = {"published": "tab:red", "best found": "tab:green", "uniform": "tab:gray"}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(d) + 1.2))
    ax.barh(range(len(d)), d.qt_mean, xerr=d.qt_std, color=[colours[k] for k in d.kind],
            capsize=2)
    ax.set_yticks(range(len(d)), [f"{s} ({e.split('-', 1)[1]})" if s != e else s
                                  for s, e in zip(d.space, d.encoding)], fontsize=7)
    lo = max(0.0, float((d.qt_mean - 2 * d.qt_std).min()) * 0.95)
    ax.set_xlim(left=lo)
    ax.set_xlabel("Q-T score (mean +- std over seeds)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_top_tier(samples, constraint_ms: float):
    """Latency vs loss of each space's top-tier subnets, and their loss distributions."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    import seaborn as sns  # heavy: seaborn
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    sns.scatterplot(samples, x="latency_ms", y="loss", hue="space", s=8, alpha=0.5, ax=a,
                    linewidth=0)
    a.axvline(constraint_ms, color="0.3", ls="--", lw=1)
    a.set_xlabel("INT8 latency (ms, LUT + other parts)")
    a.set_ylabel("sum of stage NSR (lower is better)")
    a.legend(fontsize=7, markerscale=2)
    sns.boxplot(samples, x="loss", y="space", ax=b, fliersize=1)
    b.set_xlabel("NSR of top-tier subnets")
    b.set_ylabel("")
    b.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Top-tier subnets under T = {constraint_ms:g} ms (the shape of Figure 1)",
                 fontsize=10)
    fig.tight_layout()
    return fig
