"""Every chapter executes at profile smoke, the book builds, and chapters fail loudly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spaceevo_lib import book
from spaceevo_lib.config import chapters
from spaceevo_lib.settings import RUNS_ENV
from spaceevo_lib.store import OPTIONAL_FIELDS, SUMMARY_FIELDS

pytestmark = pytest.mark.slow


def test_every_chapter_executes_and_the_book_builds(smoke_book):
    html = smoke_book / "_build" / "html"
    assert (html / "index.html").is_file()
    for ch in chapters().values():
        page = html / "book" / "chapters" / ch.notebook.replace(".ipynb", ".html")
        assert page.is_file(), page
        assert ch.title.split()[0] in page.read_text()


def test_every_chapter_writes_a_valid_summary(smoke_book):
    for name in chapters():
        summary = json.loads((smoke_book / "runs" / "smoke" / name / "summary.json").read_text())
        assert summary, name
        for r in summary:
            # (a verdict may be null: "not tested here")
            assert tuple(r)[:4] == SUMMARY_FIELDS and (r["value"] is not None
                                                       or r["unit"] == "verdict")
            assert set(r) <= set(SUMMARY_FIELDS + OPTIONAL_FIELDS)
            if "artifact" in r:  # a deployed file's record names a file of the run
                assert (smoke_book / "runs" / "smoke" / name / r["artifact"]).is_file()


def test_the_injected_parameters_cell_is_shown_once_and_labelled(smoke_book):
    from spaceevo_lib.book import INJECTED_LABEL
    for ch in chapters().values():
        nb = json.loads((smoke_book / "book" / "chapters" / ch.notebook).read_text())
        injected = [c for c in nb["cells"]
                    if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(injected) == 1, ch.notebook
        src = "".join(injected[0]["source"])
        assert src.startswith(INJECTED_LABEL) and 'profile = "smoke"' in src


def test_no_page_shows_a_stray_return_value(smoke_book):
    """A cell's last expression is displayed: paths and run-store handles returned by
    bookkeeping calls must not reach the reader (nor the builder's absolute paths)."""
    for ch in chapters().values():
        nb = json.loads((smoke_book / "book" / "chapters" / ch.notebook).read_text())
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("data", {}).get("text/plain", ""))
                assert "PosixPath(" not in text, (ch.notebook, cell.get("id"), text[:200])


def test_data_summary_numbers(smoke_book):
    s = {r["name"]: r["value"] for r in
         json.loads((smoke_book / "runs" / "smoke" / "data" / "summary.json").read_text())}
    assert s["images/train"] == 9469 and s["images/test"] == 3925 and s["resolution"] == 32


def test_rerun_with_new_parameter_changes_the_page(smoke_book, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(smoke_book / "runs"))
    page = smoke_book / "_build" / "html" / "book" / "chapters" / "01_data.html"
    assert "32 x 32 px" in page.read_text()
    book.run_chapter("data", {"profile": "smoke", "resolution": 64}, root=smoke_book)
    book.build_html(smoke_book)
    text = page.read_text()
    assert "64 x 64 px" in text and "32 x 32 px" not in text
    # put the smoke page back for the other tests
    book.run_chapter("data", {"profile": "smoke"}, root=smoke_book)
    book.build_html(smoke_book)


def _papermill(tmp_path, *params):
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "01_data.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(nb), str(tmp_path / "out.ipynb"),
           "-p", "profile", "smoke", *params]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("params, message", [
    (("-p", "resoluton", "32"), "unknown parameter 'resoluton' for chapter 'data'"),
    (("-p", "resolution", "48"), "parameter 'resolution' of chapter 'data' must be one of 32, 64"),
    (("-p", "resolution", "big"), "must be one of 32, 64 (image side in pixels"),
    (("-p", "profile", "fast"), "unknown profile 'fast'; allowed: smoke, default, paper"),
])
def test_papermill_with_wrong_parameters_stops_with_a_clear_message(tmp_path, runs, params,
                                                                     message):
    proc = _papermill(tmp_path, *params)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (runs / "smoke" / "data").exists()  # stopped before writing anything


def test_cli_rejects_bad_parameters_before_running(tmp_path, runs):
    from spaceevo_lib.cli import main
    assert main(["chapter", "data", "-p", "grid_per_class", "99", "--no-html"]) == 2
    assert main(["chapter", "nope", "--no-html"]) == 2
    assert not runs.exists()


def test_failing_cell_names_chapter_notebook_and_cell(tmp_path, runs, monkeypatch):
    from conftest import stage_book
    monkeypatch.setenv("SPACEEVO_DATA_DIR", str(tmp_path / "empty"))
    root = stage_book(tmp_path / "root")
    with pytest.raises(book.ChapterFailed) as e:
        book.run_chapter("data", {"profile": "smoke"}, root=root)
    msg = str(e.value)
    assert "chapter 'data'" in msg and "notebooks/01_data.ipynb" in msg and "cell" in msg
    assert "MissingDataError" in msg and "spaceevo fetch imagenette" in msg
    assert not (root / "book" / "chapters" / "01_data.ipynb").exists()
    assert (root / "_build" / "failed" / "01_data.ipynb").is_file()
