"""The container runtime contract the kubelet drives: start, stop, watch and inspect containers.

A runtime keeps its own record of every container it started, on disk, so that a restarted node
agent finds its containers again (re-adoption) instead of starting them twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

# The PATH a container gets when its spec sets none (what container runtimes default to).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class User:
    """Who a container runs as; `bind_low_ports` grants CAP_NET_BIND_SERVICE and nothing else."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    bind_low_ports: bool = True


@dataclass
class ContainerConfig:
    """Everything needed to start one container process."""

    pod_uid: str
    name: str
    argv: list[str]
    env: dict[str, str]
    restart_count: int
    image: str = ""
    image_id: str = ""
    user: User | None = None  # None: run as the agent's own user
    files: dict[str, str] = field(default_factory=dict)  # relative path in the container dir → content
    dirs: list[str] = field(default_factory=list)  # relative dirs the container must be able to write


@dataclass
class ContainerRecord:
    """One run of a container: what started, and how it ended (persisted as JSON)."""

    id: str
    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat starttime: tells our process from a reused pid
    started_at: str
    restart_count: int
    log_path: str
    image: str = ""
    image_id: str = ""
    exit_code: int | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ContainerRecord:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass
class ContainerHistory:
    """The current run of a container and the one before it (for lastState and --previous)."""

    current: ContainerRecord
    last: ContainerRecord | None = None


@dataclass
class ExecResult:
    """How a command run in a container ended: its exit code (None when it timed out) and its
    combined stdout and stderr."""

    exit_code: int | None
    output: str = ""


class StartError(Exception):
    """The container could not be started at all (e.g. its executable does not exist)."""


class Runtime(Protocol):
    def can_switch_user(self) -> bool:
        """Whether containers can run as another user than the agent's (else User is ignored)."""
        ...

    def container_dir(self, pod_uid: str, name: str) -> Path: ...

    def log_path(self, pod_uid: str, name: str, restart_count: int) -> Path: ...

    async def start(self, cfg: ContainerConfig) -> ContainerRecord:
        """Start one run of a container; raises StartError when it cannot be started at all."""
        ...

    def record_failed_start(self, pod_uid: str, name: str, restart_count: int, message: str) -> ContainerRecord:
        """Record a run that never started (terminated at once, reason StartError)."""
        ...

    def exited(self, record: ContainerRecord) -> asyncio.Future[ContainerRecord]:
        """Resolves (with the record, now terminated) when the container's main process exits."""
        ...

    async def stop(self, record: ContainerRecord, grace: float) -> None:
        """SIGTERM the container's process group, SIGKILL it after `grace` seconds."""
        ...

    async def exec_sync(self, pod_uid: str, name: str, argv: list[str], *, env: dict[str, str],
                        user: User | None, timeout: float) -> ExecResult:
        """Run a command in a container's context (exec probes); StartError if it cannot start."""
        ...

    def history(self, pod_uid: str, name: str) -> ContainerHistory | None: ...

    def running(self) -> list[tuple[str, ContainerRecord]]:
        """(pod uid, record) of every container known to be running."""
        ...

    def adopt_all(self) -> None:
        """Load every saved container, watching again those still alive (after an agent restart)."""
        ...

    def pods(self) -> dict[str, dict]:
        """Pods with state on this node, by uid: their saved pod info (name, namespace, ip)."""
        ...

    def save_pod(self, pod_uid: str, info: dict) -> None: ...

    async def remove_pod(self, pod_uid: str) -> None:
        """Kill whatever still runs in the pod and delete its directory."""
        ...
