"""The container runtime contract the kubelet drives, shaped after CRI: a pod sandbox (the pod's
network identity), images, and containers to start, stop, watch and inspect.

Two backends: `process` (each container a host process, pods on 127/8 addresses; the rootless
fallback) and `containerd` (real OCI images through CRI, each pod in its own network namespace).
The kubelet has one code path over both. A runtime keeps (or can rebuild) a record of every
container it started, so that a restarted node agent finds its containers again (re-adoption)
instead of starting them twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


@dataclass(frozen=True)
class Mount:
    """A volume the kubelet prepared on the host, to appear at `container_path` in the container
    (a bind mount in containerd; under the container's root directory in the process runtime).
    `host_path` is already resolved (subPath included) and checked to stay inside its volume."""

    host_path: str
    container_path: str
    read_only: bool = False
    sub_path: bool = False  # a subPath: the file or directory as it was at start, never updated


@dataclass
class ContainerConfig:
    """Everything needed to start one container: the kubelet's decisions (env, $(VAR)-expanded
    command and args, user, restart count, the pulled image) plus the pod and the container's
    spec, which a runtime translates itself (CRI fields, or the process runtime's catalog)."""

    pod_uid: str
    name: str
    command: list[str]  # replaces the image's ENTRYPOINT when non-empty
    args: list[str]  # replaces the image's CMD when non-empty
    env: dict[str, str]
    restart_count: int
    image: str = ""  # normalized reference (docker.io/library/nginx:latest)
    image_id: str = ""
    user: User | None = None  # None: the image's user (containerd) or the agent's own (process)
    pod_ip: str = ""
    pod: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # the container as in the pod spec
    mounts: list[Mount] = field(default_factory=list)  # its volumeMounts, prepared on the host


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
    log_format: str = "raw"  # "cri": timestamped CRI lines (containerd); "raw": the process's bytes
    scheme: str = "pocketkube"  # the containerID scheme: pocketkube://<id>, containerd://<id>
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


@dataclass(frozen=True)
class ContainerUsage:
    """A running container's cumulative CPU time and current memory working set, when sampled
    (what `kubectl top` is computed from)."""

    pod_uid: str
    name: str
    cpu_ns: int
    memory_bytes: int
    timestamp: float


@dataclass
class ExecResult:
    """How a command run in a container ended: its exit code (None when it timed out) and its
    combined stdout and stderr."""

    exit_code: int | None
    output: str = ""


@dataclass(frozen=True)
class ImageInfo:
    """An image present on the node: the reference it was asked by and its imageID for the status."""

    ref: str
    id: str


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, from an image pull secret (CRI's AuthConfig)."""

    username: str = ""
    password: str = ""
    auth: str = ""  # base64 "user:password", as docker config files carry it
    server_address: str = ""
    identity_token: str = ""
    registry_token: str = ""


class StartError(Exception):
    """The container could not be started at all (e.g. its executable does not exist)."""


class CreateError(Exception):
    """The runtime refused to create the container (CreateContainerError)."""


class CreateConfigError(CreateError):
    """The container's configuration cannot work, e.g. runAsNonRoot with an image that runs as
    root (CreateContainerConfigError)."""


@dataclass(frozen=True)
class StreamOptions:
    """Which of a session's streams the client wants: stdin, stdout, stderr, and a terminal (tty:
    stdout and stderr are one stream, and the terminal can be resized)."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False


@dataclass(frozen=True)
class StreamExit:
    """How an exec or attach session ended: `exit_code` of the command (None when it did not run
    to an exit, e.g. attach, or a runtime failure); `error` the runtime's message when it failed."""

    exit_code: int | None = None
    error: str | None = None


STDOUT, STDERR = 1, 2  # the channels of ContainerStream.read, as remotecommand numbers them


class ContainerStream(Protocol):
    """One exec or attach session with a container: stdin in, stdout/stderr out, resize."""

    async def write(self, data: bytes) -> None:
        """Bytes to the session's stdin (dropped when it has none or it is closed)."""
        ...

    async def close_stdin(self) -> None:
        """The client's stdin reached EOF."""
        ...

    async def resize(self, width: int, height: int) -> None:
        """The client's terminal size (columns, rows); ignored without a tty."""
        ...

    async def read(self) -> tuple[int, bytes] | None:
        """The next output: (STDOUT or STDERR, bytes); None once all output has been read."""
        ...

    async def wait(self) -> StreamExit:
        """How the session ended (after its output was read)."""
        ...

    async def close(self) -> None:
        """End the session, whether done or abandoned: an exec's processes are killed, the
        runtime's streams closed. Idempotent."""
        ...


class PortStream(Protocol):
    """One TCP connection forwarded to a port of a pod."""

    error: str | None  # set (once read() returned b"") when the runtime could not forward it

    async def read(self) -> bytes:
        """The next bytes from the pod; b"" once the pod closed its side."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None:
        """No more data to the pod (its side reads EOF)."""
        ...

    async def close(self) -> None: ...


class StreamError(Exception):
    """An exec, attach or port-forward could not be set up; the message is the runtime's own."""


class ContainerNotRunning(StreamError):
    """The container has no running process to exec in or attach to."""


class RuntimeUnavailable(Exception):
    """The runtime did not answer (e.g. containerd restarting); the kubelet tries again later."""


class SandboxError(Exception):
    """The pod's sandbox (network namespace, pause container) could not be created."""


class InvalidImageName(Exception):
    """The image is not a valid reference (InvalidImageName)."""


class ImagePullError(Exception):
    """A pull failed with the registry's message; `unreachable` when no registry answered at all
    (connection refused, no route, DNS, timeout), as opposed to an answer such as not found."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class Runtime(Protocol):
    name: str  # "process" | "containerd": what `up` and the node's status report

    async def version(self) -> str:
        """`<runtime name>://<version>` for the node's containerRuntimeVersion."""
        ...

    def on_sandbox_lost(self, callback: Callable[[str], None]) -> None:
        """Have `callback(pod_uid)` called when a pod's sandbox dies under it (its pause container
        exited); the kubelet then kills the pod's containers and creates a new sandbox."""
        ...

    async def run_pod_sandbox(self, pod: dict) -> str:
        """Create the pod's sandbox if it has none (idempotent per pod uid) and return the pod's
        IP (the node IP for hostNetwork pods); SandboxError when it cannot."""
        ...

    async def image_status(self, image: str) -> ImageInfo | None:
        """The image if present on this node (no pull); InvalidImageName for a bad reference."""
        ...

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        """Pull the image (with `auth` for its registry, from the pod's image pull secrets; a
        runtime without registries ignores it); ImagePullError with the registry's message."""
        ...

    def can_switch_user(self) -> bool:
        """Whether containers can run as another user than the agent's (else User is ignored)."""
        ...

    def container_dir(self, pod_uid: str, name: str) -> Path: ...

    def log_path(self, pod_uid: str, name: str, restart_count: int) -> Path: ...

    async def start(self, cfg: ContainerConfig) -> ContainerRecord:
        """Create and start one run of a container in the pod's sandbox; CreateError when the
        runtime refuses it, StartError when it cannot be started at all."""
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

    async def usage(self) -> list[ContainerUsage]:
        """CPU time and memory of every running container (cgroup stats or /proc)."""
        ...

    async def adopt_all(self) -> None:
        """Load every saved container, watching again those still alive (after an agent restart)."""
        ...

    def pods(self) -> dict[str, dict]:
        """Pods with state on this node, by uid: their saved pod info (name, namespace, ip)."""
        ...

    def save_pod(self, pod_uid: str, info: dict) -> None: ...

    async def remove_pod(self, pod_uid: str) -> None:
        """Kill whatever still runs in the pod, remove its sandbox (freeing its IP) and its directory."""
        ...

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """Stop a finished pod's sandbox (its network torn down, its IP freed), keeping its
        containers' records and logs until remove_pod; SandboxError when the runtime fails."""
        ...

    async def exec_stream(self, pod_uid: str, name: str, argv: list[str], opts: StreamOptions) -> ContainerStream:
        """Start `argv` in the running container `name` (its environment, user and working
        directory) and stream it; ContainerNotRunning, or StreamError when it cannot be set up.
        A command that cannot be executed ends with exit code 127 (not found) or 126, as a shell's."""
        ...

    async def attach(self, pod_uid: str, name: str, opts: StreamOptions) -> ContainerStream:
        """Stream the running container's output from now on, and its stdin when its spec asks for
        one (`stdin: true`); the session ends when the container exits. ContainerNotRunning."""
        ...

    async def port_forward(self, pod_uid: str, port: int) -> PortStream:
        """Connect to `port` on the pod's own loopback (as `localhost:port` inside the pod);
        StreamError with the reason when the connection fails."""
        ...
