"""Finding and killing an exec's process tree from /proc (exec_pids), on a real process tree: a
shell (the "shim") whose new child appears after the tracker looked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

import pytest

from pocketkube.agent.runtime.cri import exec_pids

pytestmark = pytest.mark.unit


async def test_tracker_finds_the_new_child_and_kills_its_tree():
    # The "shim": a shell with one "container" child already running; the "exec" comes later.
    shim = subprocess.Popen(["sh", "-c", "sleep 600 & read go; sh -c 'sleep 601 & wait' & wait"],
                            stdin=subprocess.PIPE, start_new_session=True)
    try:
        init = await _wait(lambda: next(iter(exec_pids.children(shim.pid)), None))
        tracker = exec_pids.ExecTracker(init)
        assert tracker.shim == shim.pid and tracker.before == {init}
        assert await tracker.find(timeout=0.05) is None  # nothing new yet
        shim.stdin.write(b"go\n")
        shim.stdin.flush()
        pid = await tracker.find()
        assert pid is not None and pid != init
        tree = await _wait(lambda: t if len(t := exec_pids.descendants(pid)) == 2 else None)
        tracker.kill()
        await _wait(lambda: all(exec_pids.start_ticks(p) is None for p in tree) or None)
        assert exec_pids.start_ticks(init) is not None  # the "container" itself is left alone
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shim.pid, signal.SIGKILL)
        shim.wait()


def test_a_gone_process_has_no_family():
    assert exec_pids.children(2**22 + 1) == set() and exec_pids.parent(2**22 + 1) == 0
    tracker = exec_pids.ExecTracker(0)
    assert tracker.shim == 0
    tracker.kill()  # nothing found, nothing killed


async def _wait(check, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := check()) is None:
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return value
