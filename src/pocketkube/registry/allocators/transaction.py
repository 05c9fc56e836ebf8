"""Undo log for allocations made before an object is persisted.

Allocation happens before the store write; persist() commits it to the store's range records
when the allocator shares them with other API servers; if the write fails, revert() gives every
value back. Releases of values the old object held are deferred until commit(), so a failed update
leaves the old object's values allocated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Action = Callable[[], None]
AsyncAction = Callable[[], Awaitable[None]]


class Transaction:
    def __init__(self) -> None:
        self._undo: list[Action] = []
        self._on_commit: list[Action] = []
        self._on_persist: list[AsyncAction] = []
        self.claims: list[tuple[int, int]] = []  # (range, offset) this transaction allocated
        self._done = False

    def on_persist(self, action: AsyncAction) -> None:
        self._on_persist.append(action)

    async def persist(self) -> None:
        """Make the allocations durable before the object's write (the shared range records);
        may raise AllocationRaced after reverting, when another server took a value first."""
        for action in self._on_persist:
            await action()

    def on_revert(self, action: Action) -> None:
        self._undo.append(action)

    def on_commit(self, action: Action) -> None:
        self._on_commit.append(action)

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        for action in self._on_commit:
            action()

    def revert(self) -> None:
        if self._done:
            return
        self._done = True
        for action in reversed(self._undo):
            action()
