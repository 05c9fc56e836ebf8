"""`up` reports why a node agent could not start (its `Node failed:` line), not only "see the log"."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pocketkube.cluster import ChildFailed, _wait_line


def _proc(*lines: bytes) -> SimpleNamespace:
    stdout = asyncio.StreamReader()
    for line in lines:
        stdout.feed_data(line)
    stdout.feed_eof()
    return SimpleNamespace(stdout=stdout)


async def test_the_failure_line_is_raised_with_its_reason() -> None:
    proc = _proc(b"noise\n", b"Node failed: node-1: the container runtime at unix:///x.sock does not answer\n")
    with pytest.raises(ChildFailed, match=r"^node-1: the container runtime at unix:///x.sock does not answer$"):
        await _wait_line(proc, "Node ready: ", 5, failure="Node failed: ")  # type: ignore[arg-type]


async def test_the_ready_line_is_returned_and_eof_is_an_exit() -> None:
    assert await _wait_line(_proc(b"Node ready: node-1 (x)\n"), "Node ready: ", 5) == "node-1 (x)"  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="process exited"):
        await _wait_line(_proc(b"Node failed: node-1: x\n"), "Node ready: ", 5)  # type: ignore[arg-type]
