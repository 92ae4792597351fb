"""Figures of the chapter "A course on hardware-aware NAS for INT8" (also shown by the
introduction): the paper's pipeline (its Figure 3) drawn from the chapter list."""

from __future__ import annotations

import textwrap

from ..config import chapters

#: The paper's pipeline (Figure 3), step by step, and the chapter that runs each step here
#: (None: not in this book yet; the page says so instead of linking a placeholder).
PIPELINE = (
    ("INT8 latency of operators and models", "latency"),
    ("latency predictor per device", "predictor"),
    ("hyperspace of elastic stages", "space"),
    ("Q-T score + aging evolution over spaces", "qt"),
    ("INT8 training (LSQ+) and deployment", "int8"),
    ("block-wise INT8 distillation -> own lookup tables", "blockkd"),
    ("quantized-for-all supernet", "supernet"),
    ("SEQnet search, Table 1, Figure 1", None),
)


def plot_pipeline():
    """The paper's pipeline as numbered boxes in two rows (legible at the page's width), each
    labelled with the chapter that runs it here."""
    import matplotlib.pyplot as plt  # heavy: matplotlib

    known = chapters()
    n = len(PIPELINE)
    per_row = (n + 1) // 2
    w, h, gap_x, gap_y = 1.0, 1.0, 0.25, 0.45  # box size and gaps, in data units
    # 1 data unit = 1.75 in across and 1.5 in up: about 8.5 in (850 px inline) wide, shown at
    # 80-95 % in a text column 690-800 px wide, so that 12 pt text (17 characters a line) is
    # about as large as the page's own text
    width = per_row * w + (per_row - 1) * gap_x
    fig, ax = plt.subplots(figsize=(width * 1.75 + 0.2, (2 * h + gap_y) * 1.5 + 0.6))
    for i, (step, ch) in enumerate(PIPELINE):
        row, col = divmod(i, per_row)
        x, y = col * (w + gap_x), (1 - row) * (h + gap_y)
        done = ch is not None
        ax.add_patch(plt.Rectangle((x, y), w, h, fc="#cfe3f6" if done else "#eeeeee",
                                   ec="0.3", lw=1.2))
        ax.text(x + 0.05, y + h - 0.06, f"{i + 1}", ha="left", va="top", fontsize=10.5,
                fontweight="bold", color="0.25")
        label = "\n".join(textwrap.wrap(step.replace("->", "→"), 17))
        ax.text(x + w / 2, y + 0.55 * h, label, ha="center", va="center", fontsize=12,
                linespacing=1.15)
        ax.text(x + w / 2, y + 0.1 * h, known[ch].notebook.split(".")[0] if done else "not yet",
                ha="center", va="center", fontsize=11, style="italic",
                color="0.1" if done else "0.35")
        arrow = {"arrowstyle": "-|>", "lw": 1.4, "color": "0.25", "mutation_scale": 14}
        if i == n - 1:
            continue
        if col < per_row - 1:  # to the next box on the same row
            ax.annotate("", (x + w + gap_x, y + h / 2), (x + w, y + h / 2),
                        arrowprops={**arrow, "shrinkA": 0, "shrinkB": 1})
        else:  # from the end of the first row down to the start of the second
            mid = y - gap_y / 2
            ax.plot([x + w / 2, x + w / 2, w / 2], [y, mid, mid], color="0.25", lw=1.4,
                    solid_capstyle="butt")
            ax.annotate("", (w / 2, y - gap_y), (w / 2, mid),
                        arrowprops={**arrow, "shrinkA": 0, "shrinkB": 1})
    ax.set_xlim(-0.03, width + 0.03)
    ax.set_ylim(-0.03, 2 * h + gap_y + 0.03)
    ax.axis("off")
    ax.set_title("The paper's pipeline (Figure 3), and the chapter that runs each step here",
                 fontsize=13, pad=10)
    fig.tight_layout()
    return fig
