"""Shared fixtures: data directory, an isolated store, and one smoke build of the whole book."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
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


# ----------------------------------------------------------------------------- process guard
#: Every process the suite starts inherits this environment variable (set before any test), so
#: that one left running is found even after its parent is gone (re-parented to init).
SESSION_MARK = "SPACEEVO_TEST_SESSION"
#: Processes that legitimately live as long as the pytest process (multiprocessing's).
LONG_LIVED = ("multiprocessing.resource_tracker",)


def pytest_configure(config):
    os.environ.setdefault(SESSION_MARK, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")


def suite_processes() -> dict[int, str]:
    """Live processes (not this one, not zombies) started by this test session: pid ->
    command line."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if mark not in (d / "environ").read_bytes().split(b"\0"):
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile, or is not ours to read
            continue
        if not any(name in cmd for name in LONG_LIVED):
            out[int(d.name)] = cmd.strip()
    return out


def _stop_library_pools() -> None:
    """The latency chapter's compile workers are kept between calls on purpose; a test ends
    them, as the interpreter's exit would."""
    jobs = sys.modules.get("spaceevo_lib.latency.jobs")
    if jobs is not None:
        jobs.shutdown_workers()


def leftover_processes(before: set[int], wait_s: float = 15.0) -> dict[int, str]:
    """Processes of the session not in ``before`` that are still alive after ``wait_s``."""
    _stop_library_pools()
    deadline = time.monotonic() + wait_s
    while True:
        left = {p: c for p, c in suite_processes().items() if p not in before}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _short(procs: dict[int, str]) -> dict[int, str]:
    return {pid: cmd[:160] for pid, cmd in procs.items()}


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Fail a test that leaves a process it started (or its children) running."""
    before = set(suite_processes())
    yield
    left = leftover_processes(before)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        pytest.fail(f"the test left {len(left)} process(es) running: {_short(left)}",
                    pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """After every test (session-scoped fixtures torn down too), nothing the suite started may
    still run."""
    left = leftover_processes(set())
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        print(f"\nprocess guard: {len(left)} process(es) started by the suite were still "
              f"running at its end (now killed): {_short(left)}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ----------------------------------------------------------------------------- stores


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
