"""The chapter "Scorecard": every chapter's headline numbers beside the paper's, from the
chapters' ``summary.json``."""

from __future__ import annotations

import pandas as pd

from ..config import chapters
from ..store import MissingResultError, Run, record


def collect_summaries(profile: str, names: list[str] | None = None) -> pd.DataFrame:
    """All ``summary.json`` records of a profile, one row each, with the chapter they came from.

    Chapters that have not been run at this profile are skipped (listed in ``.attrs['missing']``).
    """
    rows, missing = [], []
    for name in names or [n for n in chapters() if n != "scorecard"]:
        try:
            records = Run(name, profile).read_summary()
        except MissingResultError:
            missing.append(name)
            continue
        rows += [{"chapter": name, **r} for r in records]
    df = pd.DataFrame(rows, columns=["chapter", "name", "value", "unit", "paper"])
    df.attrs["missing"] = missing
    return df


def against_paper(df: pd.DataFrame) -> pd.DataFrame:
    """The records the paper has a value for, with this host / paper as a ratio: one row per
    claim (record name). A claim recorded by several chapters (e.g. a SEQnet's speedup, measured
    by the latency chapter and shown again by the space chapter) keeps the first chapter's
    value in book order; ``also_in`` names the others."""
    out = df[df.paper.notna()].copy()
    out["value"] = pd.to_numeric(out["value"])
    out["paper"] = pd.to_numeric(out["paper"])
    also = out.groupby("name", sort=False)["chapter"].agg(lambda c: ", ".join(c.iloc[1:]))
    out = out.drop_duplicates("name", keep="first")
    out["also_in"] = out["name"].map(also)
    out["this host / paper"] = out["value"] / out["paper"]
    return out.reset_index(drop=True)


def summary_records(records: pd.DataFrame, cmp: pd.DataFrame) -> list[dict]:
    """How many records the book made, and how many stand beside a paper value."""
    return [record("records_with_paper_value", len(cmp), "records"),
            record("records", len(records), "records")]
