"""What the book shows: the paper's reference values, host facts and the figures of each chapter."""

from . import course  # noqa: F401  (sel.report.course)
from .paper import paper_claims, paper_code_release, paper_setup, paper_source, paper_table1, paper_value
from .scorecard import against_paper, collect_summaries, plot_against_paper
from .study import host_table, substitutions
from .tables import table

__all__ = ["against_paper", "collect_summaries", "plot_against_paper", "paper_claims", "paper_code_release", "paper_setup", "paper_source", "paper_table1", "paper_value", "host_table",
           "substitutions", "table"]
