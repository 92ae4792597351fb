"""How the book shows a table: no row index, numbers rounded, long text not truncated."""

from __future__ import annotations


def table(df, precision: int = 2):
    """A pandas Styler of ``df`` for a book page (the DataFrame itself stays untouched)."""
    return df.style.hide(axis="index").format(precision=precision)
