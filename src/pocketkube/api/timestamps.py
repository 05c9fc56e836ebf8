"""The one place timestamps are formatted and parsed, as Kubernetes serializes them.

metav1.Time is RFC 3339 in UTC with second precision (`2026-01-02T03:04:05Z`); metav1.MicroTime
(Leases, events.k8s.io) carries microseconds; EndpointSlice trigger times are Go's RFC3339Nano.
Parsing accepts all three, and any offset, since clients send what they like.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_rfc3339(t: float | None = None) -> str:
    """metav1.Time: RFC 3339, second precision, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def now_micro(t: float | None = None) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    moment = datetime.now(UTC) if t is None else datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_rfc3339_nano(ns: int) -> str:
    """RFC3339Nano as Go prints it: UTC, fractional seconds without trailing zeros."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def parse_rfc3339(value: object, default: float | None = None) -> float | None:
    """Seconds since the epoch of an RFC 3339 string (any precision, any offset; a missing
    offset means UTC); `default` when unset or unparsable."""
    if not isinstance(value, str) or not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
