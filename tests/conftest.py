"""Shared fixtures: data directory, an isolated store, and one smoke build of the whole book."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spaceevo_lib.settings import DATA_ENV, RUNS_ENV, data_dir, project_root

BOOK_FILES = ("_config.yml", "_toc.yml", "book/README.md", "book/_static/spaceevo.css")


def have_imagenette() -> bool:
    return (data_dir() / "imagenette" / "imagenette-32.npz").is_file()


needs_data = pytest.mark.skipif(
    not have_imagenette(),
    reason=f"no Imagenette in {data_dir()}: set {DATA_ENV} (CI sets ../shared/data)")


def have_reference() -> bool:
    return (data_dir() / "spaceevo-reference" / "search_result.yaml").is_file()


needs_reference = pytest.mark.skipif(
    not have_reference(),
    reason=f"no SpaceEvo reference files in {data_dir()}: set {DATA_ENV} (CI sets ../shared/data)")


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """An empty artifact store for one test."""
    path = tmp_path / "runs"
    monkeypatch.setenv(RUNS_ENV, str(path))
    return path


def stage_book(dest: Path) -> Path:
    """A copy of the book's sources, so that tests never write into the checkout."""
    for rel in BOOK_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_root() / rel, dest / rel)
    return dest


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """Every chapter executed at profile smoke and the HTML built, once per session."""
    if not have_imagenette():
        pytest.skip(f"no Imagenette in {data_dir()}: set {DATA_ENV}")
    from spaceevo_lib import book
    root = stage_book(tmp_path_factory.mktemp("book"))
    mp = pytest.MonkeyPatch()
    mp.setenv(RUNS_ENV, str(root / "runs"))
    try:
        book.build_book("smoke", root=root, progress=False)
        yield root
    finally:
        mp.undo()
