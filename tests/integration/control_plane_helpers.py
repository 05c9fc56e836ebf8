"""Shared by the controller tests that run against a `pocketkube server` subprocess: its
temporary data dir, and polling the API until the control plane has acted."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from pocketkube.testing.procs import ServerProcess


def server_in_temp_dir(prefix: str, extra_args: list[str]) -> Iterator[ServerProcess]:
    """A started server on a fresh data dir, for a fixture to `yield from`; stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    s = ServerProcess(root / "data", extra_args=extra_args)
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


async def until(check: Callable[[], Awaitable[object]], what: str, timeout: float = 10.0) -> object:
    """The first truthy result of `check`; an AssertionError naming `what` when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
