"""Figures of the chapter "The search spaces": hyperspaces drawn with their width windows."""

from __future__ import annotations

from ..space import get_hyperspace


def plot_hyperspace(name: str, space=None):
    """Each stage's width list as dots, its windows as bars; a space's choice highlighted."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    hs = get_hyperspace(name)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(hs.stages) + 1.2))
    for row, s in enumerate(hs.stages):
        ax.scatter(s.widths, [row] * len(s.widths), color="0.2", s=14, zorder=3)
        if s.name in hs.searchable_stages:
            for j in range(s.n_windows):
                w = s.window(j)
                ax.plot([w[0], w[-1]], [row + 0.12 + 0.06 * j] * 2, color="tab:blue",
                        alpha=0.35, lw=2)
        if space is not None:
            code, widths = space.describe()[s.name]
            ax.plot([widths[0], widths[-1]], [row - 0.15] * 2, color="tab:red", lw=4)
            ax.annotate(code, (widths[-1], row - 0.15), xytext=(6, -3),
                        textcoords="offset points", fontsize=7, color="tab:red")
    ax.set_yticks(range(len(hs.stages)), [s.name for s in hs.stages])
    ax.invert_yaxis()
    ax.set_xlabel("output width (channels)")
    title = f"Hyperspace {name}: width lists (dots) and width windows (blue)"
    ax.set_title(title + (f"; space {space.encode()} in red" if space is not None else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig
