"""Where the study reads data and writes results, from environment variables.

``SPACEEVO_DATA_DIR``  input data (Imagenette arrays, the paper's reference artifacts);
                       default ``<project>/data``. CI points it at ``../shared/data``.
``SPACEEVO_RUNS_DIR``  the artifact store, one folder per profile and chapter;
                       default ``<project>/runs``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SPACEEVO_DATA_DIR"
RUNS_ENV = "SPACEEVO_RUNS_DIR"
#: The profile a notebook uses when its parameters cell says "default" (set by `make lab`, so
#: that students run chapters cell by cell at smoke); papermill and `make book` pass theirs.
PROFILE_ENV = "SPACEEVO_PROFILE"


def project_root() -> Path:
    """The checkout holding this package (editable install), else the current directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_dir() -> Path:
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / "data"


def runs_dir() -> Path:
    env = os.environ.get(RUNS_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / "runs"
