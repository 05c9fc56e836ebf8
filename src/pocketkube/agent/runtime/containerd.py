"""A private containerd for one node agent, run as its child (the k3s way).

Each agent owns a containerd whose every path (root, state, sockets, runc root, opt dir, CNI
config) lies under the agent's data directory, so two clusters on one host never share runtime
state, and whose only listeners are unix sockets plus the CRI streaming server on a random
127.0.0.1 port. `render_config` is the pure part (containerd 1.6, config version 2); `Containerd`
starts it, waits until it answers CRI `Version`, and stops it leaving nothing behind: its process
group, the shims it started (they run in their own sessions so that containers outlive a
containerd restart, hence are found by their `-address`), their containers, and any mount left
under its directories. Settings and why: /work/shared/reference/containers.md §5.1.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from pocketkube.agent.runtime.cni import DEBIAN_CNI_BIN_DIR
from pocketkube.agent.runtime.cri.client import CriClient, CriError, Unavailable, cri_initializing
from pocketkube.agent.runtime.registries import render_plain_http_hosts

__all__ = ["render_plain_http_hosts"]  # its home was here; tests and the registry helper import it
from pocketkube.util.processes import stop_group

# A unix socket path is limited to sizeof(sun_path) - 1 bytes on Linux.
_MAX_SOCKET_PATH = 107
_MNT_DETACH = 2


def _q(value: str | Path, what: str) -> str:
    """`value` as a TOML basic string (JSON's escapes are valid TOML ones), checked absolute."""
    text = str(value)
    if not os.path.isabs(text):
        raise ValueError(f"containerd {what} must be an absolute path, got {text!r}")
    return json.dumps(text)


def render_config(*, root: str | Path, state: str | Path, socket: str | Path, cni_bin_dir: str | Path,
                  cni_conf_dir: str | Path, sandbox_image: str, registry_config_dir: str | Path | None = None,
                  opt_dir: str | Path | None = None, runc_binary: str = "runc") -> str:
    """containerd 1.6's config.toml (version 2) for a private instance: everything under `root`
    and `state`, gRPC on `socket` (ttrpc on `socket`.ttrpc), no debug or metrics listener, the CRI
    streaming server on 127.0.0.1 with a kernel-chosen port."""
    if len(os.fsencode(str(socket)) + b".ttrpc") > _MAX_SOCKET_PATH:
        raise ValueError(f"containerd socket path {str(socket)!r} is too long for a unix socket "
                         f"(at most {_MAX_SOCKET_PATH - 6} bytes): use a shorter data directory")
    if not sandbox_image or any(c.isspace() for c in sandbox_image):
        raise ValueError(f"sandbox image {sandbox_image!r} must be an image reference such as "
                         "registry.k8s.io/pause:3.9")
    root_q, state_q = _q(root, "root directory"), _q(state, "state directory")
    runc_root = json.dumps(str(Path(state) / "runc"))
    opt = _q(opt_dir or Path(root) / "opt", "opt directory")
    registry = (f"\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                f"  config_path = {_q(registry_config_dir, 'registry config directory')}\n"
                if registry_config_dir else "")
    return f"""\
# Rendered by pocketkube (agent/runtime/containerd.py): a private containerd for one node agent.
version = 2
root = {root_q}
state = {state_q}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {_q(socket, "socket")}

[ttrpc]
  address = {_q(str(socket) + ".ttrpc", "socket")}

# No debug socket and no metrics listener.
[debug]
  address = ""

[metrics]
  address = ""

# Not the host-wide /opt/containerd.
[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {json.dumps(sandbox_image)}
  # exec/attach/port-forward URLs: loopback only, a random port so that instances never collide.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  # Without it the pause container's oom_score_adj is refused where CAP_SYS_RESOURCE is missing.
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not the shared /run/netns.
  netns_mounts_under_state_dir = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  # cgroupfs: no systemd to delegate to here.
  SystemdCgroup = false
  BinaryName = {json.dumps(runc_binary)}
  # Not the shared /run/containerd/runc/k8s.io.
  Root = {runc_root}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {_q(cni_bin_dir, "CNI bin directory")}
  conf_dir = {_q(cni_conf_dir, "CNI conf directory")}
{registry}"""


def shim_pids(processes: Iterable[tuple[int, list[str]]], socket: str | Path) -> list[int]:
    """The pids among `processes` ((pid, argv) pairs) of containerd shims serving `socket`."""
    found = []
    for pid, argv in processes:
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-address", "--address") and value == str(socket):
                found.append(pid)
                break
    return found


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(mountinfo: str, dirs: Iterable[str | Path]) -> list[str]:
    """Mount points in `mountinfo` (/proc/self/mountinfo's text) at or under any of `dirs`,
    deepest first (the order to unmount them in)."""
    prefixes = [str(d).rstrip("/") for d in dirs]
    points = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.add(point)
    return sorted(points, key=lambda p: (-p.count("/"), p))


def processes() -> list[tuple[int, list[str]]]:
    """(pid, argv) of every process on the host (exited ones skipped)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                raw = Path(entry.path, "cmdline").read_bytes()
            except OSError:  # exited meanwhile
                continue
            found.append((int(entry.name), [os.fsdecode(a) for a in raw.split(b"\0") if a]))
    return found


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc/<pid>/task/*/children)."""
    kids: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            kids += [int(c) for c in Path(task.path, "children").read_text().split()]
    except OSError:
        pass
    return kids


def _kill_tree(pid: int) -> None:
    """SIGKILL `pid` and its descendants (a shim and the containers it parents)."""
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def containerd_pids(processes: Iterable[tuple[int, list[str]]], config_path: str | Path) -> list[int]:
    """The pids among `processes` of containerd daemons started with `--config config_path`."""
    found = []
    for pid, argv in processes:
        if argv and os.path.basename(argv[0]) == "containerd" and "--config" in argv[:-1] \
                and argv[argv.index("--config") + 1] == str(config_path):
            found.append(pid)
    return found


async def _stop_pids(pids: list[int], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, processes that are not our children."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        if pids:
            await asyncio.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat[stat.rindex(")") + 2:].split()[0]


async def stop_leftover_containerd(data_dir: str | Path, grace: float = 10.0) -> None:
    """Stop the containerd an agent that died left under `data_dir` (a Containerd's data_dir),
    with its shims, containers and mounts; nothing when there is none."""
    data_dir = Path(data_dir).absolute()
    if not data_dir.exists():
        return
    await _stop_pids(containerd_pids(processes(), data_dir / "config.toml"), grace)
    await asyncio.to_thread(_clean_up, data_dir / "containerd.sock", [data_dir / "root", data_dir / "state"])


def _clean_up(socket: Path, dirs: list[Path]) -> None:
    """Kill the shims serving `socket` and their containers; unmount what is left under `dirs`."""
    for pid in shim_pids(processes(), socket):
        _kill_tree(pid)
    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), dirs):
        if libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (22, 2):  # EINVAL (no longer a mount point), ENOENT
                raise OSError(err, f"cannot unmount {point}: {os.strerror(err)}")


class ContainerdError(RuntimeError):
    """containerd did not start (its log's tail is in the message)."""


# ---- images: `ctr images import`, CRI having no import call ----

CRI_NAMESPACE = "k8s.io"
SNAPSHOTTER = "overlayfs"  # render_config's CRI snapshotter: the import unpacks for it
# containerd ≥ 1.7 keeps pinned images out of image GC (1.6's CRI ignores it; our kubelet honours it).
PINNED_LABEL = "io.cri-containerd.pinned=pinned"
# Named images get no extra `import-…@sha256` name; unnamed ones keep it so GC keeps them.
IMPORT_FLAGS = ("--all-platforms", "--digests", "--skip-digest-for-named", f"--snapshotter={SNAPSHOTTER}")
CTR_CONNECT_TIMEOUT = "5s"
_UNPACKED = re.compile(r"unpacking (\S+) \((sha256:[0-9a-f]{64})\)")


def ctr_message(stderr: str) -> str:
    """ctr's error as one line: its last line, without the `ctr: ` prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "ctr failed without a message"
    return lines[-1].removeprefix("ctr: ")


def imported_names(stdout: str) -> list[str]:
    """The image names `ctr images import` printed ("unpacking NAME (DIGEST)...done")."""
    return [m.group(1) for m in _UNPACKED.finditer(stdout)]


async def ctr(socket: str | Path, *args: str) -> tuple[int, str, str]:
    """Run containerd's `ctr` against `socket` in CRI's namespace: (exit code, stdout, stderr)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "ctr", "--address", str(socket), "--namespace", CRI_NAMESPACE, "--connect-timeout", CTR_CONNECT_TIMEOUT,
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise ContainerdError("ctr is not installed (it comes with Debian's containerd package)") from None
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def import_archive(socket: str | Path, archive: str | Path) -> list[str]:
    """Import a docker-save or OCI archive (plain tar) and pin what it named; the image names,
    or ContainerdError with ctr's message."""
    code, out, err = await ctr(socket, "images", "import", *IMPORT_FLAGS, str(archive))
    if code != 0:
        raise ContainerdError(ctr_message(err))
    names = imported_names(out)
    for name in names:
        code, _, err = await ctr(socket, "images", "label", name, PINNED_LABEL)
        if code != 0:
            raise ContainerdError(f"imported, but pinning failed: {ctr_message(err)}")
    return names


class Containerd:
    """The agent's own containerd: config and state under `data_dir` (short: the socket path lives
    there), its log in `data_dir`/containerd.log. `registry_config_dir` is containerd's certs.d
    (`<dir>/<host:port>/hosts.toml`, e.g. from `render_plain_http_hosts`)."""

    def __init__(self, data_dir: str | Path, *, sandbox_image: str, cni_bin_dir: str | Path = DEBIAN_CNI_BIN_DIR,
                 cni_conf_dir: str | Path | None = None, registry_config_dir: str | Path | None = None,
                 binary: str = "containerd",
                 start_timeout: float = 30.0, stop_grace: float = 10.0) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.root = self.data_dir / "root"
        self.state = self.data_dir / "state"
        self.socket = self.data_dir / "containerd.sock"
        self.config_path = self.data_dir / "config.toml"
        self.log_path = self.data_dir / "containerd.log"
        self.config = render_config(root=self.root, state=self.state, socket=self.socket,
                                    cni_bin_dir=cni_bin_dir,
                                    cni_conf_dir=cni_conf_dir or self.data_dir / "cni" / "net.d",
                                    sandbox_image=sandbox_image,
                                    registry_config_dir=Path(registry_config_dir).absolute()
                                    if registry_config_dir else None)
        self.binary = binary
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._proc: asyncio.subprocess.Process | None = None
        self._adopted: list[int] = []  # a containerd a previous agent started (it outlives its agent)

    @property
    def endpoint(self) -> str:
        """The CRI endpoint, unix:///<socket>."""
        return f"unix://{self.socket}"

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def start(self) -> None:
        """Write the config, spawn containerd in its own process group and return once it answers
        CRI Version; ContainerdError (with the log's tail) if it exits or times out first."""
        if self._proc is not None and self._proc.returncode is None:
            return
        running = containerd_pids(processes(), self.config_path)
        if running and await self._answers():
            # A restarted agent finds the containerd its predecessor left (pods keep running in
            # it) and adopts it rather than starting a second one on the same state.
            self._adopted, self._proc = running, None
            return
        await _stop_pids(running, self.stop_grace)  # there but not answering: start afresh
        self._adopted = []
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        with open(self.log_path, "ab") as log:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    self.binary, "--config", str(self.config_path), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True)
            except FileNotFoundError:
                raise ContainerdError(f"{self.binary!r} not found: apt-get install containerd runc") from None
        deadline = time.monotonic() + self.start_timeout
        async with CriClient(self.endpoint, timeout=1.0) as cri:
            while True:
                if self._proc.returncode is not None:
                    raise ContainerdError(f"containerd exited with {self._proc.returncode} while starting; "
                                          f"{self.log_path}:\n{self._log_tail()}")
                if self.socket.exists():
                    try:
                        await cri.version()
                        return
                    except Unavailable:
                        pass  # not serving yet, or still recovering its containers
                    except CriError as err:  # e.g. UNIMPLEMENTED: the CRI plugin failed to load
                        await self._stop_process()
                        raise ContainerdError(f"containerd at {self.socket} does not serve CRI ({err}); "
                                              f"{self.log_path}:\n{self._log_tail()}") from None
                if time.monotonic() > deadline:
                    await self._stop_process()
                    raise ContainerdError(f"containerd did not answer on {self.socket} within "
                                          f"{self.start_timeout} s; {self.log_path}:\n{self._log_tail()}")
                try:
                    await asyncio.wait_for(self._proc.wait(), 0.1)
                except TimeoutError:
                    pass

    def running(self) -> bool:
        """Whether the containerd we started or adopted is still alive."""
        if self._proc is not None:
            return self._proc.returncode is None
        return any(_state(p) not in ("X", "Z") for p in self._adopted)

    async def wait_exited(self, poll: float = 0.5) -> int | None:
        """Return once containerd has exited: its exit code when it was our child, else None."""
        if self._proc is not None:
            return await self._proc.wait()
        while self.running():  # adopted: not our child, so no wait(); its pid tells
            await asyncio.sleep(poll)
        return None

    async def _stop_process(self) -> None:
        """Stop the containerd process only: a start that failed may be a restart under running
        pods, whose shims and containers must survive it (`stop` is the teardown)."""
        if self._proc is not None:
            await stop_group(self._proc, self.stop_grace)

    async def _answers(self) -> bool:
        """Whether the running containerd serves CRI, waiting while it recovers its state (a
        containerd restarted just before this agent)."""
        deadline = time.monotonic() + self.start_timeout
        async with CriClient(self.endpoint, timeout=1.0) as cri:
            while True:
                try:
                    await cri.version()
                    return True
                except CriError as err:
                    if not (isinstance(err, Unavailable) and cri_initializing(err.message)) \
                            or time.monotonic() > deadline:
                        return False
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Stop containerd (SIGTERM, then SIGKILL to its group), kill the shims serving our socket
        and their containers, and unmount what is left under our directories. Idempotent."""
        if self._proc is not None:
            await stop_group(self._proc, self.stop_grace)
        await _stop_pids(self._adopted, self.stop_grace)
        self._adopted = []
        await asyncio.to_thread(_clean_up, self.socket, [self.root, self.state])
