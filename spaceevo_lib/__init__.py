"""spaceevo_lib: the library behind the SpaceEvo reproduction book.

Notebooks import it as ``import spaceevo_lib as sel`` and call these verbs; each pipeline
stage has its own subpackage (``data``, ``nn``, ``space``, ``export``, ``latency``,
``predictor``, ``search``, ``supernet``, ``report``; ``quant``, ``train`` as the book grows). Importing it has no side effects and does not import
torch or TensorFlow.
"""

__version__ = "0.2.0"

from . import book, data, host, report  # noqa: E402
from .config import (ParameterError, chapter_config, chapters, chapters_table,  # noqa: E402
                     get_chapter)
from .data import (CorruptDataError, DataError, MissingDataError, load_imagenette,  # noqa: E402
                   load_lut, load_search_result, make_loaders)
from .report import paper_table1, paper_value  # noqa: E402
from .store import Run, record  # noqa: E402

_LAZY = ("export", "latency", "nn", "predictor", "quant", "search", "space", "supernet",
         "train")  # import torch / runtimes: loaded on first use


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__", "book", "data", "host", "report", "ParameterError", "chapter_config",
    "chapters", "chapters_table", "get_chapter",
    "CorruptDataError", "DataError", "MissingDataError", "load_imagenette", "load_lut",
    "load_search_result", "make_loaders", "paper_table1", "paper_value", "Run", "record",
]
