"""Ending a child that leads its own process group (start_new_session=True), with everything it
started: SIGTERM with a grace period, then SIGKILL, and always reaped."""

from __future__ import annotations

import asyncio
import os
import signal


def _signal_group(pid: int, sig: signal.Signals) -> bool:
    """False when the group is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the whole group at once and reap the leader."""
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


async def stop_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, then SIGKILL it if the leader has not exited within `grace` seconds."""
    if proc.returncode is not None or not _signal_group(proc.pid, signal.SIGTERM):
        return
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        await kill_group(proc)
