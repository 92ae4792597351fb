"""How the book shows a table: no row index, numbers rounded, long text not truncated, a
missing value shown as an em dash (never ``nan``, ``None`` or ``<NA>``), and long
snake_case column names allowed to break after their underscores so that tables stay narrow."""

from __future__ import annotations

import html

#: What a missing value (NaN, None, ``pd.NA``, NaT) looks like in a book table.
MISSING = "—"

#: Text cells that are a missing value already turned into a string (``str(None)``, ...):
#: shown as missing too.
SPELLED_MISSING = ("nan", "NaN", "None", "<NA>", "NaT")


def _breakable(label) -> str:
    """A column label as HTML that may break after each ``_`` (``<wbr>``: no visible mark,
    nothing added when the text is copied)."""
    return html.escape(str(label)).replace("_", "_<wbr>")


def table(df, precision: int = 2, na_rep: str = MISSING):
    """A pandas Styler of ``df`` for a book page (the DataFrame itself stays untouched).

    Missing values in the body, and text cells that spell one (:data:`SPELLED_MISSING`), are
    shown as ``na_rep`` (an em dash by default; ``""`` leaves the cell blank). A table still
    wider than the text column scrolls sideways inside it (``book/_static/spaceevo.css``).
    """
    spelled = df.isin(SPELLED_MISSING)
    hit = [i for i in range(df.shape[1]) if spelled.iloc[:, i].any()]
    if hit:  # only those columns change, on a copy (other columns keep their dtypes)
        df = df.copy()
        for i in hit:
            df.isetitem(i, df.iloc[:, i].mask(spelled.iloc[:, i]))
    return (df.style.hide(axis="index")
            .format(precision=precision, na_rep=na_rep)
            .format_index(_breakable, axis="columns"))
