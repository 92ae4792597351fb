"""One module per chapter of the book, named after its key in ``configs/chapters.yaml``.

A chapter module holds that chapter's plan (what its parameters decide), its tables, verdicts
and their thresholds, the values its text cites (glue) and its summary records; its figures are
in :mod:`spaceevo_lib.report` under the same name. Everything reusable lives in the stage
packages below this layer (``latency``, ``predictor``, ``train``...), which never import a
chapter. A chapter reads another chapter's results through one documented function of that
chapter's module (``load_results``, ``load_measurements``, ``load_predictor``), never by parsing
its files.
"""
