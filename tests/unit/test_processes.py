"""util.processes: a child's whole process group ends, politely first, and is always reaped."""

from __future__ import annotations

import asyncio
import os
import signal

from pocketkube.testing.waits import wait_for_async
from pocketkube.util.processes import kill_group, stop_group


async def _group_leader(script: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec("sh", "-c", script, start_new_session=True,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"  # the traps and the grandchild are in place
    return proc


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stop_group_ends_a_polite_group_with_sigterm():
    proc = await _group_leader("sleep 30 & echo ready; wait")
    await stop_group(proc, grace=5)
    assert proc.returncode == -signal.SIGTERM
    await wait_for_async(lambda: not _group_alive(proc.pid), timeout=5, what="the grandchild gone")


async def test_stop_group_kills_a_group_that_ignores_sigterm_after_the_grace():
    proc = await _group_leader("trap '' TERM; sleep 30 & echo ready; wait")
    await stop_group(proc, grace=0.2)
    assert proc.returncode == -signal.SIGKILL
    await wait_for_async(lambda: not _group_alive(proc.pid), timeout=5, what="the grandchild gone")


async def test_stopping_a_finished_or_vanished_group_is_harmless():
    proc = await _group_leader("echo ready")
    await proc.wait()
    await stop_group(proc, grace=0.1)
    await kill_group(proc)
    assert proc.returncode == 0
