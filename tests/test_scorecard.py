"""The scorecard: one row per claim, whichever chapters record it."""

from __future__ import annotations

import pandas as pd

from spaceevo_lib.chapters.scorecard import against_paper


def test_a_claim_recorded_by_two_chapters_is_one_row():
    df = pd.DataFrame([
        {"chapter": "latency", "name": "speedup/ort-vnni/SEQnet@vnni-A0", "value": 2.2,
         "unit": "x", "paper": 2.0},
        {"chapter": "latency", "name": "fps", "value": 3, "unit": "1/s", "paper": None},
        {"chapter": "space", "name": "speedup/ort-vnni/SEQnet@vnni-A0", "value": 2.1,
         "unit": "x", "paper": 2.0},
        {"chapter": "space", "name": "mflops/SEQnet@vnni-A0", "value": 160, "unit": "MFLOPs",
         "paper": 163},
    ])
    cmp = against_paper(df)
    assert list(cmp.name) == ["speedup/ort-vnni/SEQnet@vnni-A0", "mflops/SEQnet@vnni-A0"]
    first = cmp.iloc[0]
    assert first.chapter == "latency" and first.value == 2.2 and first.also_in == "space"
    assert first["this host / paper"] == 2.2 / 2.0 and cmp.iloc[1].also_in == ""
