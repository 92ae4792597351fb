"""Figures of the chapter "SEQnet search and Table 1": each search's progress, and INT8 top-1
against INT8 latency measured from the files (one panel per device)."""

from __future__ import annotations

#: Marker per kind of row.
MARKERS = {"baseline": "s", "SEQnet": "o", "control": "D"}


def plot_search(history):
    """Best held-out INT8 top-1 so far against evaluations, one line per (space, limit)."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for (device, space, limit), h in history.groupby(["device", "space", "limit"], sort=False):
        ax.step(h.evaluated, h.best_so_far, where="post", label=f"{space} {limit} ({device})")
    ax.set_xlabel("subnets evaluated")
    ax.set_ylabel("best held-out INT8 top-1 (%)")
    ax.set_title("Subnet search, one line per space and latency limit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pareto(table):
    """Per device: INT8 top-1 of every file against its measured INT8 latency; found
    subnets of each space joined by a line in latency order."""
    import matplotlib.pyplot as plt  # heavy: matplotlib
    devices = list(dict.fromkeys(table.device))
    fig, axes = plt.subplots(1, len(devices), figsize=(5 * len(devices), 3.8), squeeze=False)
    for ax, device in zip(axes[0], devices):
        t = table[table.device == device]
        for i, (kind, g) in enumerate(t.groupby("kind", sort=False)):
            g = g.sort_values("int8_ms")
            style = "-" if kind.endswith("SEQnet") or kind.endswith("subnet") else ""
            ax.plot(g.int8_ms, g.top1_int8, style, marker=MARKERS.get(kind, "^"),
                    color=f"C{i}", label=kind)
            for r in g.itertuples():
                ax.annotate(r.model, (r.int8_ms, r.top1_int8), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("INT8 latency measured from the file (ms)")
        ax.set_ylabel("INT8 top-1 of the file (%)")
        ax.set_title(device)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
