"""spaceevo_lib: the library behind the SpaceEvo reproduction book.

Notebooks import it as ``import spaceevo_lib as sel``. Stage packages hold reusable machinery
(``data``, ``space``, ``nn``, ``search``, ``export``, ``latency``, ``quant``, ``predictor``,
``supernet``, ``train``, ``blockkd``); ``chapters`` holds one module per chapter (its plan,
tables, verdicts, records) and ``report`` its figures. The layer order of these packages is
written in the README's layout table and checked by ``tests/test_layout.py``. Importing this
package has no side effects and does not import torch or TensorFlow: subpackages load on
first use.
"""

import importlib

from ._version import __version__
from .config import ParameterError, chapter_config, chapters, chapters_table, get_chapter
from .data import (CorruptDataError, DataError, MissingDataError, load_imagenette,
                   load_search_result, make_loaders, paper_table1, paper_value)
from .store import Run, record

_LAZY = ("blockkd", "book", "chapters", "data", "export", "host", "latency", "nn", "predictor",
         "quant", "report", "search", "space", "supernet", "train")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__", "ParameterError", "chapter_config", "chapters", "chapters_table",
    "get_chapter", "CorruptDataError", "DataError", "MissingDataError", "load_imagenette",
    "load_search_result", "make_loaders", "paper_table1", "paper_value", "Run", "record",
]
