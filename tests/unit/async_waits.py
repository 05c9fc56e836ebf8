"""Waiting for a condition in asyncio unit tests: poll, yielding to the loop, never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def until(predicate: Callable[[], T], what: str, timeout: float = 5.0) -> T:
    """The first truthy value of `predicate`; an AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.001)
