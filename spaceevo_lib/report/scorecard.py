"""Figures of the chapter "Scorecard"."""

from __future__ import annotations

import numpy as np


def plot_against_paper(cmp, unit: str = "x"):
    """Bars of this host's value and the paper's for every record in ``unit`` (speedups)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    d = cmp[cmp.unit == unit]
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(d), 4) + 1))
    y = np.arange(len(d))
    ax.barh(y - 0.2, d["value"], 0.4, label="this host")
    ax.barh(y + 0.2, d["paper"], 0.4, label="paper")
    ax.axvline(1.0, color="0.3", lw=1, ls="--")
    ax.set_yticks(y, d["name"])
    ax.invert_yaxis()
    ax.set_xlabel(f"value ({unit})")
    ax.set_title("This host vs the paper (INT8 speedup over FP32)")
    ax.legend()
    fig.tight_layout()
    return fig
