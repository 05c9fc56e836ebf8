"""Open a backend from a DSN: `sqlite:///path/to/db`, `memory://`."""

from __future__ import annotations

from pocketkube.storage.interface import Backend
from pocketkube.storage.sqlite import SQLiteBackend


def open_backend(dsn: str) -> Backend:
    if dsn.startswith("sqlite://"):
        return SQLiteBackend(dsn.removeprefix("sqlite://"))
    if dsn == "memory://":
        return SQLiteBackend(":memory:", synchronous="OFF")
    raise ValueError(f"unsupported storage DSN {dsn!r}: use sqlite:///PATH or memory://")
