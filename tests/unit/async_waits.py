"""`until(predicate, what)`: the unit tests' short form of pocketkube.testing.waits.wait_for_async,
polling every millisecond so that fake-driven components are checked as soon as they act."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pocketkube.testing.waits import wait_for_async

T = TypeVar("T")


async def until(predicate: Callable[[], T], what: str, timeout: float = 5.0) -> T:
    """The first truthy value of `predicate`; an AssertionError naming `what` after `timeout`."""
    return await wait_for_async(predicate, timeout=timeout, interval=0.001, what=what)
