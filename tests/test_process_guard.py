"""The suite's process guard (``conftest.no_process_left_behind``) sees every process a test
started, also one whose parent is gone, and lets a test pass only when they have ended."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import leftover_processes, suite_processes


def test_an_orphaned_process_of_the_suite_is_found_and_an_ended_one_is_not():
    before = set(suite_processes())
    # the shell exits at once; its background `sleep` is re-parented to init, as a server
    # started by a stopped command would be
    subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 &"], check=True)
    left = leftover_processes(before, wait_s=0.5)
    assert len(left) == 1 and "sleep 30" in next(iter(left.values()))
    pid = next(iter(left))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid in suite_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover_processes(before, wait_s=0.5) == {}
