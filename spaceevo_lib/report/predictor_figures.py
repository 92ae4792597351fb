"""Figures of the predictor chapter: predicted vs measured, additivity, kernel costs."""

from __future__ import annotations

import numpy as np


def plot_validation_scatter(validation, band: float = 10.0):
    """Predicted vs measured latency of held-out networks, one panel per device x precision,
    with the +-``band`` % corridor; SEQnets and the torchvision baseline are marked."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    panels = list(dict.fromkeys(zip(validation.device, validation.precision)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (dev, prec) in zip(axes[0], panels):
        d = validation[(validation.device == dev) & (validation.precision == prec)]
        rnd = d[d.name == "random"]
        seq = d[d.name.str.startswith("SEQnet")]
        base = d[(d.name != "random") & ~d.name.str.startswith("SEQnet")]
        ax.scatter(rnd.measured_ms, rnd.predicted_ms, s=12, alpha=0.7, label="random subnets")
        ax.scatter(seq.measured_ms, seq.predicted_ms, s=40, marker="*", color="C3",
                   label="published SEQnets")
        ax.scatter(base.measured_ms, base.predicted_ms, s=30, marker="D", color="C2",
                   label="torchvision MobileNetV2")
        lo = 0.8 * min(d.measured_ms.min(), d.predicted_ms.min())
        hi = 1.2 * max(d.measured_ms.max(), d.predicted_ms.max())
        x = np.array([lo, hi])
        ax.plot(x, x, color="0.3", lw=1)
        ax.fill_between(x, x * (1 - band / 100), x * (1 + band / 100), color="0.85", zorder=0,
                        label=f"+-{band:g} %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, no crowded minor labels
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        within = 100 * np.mean(np.abs(d.error_pct) <= band)
        ax.set_title(f"{dev} {prec.upper()}: {within:.0f} % within +-{band:g} %", fontsize=9)
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_additivity(additivity):
    """Sum of separately measured blocks over the measured whole subnet, per device and
    precision (1 = perfectly additive)."""
    import matplotlib.pyplot as plt
    rows = []
    for (dev, prec), g in additivity.groupby(["device", "precision"], sort=False):
        rows.append((f"{dev}\n{prec.upper()}", g["sum_over_whole"].to_numpy()))
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.2))
    for i, (label, vals) in enumerate(rows):
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=18)
    ax.axhline(1.0, color="0.3", lw=1, ls="--")
    ax.axhspan(0.9, 1.1, color="0.9", zorder=0)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_ylabel("sum of blocks / whole subnet")
    ax.set_title("Additivity: isolated blocks vs the whole network (band: +-10 %)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_kernel_costs(costs):
    """The linear kernel model's costs per device x precision: what each kind of work costs on
    each runtime, in ns per MAC, per element or per kernel (= ms per million)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(10, 3.6))
    sns.barplot(costs, x="feature", y="ms_per_million", hue="target", ax=ax)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("")
    ax.set_ylabel("ns per MAC / element / kernel")
    ax.tick_params(axis="x", rotation=40)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
