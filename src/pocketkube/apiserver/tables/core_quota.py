"""Printers for the core kinds that bound resources: LimitRange and ResourceQuota (upstream
printLimitRange, printResourceQuota); core.py serves them among the core group's printers."""

from __future__ import annotations

from pocketkube.api.quantity import fmt, is_binary, parse
from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_map,
    dig,
    name_and_created_at,
    name_of,
)


def _q(value: object) -> str:
    q = parse(value)
    return str(value) if q is None else fmt(q, is_binary(value))


def _quota_cells(rq: dict, now: float) -> list[Cell]:
    """`requests.cpu: 500m/1, pods: 2/10` under REQUEST; the limits.* resources under LIMIT."""
    hard = as_map(dig(rq, "status", "hard"))
    used = as_map(dig(rq, "status", "used"))
    request, limit = [], []
    for name in sorted(hard):
        text = f"{name}: {_q(used.get(name, '0'))}/{_q(hard[name])}"
        (limit if name.startswith("limits.") else request).append(text)
    return [name_of(rq), age(rq, now), ", ".join(request), ", ".join(limit)]


QUOTA_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "limitranges"): Printer(
        (NAME, Column("Created At", "Timestamp is a wrapper around time.Time which supports correct "
                      "marshaling to YAML and JSON.", type="date")), name_and_created_at),
    ("", "resourcequotas"): Printer(
        (NAME, AGE,
         Column("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
         Column("Limit", "Limits control the maximum amount of cpu/memory that a container may use "
                "independent of contention on the node.")), _quota_cells),
}
