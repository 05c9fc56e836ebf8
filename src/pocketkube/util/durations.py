"""Durations as Kubernetes prints them (kubectl's AGE column, `pocketkube status`'s UPTIME)."""

from __future__ import annotations

import math


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `5s`, `2m30s`, `45m`, `3h15m`, `2d5h`, `3y`."""
    if not math.isfinite(seconds):
        return "<invalid>"
    total = int(seconds)  # truncates toward zero, as Go's int(d.Seconds()) does
    # A clock skew of up to a second still counts as "now".
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return _compound(minutes, "m", total % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = total // 3600
    if hours < 8:
        return _compound(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _compound(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _compound(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _compound(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    return f"{major}{major_unit}" if minor == 0 else f"{major}{major_unit}{minor}{minor_unit}"
