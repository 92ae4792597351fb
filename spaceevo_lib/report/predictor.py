"""Figures of the predictor chapter: predicted vs measured, additivity, kernel costs."""

from __future__ import annotations

import numpy as np


def plot_validation_scatter(validation, band: float = 10.0):
    """Predicted vs measured latency of held-out networks, one panel per device x precision,
    with the +-``band`` % corridor; SEQnets and the torchvision baseline are marked."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    from matplotlib.ticker import NullFormatter, ScalarFormatter  # heavy: matplotlib
    hs_col = validation.hyperspace if "hyperspace" in validation else [""] * len(validation)
    panels = list(dict.fromkeys(zip(validation.device, hs_col, validation.precision)))
    cols = min(4, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.5 * cols, 3.4 * rows_n), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (dev, hs, prec) in zip(axes.ravel(), panels):
        d = validation[(validation.device == dev) & (hs_col == hs) &
                       (validation.precision == prec)]
        rnd = d[d.name == "random"]
        seq = d[d.name.str.startswith("SEQnet")]
        base = d[(d.name != "random") & ~d.name.str.startswith("SEQnet")]
        ax.scatter(rnd.measured_ms, rnd.predicted_ms, s=12, alpha=0.7, label="random subnets")
        ax.scatter(seq.measured_ms, seq.predicted_ms, s=40, marker="*", color="C3",
                   label="published SEQnets")
        ax.scatter(base.measured_ms, base.predicted_ms, s=30, marker="D", color="C2",
                   label="torchvision baseline")
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
        ax.set_title(f"{dev} {hs} {prec.upper()}\n{within:.0f} % within +-{band:g} %",
                     fontsize=9)
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_additivity(additivity):
    """Sum of separately measured blocks over the measured whole subnet, per device and
    precision (1 = perfectly additive)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    rows = []
    keys = [c for c in ("device", "hyperspace", "precision") if c in additivity]
    for key, g in additivity.groupby(keys, sort=False):
        rows.append(("\n".join(str(k) for k in key[:-1]) + f"\n{key[-1].upper()}",
                     g["sum_over_whole"].to_numpy()))
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
    import matplotlib.pyplot as plt  # heavy: matplotlib
    import seaborn as sns  # heavy: seaborn
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


def plot_visits(visits, title: str = ""):
    """Each network's fastest run per visit, relative to its fastest run of all visits,
    against the time of the visit: the machine's phases, and why one block of runs is not
    enough (median over networks as a line)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    v = visits.copy()
    v["rel"] = v["min_ms"] / v.groupby(["key", "precision"])["min_ms"].transform("min")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, prec in zip(axes, ("fp32", "int8")):
        d = v[v.precision == prec]
        ax.scatter(d["t_s"], d["rel"], s=5, alpha=0.35)
        med = d.groupby("round").agg(t=("t_s", "median"), rel=("rel", "median"))
        ax.plot(med.t, med.rel, color="C3", lw=1.5, label="median over networks")
        ax.axhline(1.10, color="0.5", ls=":", lw=1)
        ax.set_xlabel("time of the visit (s)")
        ax.set_title(f"{prec.upper()} {title}", fontsize=9)
    axes[0].set_ylabel("visit's fastest run / overall fastest")
    axes[0].set_ylim(0.98, min(2.0, float(v["rel"].quantile(0.99)) + 0.05))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
