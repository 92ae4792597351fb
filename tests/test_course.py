"""The course page's path covers the book: every chapter in a session, every exercise it names
exists in that session's chapters, the pipeline names real chapters; times come from the run
folders."""

import json
import re

from spaceevo_lib.config import chapters
from spaceevo_lib.chapters import course
from spaceevo_lib.report.course import PIPELINE
from spaceevo_lib.settings import project_root


def _labels(name):
    text = (project_root() / "notebooks" / chapters()[name].notebook).read_text()
    return set(re.findall(r"label: (ex-[a-z0-9-]+)", text))


def test_every_chapter_is_in_a_session_and_exercises_exist():
    in_sessions = [c for s in course.SESSIONS for c in s["chapters"]]
    assert set(chapters()) - {"course"} == set(in_sessions)
    for s in course.SESSIONS:
        have = set().union(*(_labels(c) for c in s["chapters"]))
        assert set(s["exercises"]) <= have, (s["title"], set(s["exercises"]) - have)
    assert {c for _, c in PIPELINE if c} <= set(chapters())


def test_session_times_are_read_from_timing_files(runs):
    sessions = course.session_table("smoke")
    col = "measured minutes (smoke)"
    assert sessions[col].isna().all()  # nothing has run in this empty store
    for name in ("intro", "data", "latency"):
        d = runs / "smoke" / name
        d.mkdir(parents=True)
        (d / "timing.json").write_text(json.dumps({"profile": "smoke", "seconds": 60.0,
                                                   "finished": "now"}))
    sessions = course.session_table("smoke")
    assert sessions.loc[0, col] == 3.0 and sessions[col].iloc[1:].isna().all()
    assert [r["name"] for r in course.course_summary(sessions, "smoke")] == ["course/sessions"]


def test_assignments_name_real_chapters_and_parameters():
    for _, cmd in course.ASSIGNMENTS:
        nb, param = re.search(r"NB=(\S+) PARAMS=\"-p (\S+)", cmd).groups()
        assert param in chapters()[nb].params
