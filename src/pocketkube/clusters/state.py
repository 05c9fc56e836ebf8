"""A cluster's files: its plan (cluster.json, kept) and the state of its running `up` (up.json,
removed when it stops). A state file whose process is gone, or whose pid now belongs to another
program (a different start time), is stale."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pocketkube.clusters.names import PLAN_FILE

STATE_FILE = "up.json"


@dataclass(frozen=True)
class UpState:
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: tells a reused pid from ours
    started_at: float  # epoch seconds
    name: str
    runtime: str
    dataplane: str
    nodes: int
    host: str
    port: int


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if fields[0] not in ("Z", "X") else None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_plan(data_dir: Path) -> dict | None:
    return _read_json(data_dir / PLAN_FILE)


def write_plan(data_dir: Path, plan: dict) -> None:
    _write_json(data_dir / PLAN_FILE, plan)


def write_state(data_dir: Path, state: UpState) -> None:
    _write_json(data_dir / STATE_FILE, asdict(state))


def read_state(data_dir: Path) -> UpState | None:
    data = _read_json(data_dir / STATE_FILE)
    if data is None:
        return None
    try:
        return UpState(**data)
    except TypeError:
        return None


def my_state(name: str, runtime: str, dataplane: str, nodes: int, host: str, port: int) -> UpState:
    pid = os.getpid()
    return UpState(pid, start_ticks(pid) or 0, time.time(), name, runtime, dataplane, nodes, host, port)


def alive(state: UpState) -> bool:
    """Whether the `up` that wrote `state` still runs (same pid and the same start time)."""
    return start_ticks(state.pid) == state.start_ticks


def remove_state(data_dir: Path, pid: int | None = None) -> None:
    """Remove the state file (only if `pid` wrote it, when given: a newer `up` may own it)."""
    path = data_dir / STATE_FILE
    if pid is not None:
        current = read_state(data_dir)
        if current is not None and current.pid != pid:
            return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
