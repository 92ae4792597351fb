"""What the book shows: one module of figures per chapter (named after the chapter's key:
``report.int8`` draws the INT8 chapter's figures), the study's setup beside the paper's and
this host's facts (:mod:`.study`), and how a table is rendered on a page (:mod:`.tables`).
Figures take the chapters' tables and import matplotlib only when drawing.
"""

from .study import host_table, substitutions
from .tables import table

__all__ = ["host_table", "substitutions", "table"]
