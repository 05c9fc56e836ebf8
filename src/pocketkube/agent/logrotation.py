"""Container log rotation, the kubelet's decisions (pure: names, sizes and limits in, a plan out).

Mirrors pkg/kubelet/logs/container_log_manager.go. A running container's CRI log `<dir>/N.log`
that has reached `max_size` bytes is renamed to `N.log.<YYYYMMDD-hhmmss>` (local time, as the
kubelet's clock prints it) and the runtime is told to reopen the path (ReopenContainerLog), so
it writes a new file there. Before that, the files of earlier rotations are tidied:

- a `.tmp` (an interrupted compression) and a plain file whose `.gz` exists (compressed, then
  not removed) are leftovers and removed;
- of the rest, only the newest `max_files - 2` are kept, oldest removed first (the live file and
  the one about to be rotated make up the other two), so at most `max_files` files remain;
- every kept file not yet compressed is gzipped (the newest rotation stays plain until the next
  round, so that readers of it can finish).

`kubectl logs` reads only the live file (upstream does not read rotated ones); `-f` goes on from
file to file in all_logs order (next_log; agent/logserver.py). The I/O and the flags' parsing are in
agent/runtime/cri/logmanager.py. Nothing but the standard library here: the log server uses it
in every runtime mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULT_MAX_SIZE = "10Mi"  # the kubelet's containerLogMaxSize
DEFAULT_MAX_FILES = 5  # containerLogMaxFiles
MONITOR_PERIOD = 10.0  # seconds; containerLogMonitorInterval
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"  # Go's "20060102-150405"
COMPRESS_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class LogRotatePolicy:
    max_size: int  # bytes the live file may reach before it is rotated
    max_files: int  # files per container log, the live one included


DEFAULT_POLICY = LogRotatePolicy(10 * 2**20, DEFAULT_MAX_FILES)  # parse_policy(DEFAULT_MAX_SIZE, ...)


def needs_rotation(size: int, policy: LogRotatePolicy) -> bool:
    return size >= policy.max_size


def rotated_files(log: str, names: list[str]) -> list[str]:
    """The names among `names` (paths in the log's directory) that glob `<log>.*` matches."""
    prefix = log + "."
    return [n for n in names if n.startswith(prefix) and "/" not in n[len(prefix):]]


def is_in_use(name: str, names: list[str]) -> bool:
    """isInUse: temporary files never are; compressed ones always; a plain one unless its .gz exists."""
    if name.endswith(TMP_SUFFIX):
        return False
    if name.endswith(COMPRESS_SUFFIX):
        return True
    return name + COMPRESS_SUFFIX not in names


def all_logs(log: str, rotated: list[str]) -> list[str]:
    """GetAllLogs: the rotations in use, oldest first, then the live file."""
    return [*sorted(n for n in rotated if is_in_use(n, rotated)), log]


def next_log(log: str, rotated: list[str], current: str) -> str:
    """What a follower of the log reads after `current` (a rotation's name, plain or .gz): the
    next file in all_logs order, found by name (timestamps sort), so a rotation compressed
    meanwhile is still found as its .gz; the live file after the newest rotation."""
    base = current.removesuffix(COMPRESS_SUFFIX)
    return next((n for n in all_logs(log, rotated)[:-1] if n.removesuffix(COMPRESS_SUFFIX) > base), log)


def rotated_name(log: str, now: float) -> str:
    return f"{log}.{time.strftime(TIMESTAMP_FORMAT, time.localtime(now))}"


@dataclass(frozen=True)
class RotationPlan:
    remove: tuple[str, ...]  # leftovers and the oldest rotations, in this order
    compress: tuple[str, ...]  # kept rotations still plain: gzip each to `<name>.gz`, then remove it
    rotate_to: str | None  # the live file's new name; None: not this round (the name is taken)


def plan_rotation(log: str, rotated: list[str], policy: LogRotatePolicy, now: float) -> RotationPlan:
    """What rotating `log` (at or over its size) does, given its existing rotations `rotated`
    (rotated_files) and the time `now` (seconds since the epoch)."""
    unused = [n for n in rotated if not is_in_use(n, rotated)]
    kept = sorted(n for n in rotated if is_in_use(n, rotated))  # timestamps sort oldest first
    excess = max(0, len(kept) - max(policy.max_files - 2, 0))
    removed, kept = kept[:excess], kept[excess:]
    target = rotated_name(log, now)
    # Two rotations within one second would give the same name and the second compression would
    # overwrite the first's .gz (possible only with a short monitor period): wait for the next second.
    taken = {target, target + COMPRESS_SUFFIX} & {*rotated}
    return RotationPlan(remove=(*unused, *removed), compress=tuple(n for n in kept if not n.endswith(COMPRESS_SUFFIX)),
                        rotate_to=None if taken else target)
