"""The chapter "A course on hardware-aware NAS for INT8": a learning path through the chapters,
with each chapter's measured wall time read from this build's run folders, and assignments
that rerun a chapter with papermill parameters."""

from __future__ import annotations

import pandas as pd

from ..book import timings
from ..config import chapters
from ..store import record

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
     "chapters": ("blockkd",), "exercises": ("ex-kd-table", "ex-kd-limits")},
    {"session": 7, "title": "One supernet, every subnet in INT8",
     "objectives": "train a weight-sharing supernet with the sandwich rule in FP32 and LSQ+; "
                   "judge Figure 1, the proxy and weight sharing by stated rules and intervals",
     "chapters": ("supernet",), "exercises": ("ex-sn-epochs", "ex-sn-window")},
    {"session": 8, "title": "Searching subnets under a latency limit, and judging the paper",
     "objectives": "search a supernet under INT8 latency limits and beat random sampling at "
                   "equal cost; measure Table 1 from deployed files; read each claim's verdict",
     "chapters": ("search", "scorecard"), "exercises": ("ex-se-window", "ex-se-random")},
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


def course_summary(table, profile: str) -> list[dict]:
    """The page's records: sessions, and the measured minutes of the whole path at
    ``profile`` (when every chapter of it has run in this build)."""
    out = [record("course/sessions", len(table), "sessions")]
    total = float(table[f"measured minutes ({profile})"].sum(skipna=False))
    if total == total:  # not NaN
        out.append(record(f"course/minutes/{profile}", round(total, 1), "min"))
    return out


def assignments_table() -> pd.DataFrame:
    """The assignments and the command that runs each."""
    return pd.DataFrame(ASSIGNMENTS, columns=["assignment", "command"])
