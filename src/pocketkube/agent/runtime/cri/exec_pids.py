"""Which host process a CRI exec started, so that an abandoned exec can be killed.

containerd does not end an exec when its streaming connection goes away (the command runs on, as
with upstream's kubelet), and CRI names neither the exec nor its process. But an exec's process
ends up a direct child of the container's shim, beside the container's main process (runc exits
once it started it, and the shim is the subreaper): a new child of the shim, in the container's
PID namespace and no longer runc itself, is the exec's. Starts of execs into one
container are serialized (a lock per container) until their process is found, so each session
claims only its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import signal

FIND_TIMEOUT = 2.0
FIND_POLL = 0.01


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command may hold spaces and parentheses


def parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def start_ticks(pid: int) -> int | None:
    """When the process started (tells it from a later one with the same pid); None if gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and fields[0] != "Z" else None


def children(pid: int) -> set[int]:
    """The live children of `pid` (every thread's, from /proc/<pid>/task/*/children)."""
    out: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                out.update(int(c) for c in f.read().split())
    return out


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """`pid` and everything below it, parents first."""
    found, queue = [], [pid]
    while queue:
        p = queue.pop(0)
        found.append(p)
        queue.extend(sorted(children(p)))
    return found


class ExecTracker:
    """Finds the process of one exec into the container whose main process is `init_pid`."""

    def __init__(self, init_pid: int) -> None:
        self.init = init_pid
        self.shim = parent(init_pid) if init_pid else 0
        self.before = children(self.shim) if self.shim > 1 else set()
        self.ns = _pid_ns(init_pid) if init_pid else None
        self.pid: int | None = None
        self.ticks: int | None = None

    async def find(self, done: asyncio.Event | None = None, timeout: float = FIND_TIMEOUT) -> int | None:
        """The exec's pid once it appears (None when the session ended first or it never did)."""
        if self.shim <= 1:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not (done is not None and done.is_set()):
            for pid in sorted(children(self.shim) - self.before - {self.init}):
                # runc itself, or its init still setting up the process, is not it yet.
                if _pid_ns(pid) == self.ns and not _comm(pid).startswith("runc"):
                    self.pid, self.ticks = pid, start_ticks(pid)
                    return pid
            await asyncio.sleep(FIND_POLL)
        return None

    def kill(self) -> None:
        """SIGKILL the exec's process and what it started, if it still runs."""
        if self.pid is None or self.ticks is None or start_ticks(self.pid) != self.ticks:
            return
        for pid in descendants(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
