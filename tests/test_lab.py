"""`make lab` / `spaceevo lab`: JupyterLab starts on the notebooks with this environment as the
kernel and the chosen profile for the kernels."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from spaceevo_lib.config import ParameterError, chapter_config
from spaceevo_lib.settings import PROFILE_ENV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_lab_answers_on_localhost_and_stops_with_its_command(tmp_path):
    """The kernel is this environment; stopping `spaceevo lab` (SIGTERM, as a process manager
    or this test does) stops the server: the port closes and no JupyterLab process is left."""
    from conftest import suite_processes
    port, token = _free_port(), "spaceevo-test"
    cli = Path(sys.executable).with_name("spaceevo")
    proc = subprocess.Popen([str(cli), "lab", "--no-browser", "--port", str(port),
                             "--token", token], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                specs = _get(f"{base}/api/kernelspecs?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        argv0 = specs["kernelspecs"][specs["default"]]["spec"]["argv"][0]
        assert argv0 in ("python", sys.executable) or Path(argv0).resolve() == \
            Path(sys.executable).resolve()
        listing = _get(f"{base}/api/contents/notebooks?token={token}")
        names = {c["name"] for c in listing["content"]}
        assert "01_data.ipynb" in names
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=5) as r:
            assert r.status == 200
        servers = [p for p, cmd in suite_processes().items()
                   if "jupyterlab" in cmd and str(port) in cmd]
        assert servers == [proc.pid]  # JupyterLab is the `spaceevo lab` process itself
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not _port_open(port)
    assert not [p for p, cmd in suite_processes().items() if "jupyterlab" in cmd]


def test_lab_profile_replaces_only_the_cells_default(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    assert chapter_config("data", profile="default").profile == "smoke"
    assert chapter_config("data", profile="paper").profile == "paper"  # chosen in the cell
    monkeypatch.setenv(PROFILE_ENV, "fast")
    with pytest.raises(ParameterError, match="SPACEEVO_PROFILE='fast' is not a profile"):
        chapter_config("data", profile="default")


def test_book_commands_ignore_the_lab_profile(monkeypatch, tmp_path):
    """`make book` typed in a JupyterLab terminal runs its own profile, not the lab's."""
    from spaceevo_lib import book
    seen = {}

    def fake(name, params, root, progress, pm, err):
        seen["env"] = os.environ.get(PROFILE_ENV)
        seen["profile"] = chapter_config(name, **params).profile
        return tmp_path

    monkeypatch.setenv(PROFILE_ENV, "smoke")
    monkeypatch.setattr(book, "_run_chapter", fake)
    book.run_chapter("data", {"profile": "default"})
    assert seen == {"env": None, "profile": "default"}
    assert os.environ[PROFILE_ENV] == "smoke"  # restored for the lab
