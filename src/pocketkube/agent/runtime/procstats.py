"""CPU time and memory of host processes from /proc: the process runtime's container stats
(a container is a process group) and the agent's own share of its node's usage."""

from __future__ import annotations

import os

_TICK_NS = 10**9 // (os.sysconf("SC_CLK_TCK") or 100)
_PAGE = os.sysconf("SC_PAGE_SIZE") or 4096


def parse_stat(text: str) -> tuple[int, int, int]:
    """(pgrp, utime+stime in clock ticks, rss in pages) from a /proc/<pid>/stat line."""
    fields = text[text.rindex(")") + 2:].split()  # the command may hold spaces and parentheses
    return int(fields[2]), int(fields[11]) + int(fields[12]), int(fields[21])


def _read_stat(pid: str) -> tuple[int, int, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def group_usage(pgids: set[int]) -> dict[int, tuple[int, int]]:
    """(cpu nanoseconds, rss bytes) summed over the live processes of each process group."""
    out = {g: (0, 0) for g in pgids}
    if not pgids:
        return out
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        stat = _read_stat(pid)
        if stat is None or stat[0] not in out:
            continue
        cpu, rss = out[stat[0]]
        out[stat[0]] = (cpu + stat[1] * _TICK_NS, rss + stat[2] * _PAGE)
    return out


def self_usage() -> tuple[int, int]:
    """This process's (cpu nanoseconds, rss bytes)."""
    stat = _read_stat("self")
    return (0, 0) if stat is None else (stat[1] * _TICK_NS, stat[2] * _PAGE)
