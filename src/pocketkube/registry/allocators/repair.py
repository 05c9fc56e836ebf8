"""The repair of a shared range record (upstream's ipallocator/controller/repair.go and
portallocator/controller/repair.go), as a pure decision.

Every API server runs it at start and then periodically over one snapshot of the store: the
record and the Services. A value the Services hold that the record lacks is marked. A value the
record has that no Service holds may be a leak (a server died between the two writes) or an
allocation in flight on another server (its record write is committed, its Service not yet): so
it is released only once it was seen leaked in LEAK_RUNS consecutive runs, minutes apart.
"""

from __future__ import annotations

LEAK_RUNS = 3  # upstream's numRepairsBeforeLeakCleanup


def repair_record(record: set[int], held: set[int], leaks: dict[int, int]) -> tuple[set[int], dict[int, int]]:
    """(record, values the Services hold, leak counts of the previous run) → (record to write,
    leak counts for the next run). A count is kept only while the value stays leaked, so the
    runs that release it are consecutive."""
    counts: dict[int, int] = {}
    released: set[int] = set()
    for value in record - held:
        seen = leaks.get(value, 0) + 1
        if seen >= LEAK_RUNS:
            released.add(value)
        else:
            counts[value] = seen
    return (record | held) - released, counts
