"""Figures of the latency chapter: the paper's Figure 2 (left and right) and block speedups."""

from __future__ import annotations

import numpy as np


def _unity(ax, horizontal: bool = True) -> None:
    (ax.axhline if horizontal else ax.axvline)(1.0, color="0.3", lw=1, ls="--", zorder=0)


def plot_operator_speedups(ops):
    """Grouped bars: INT8 speedup per operator type on each device, IQR as error bars."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    order = list(dict.fromkeys(ops.op_type))
    devices = list(dict.fromkeys(ops.device))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(devices)
    x = np.arange(len(order))
    for i, dev in enumerate(devices):
        d = ops[ops.device == dev].set_index("op_type").reindex(order)
        ax.bar(x + (i - (len(devices) - 1) / 2) * width, d.speedup, width,
               yerr=d.speedup_iqr / 2, capsize=2, label=dev)
    _unity(ax)
    ax.set_xticks(x, order, rotation=30, ha="right")
    ax.set_ylabel("INT8 speedup over FP32 (x)")
    c, hw = int(ops.p_channels.iloc[0]), int(ops.p_hw.iloc[0])
    ax.set_title(f"Single operators, {c} channels, {hw}x{hw} (below the dashed line INT8 is slower)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_conv1x1_sweep(sweep):
    """Conv1x1 INT8 speedup against channel count, per device and feature-map size."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    import seaborn as sns  # heavy: seaborn
    fig, ax = plt.subplots(figsize=(7, 3.8))
    data = sweep.assign(size=sweep.p_hw.map(lambda h: f"{h}x{h}"))
    sns.lineplot(data, x="p_channels", y="speedup", hue="device", style="size", markers=True,
                 dashes=True, ax=ax)
    _unity(ax)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(data.p_channels.unique()), [str(c) for c in sorted(data.p_channels.unique())])
    ax.set_xlabel("channels (in = out)")
    ax.set_ylabel("INT8 speedup over FP32 (x)")
    ax.set_title("Conv1x1 + BN + ReLU")
    fig.tight_layout()
    return fig


def plot_block_speedups(blocks):
    """Bars: INT8 speedup of each hyperspace block per stage, one panel per hyperspace."""
    import seaborn as sns  # heavy: seaborn
    data = blocks.assign(where=blocks.p_stage + ", " + blocks.p_hw.astype(int).astype(str)
                         + "x" + blocks.p_hw.astype(int).astype(str) + " input")
    g = sns.catplot(data, kind="bar", x="op_type", y="speedup", hue="device", col="where",
                    row="p_hyperspace", sharex=False, height=3.2, aspect=1.5, errorbar=None)
    for ax in g.axes.flat:
        _unity(ax)
        ax.tick_params(axis="x", rotation=30)
        ax.set_xlabel("")
    g.set_ylabels("INT8 speedup (x)")
    g.set_titles("{row_name}, {col_name}")
    sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
    g.figure.tight_layout()
    return g.figure
