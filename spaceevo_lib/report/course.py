"""The course page: a learning path through the chapters for a NAS course, with each chapter's
measured wall time read from this build's run folders, and the paper's pipeline (its
Figure 3) drawn from the chapter list."""

from __future__ import annotations

#: The paper's pipeline (Figure 3), step by step, and the chapter that runs each step here
#: (None: not in this book yet; the page says so instead of linking a placeholder).
PIPELINE = (
    ("INT8 latency of operators and models", "latency"),
    ("latency predictor per device", "predictor"),
    ("hyperspace of elastic stages", "space"),
    ("Q-T score + aging evolution over spaces", "qt"),
    ("INT8 training (LSQ+) and deployment", "int8"),
    ("block-wise INT8 distillation -> own lookup tables", "blockkd"),
    ("quantized-for-all supernet", None),
    ("SEQnet search, Table 1, Figure 1", None),
)

#: Sessions of a course: objectives, chapters, exercises (labels in the chapters).
SESSIONS = (
    {"session": 1, "title": "Why INT8 latency is not FLOPs",
     "objectives": "measure INT8 vs FP32 latency on two runtimes; explain why some operators "
                   "get slower in INT8",
     "chapters": ("intro", "data", "latency"),
     "exercises": ("ex-data-32px", "ex-lat-qdq", "ex-lat-threads")},
    {"session": 2, "title": "Predicting latency",
     "objectives": "build a block-level latency predictor; judge it against the ground "
                   "truth's own repeatability",
     "chapters": ("predictor",), "exercises": ("ex-pred-scalar", "ex-pred-visits")},
    {"session": 3, "title": "Search spaces as objects",
     "objectives": "read hyperspaces, width windows and space encodings; count a space",
     "chapters": ("space",), "exercises": ("ex-space-count", "ex-space-k3")},
    {"session": 4, "title": "Searching for a space",
     "objectives": "compute the Q-T score; run aging evolution; read error bars on scores",
     "chapters": ("qt",), "exercises": ("ex-qt-quirk", "ex-qt-t")},
    {"session": 5, "title": "Training and deploying INT8",
     "objectives": "fine-tune with LSQ+; deploy one file and measure its accuracy and latency "
                   "from that file",
     "chapters": ("int8",), "exercises": ("ex-int8-open", "ex-int8-per-tensor")},
    {"session": 6, "title": "Designing a space for your hardware",
     "objectives": "distil stage students block by block in INT8; build lookup tables; "
                   "evolve a space per device and compare it with hand-designed ones",
     "chapters": ("blockkd", "scorecard"), "exercises": ("ex-kd-table", "ex-kd-limits")},
)

#: Assignments that rerun a chapter with papermill parameters.
ASSIGNMENTS = (
    ("Rerun the latency chapter with onnxruntime's QDQ format and explain the difference in "
     "INT8 speedup", 'make chapter NB=latency PARAMS="-p quant_format qdq-s8s8"'),
    ("Fine-tune with one weight scale per tensor, as the paper's code does; which network "
     "loses more?", 'make chapter NB=int8 PARAMS="-p per_channel false"'),
    ("Replay the space search with the released code's fixed initial blocks; does the best "
     "space change?", 'make chapter NB=qt PARAMS="-p replay_quirk true"'),
)


def session_table(profile: str):
    """One row per session: objectives, chapters, exercises, and the chapters' wall time in
    this build at ``profile`` (from their ``timing.json``; NaN where a chapter has not run)."""
    import pandas as pd

    from ..book import timings
    from ..config import chapters
    known = chapters()
    rows = []
    for s in SESSIONS:
        secs = []
        for ch in s["chapters"]:
            t = [x["seconds"] for x in timings(ch) if x["profile"] == profile]
            secs.append(t[0] if t else float("nan"))
        rows.append({"session": s["session"], "title": s["title"],
                     "objectives": s["objectives"],
                     "chapters": ", ".join(known[c].title for c in s["chapters"]),
                     "exercises": ", ".join(s["exercises"]),
                     f"measured minutes ({profile})": round(sum(secs) / 60, 1)})
    return pd.DataFrame(rows)


def plot_pipeline():
    """The paper's pipeline as boxes, each labelled with the chapter that runs it here."""
    import textwrap

    import matplotlib.pyplot as plt

    from ..config import chapters
    known = chapters()
    fig, ax = plt.subplots(figsize=(11, 2.6))
    n = len(PIPELINE)
    for i, (step, ch) in enumerate(PIPELINE):
        done = ch is not None
        ax.add_patch(plt.Rectangle((i, 0), 0.86, 1, fc="#cfe3f6" if done else "#eeeeee",
                                   ec="0.3", lw=1))
        ax.text(i + 0.43, 0.62, "\n".join(textwrap.wrap(step, 15)), ha="center",
                va="center", fontsize=7.5)
        ax.text(i + 0.43, 0.18, known[ch].notebook.split(".")[0] if done else "not yet",
                ha="center", va="center", fontsize=7, style="italic")
        if i < n - 1:
            ax.annotate("", (i + 1.0, 0.5), (i + 0.86, 0.5),
                        arrowprops={"arrowstyle": "->", "lw": 1})
    ax.set_xlim(-0.05, n)
    ax.set_ylim(-0.05, 1.05)
    ax.axis("off")
    ax.set_title("The paper's pipeline (Figure 3), and the chapter that runs each step here")
    fig.tight_layout()
    return fig


def course_summary(table, profile: str) -> list[dict]:
    """The page's records: sessions, and the measured minutes of the whole path at
    ``profile`` (when every chapter of it has run in this build)."""
    from ..store import record
    out = [record("course/sessions", len(table), "sessions")]
    total = float(table[f"measured minutes ({profile})"].sum(skipna=False))
    if total == total:  # not NaN
        out.append(record(f"course/minutes/{profile}", round(total, 1), "min"))
    return out
