"""Polling from tests: wait until a condition holds, read objects through kubectl.

Tests never sleep for a fixed time hoping something has happened: they poll for the condition
itself, with a deadline, and fail naming what they waited for. `wait_for` polls from plain code,
`wait_for_async` from a coroutine (the event loop keeps running meanwhile).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pocketkube.testing.procs import Kubectl

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition") -> T:
    """The first truthy value of `predicate`, polled every `interval` seconds; an AssertionError
    naming `what` and the last value when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def wait_for_async(predicate: Callable[[], T | Awaitable[T]], timeout: float = 30.0,
                         interval: float = 0.02, what: str = "condition") -> T:
    """`wait_for` for coroutines: `predicate` may be a plain function or return an awaitable;
    polling sleeps on the event loop, so the code being waited for runs meanwhile."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def get_json(k: Kubectl, *args: str) -> dict:
    """`kubectl get <args> -o json`, parsed."""
    return json.loads(k.ok("get", *args, "-o", "json"))


def is_ready(pod: dict) -> bool:
    """Whether the pod's Ready condition is True."""
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
