"""Shared by the controller tests that run against a `pocketkube server` subprocess: its
temporary data dir, and polling the API until the control plane has acted."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.waits import wait_for_async


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
    return await wait_for_async(check, timeout=timeout, interval=0.05, what=what)
