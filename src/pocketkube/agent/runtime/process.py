"""The process runtime: each container is one child process in its own process group.

The rootless fallback behind the CRI-shaped interface. A pod's sandbox is only its IP: one from
the node's pod CIDR (on 127/8, so host processes can bind it), or the node IP for hostNetwork
pods. Images are the local catalog (agent.runtime.images): a catalog name is "present", anything
else cannot be pulled. A container's program is its command and args exactly as the kubelet
expanded them (no shell), or the catalog's default for its image; the environment is the
kubelet's; stdout and stderr go to <data>/pods/<pod uid>/<container>/<restartCount>.log (raw
bytes, no CRI framing). When a container's main process exits, the rest of its process group is
killed, as a container's PID namespace dies with its PID 1.

A process has no mount namespace of its own, so its root is its container directory (its working
directory): a volume mounted at /etc/config is the symlink <container dir>/etc/config to the
volume on the host, and `cat etc/config/key` (relative) reads it. Volumes inside the node's data dir are linked relatively. A subPath file is copied at
start (as a bind mount pins the file's inode, it does not see updates); read-only is not enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path

from pocketkube.agent.runtime import images, procstats
from pocketkube.agent.runtime.interface import (
    DEFAULT_PATH,
    ContainerConfig,
    ContainerHistory,
    ContainerNotRunning,
    ContainerRecord,
    ContainerUsage,
    CreateError,
    ExecResult,
    ImageInfo,
    ImagePullError,
    Mount,
    RegistryAuth,
    SandboxError,
    StartError,
    StreamError,
    StreamOptions,
    User,
)
from pocketkube.agent.runtime.pod_ips import PodIPs
from pocketkube.agent.runtime.process_streams import ProcessAttach, ProcessExec, TcpPortStream, connect_port
from pocketkube.agent.runtime.reference import parse_reference
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.net.errors import AllocationError
from pocketkube.util.processes import kill_group

log = logging.getLogger(__name__)

SETPRIV = "/usr/bin/setpriv"
STATE_FILE = "state.json"
POD_FILE = "pod.json"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    # Field 22 of stat; fields[0] here is field 3 (state).
    return int(fields[19]) if fields[0] != "Z" else None


def resolve_executable(name: str, path: str) -> str | None:
    if "\0" in name:
        return None
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=path)


def privilege_prefix(user: User | None) -> list[str]:
    """The argv prefix that drops to `user` keeping at most CAP_NET_BIND_SERVICE (util-linux setpriv)."""
    if user is None:
        return []
    groups = ",".join(str(g) for g in user.groups)
    prefix = [SETPRIV, "--reuid", str(user.uid), "--regid", str(user.gid)]
    prefix += ["--groups", groups] if groups else ["--clear-groups"]
    if user.bind_low_ports:
        prefix += ["--inh-caps", "+net_bind_service", "--ambient-caps", "+net_bind_service"]
    return prefix + ["--"]


def can_switch_user() -> bool:
    return os.geteuid() == 0 and os.access(SETPRIV, os.X_OK)


async def exec_in(argv: list[str], *, env: dict[str, str], cwd: str | Path | None, user: User | None,
                  timeout: float) -> ExecResult:
    """Run `argv` as `user` in `cwd`, its own process group killed whole on timeout."""
    if not argv:
        raise StartError("no command")
    try:
        proc = await asyncio.create_subprocess_exec(
            *privilege_prefix(user), *argv, env=env or None, cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
    except OSError as e:
        raise StartError(f'exec: "{argv[0]}": {e.strerror}') from None
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        await kill_group(proc)
        return ExecResult(None)
    return ExecResult(proc.returncode, out.decode(errors="replace"))


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


def _open_stdin_fifo(path: Path) -> tuple[int, int]:
    """A FIFO for a container with `stdin: true`: (the read end for the container, the write end
    the agent keeps for attach). The agent's end is opened first (O_RDWR never blocks), so the
    container's open does not block either, and the container reads no EOF while no one attaches."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mkfifo(path, 0o600)
    writer = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return reader, writer


def _spawn(argv: list[str], program: str, cfg: ContainerConfig, cwd: Path, log_path: Path,
           stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Open the log file and start the process (the caller runs this in a worker thread)."""
    with open(log_path, "ab") as logf:
        if cfg.user is not None:
            os.chown(log_path, cfg.user.uid, cfg.user.gid)
        try:
            return subprocess.Popen(argv, cwd=cwd, env=cfg.env, stdin=stdin, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise StartError(f"exec: {program!r}: {e.strerror}") from None
        except ValueError as e:  # a NUL byte in an argument or in the environment
            raise StartError(f"exec: {program!r}: {e}") from None


def _path_component(value: str) -> str:
    """A pod UID or container name used as one directory name: whatever a manifest says, the
    path stays inside the data dir (the API validates both; this holds even if it did not)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise StartError(f"invalid name for a container directory: {value!r}")
    return value


def _link_mount(cdir: Path, m: Mount, node_dir: Path) -> None:
    """Make the volume appear at its mount path under the container's root directory. A volume
    inside the node's data dir is linked relatively, so that a process that dropped root reaches
    it from its working directory even when the data dir's ancestors are private (mkdtemp's 0700)."""
    parts = [p for p in m.container_path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise CreateError(f"invalid mount path {m.container_path!r}")
    target = cdir.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    source = Path(m.host_path)
    if m.sub_path and source.is_file():
        shutil.copy2(source, target)
    elif source.is_relative_to(node_dir):
        target.symlink_to(os.path.relpath(source, target.parent))
    else:
        target.symlink_to(source)


def _from_json(data: dict) -> ContainerRecord:
    """A saved record; one saved before log_format and scheme existed gets today's values."""
    record = ContainerRecord.from_json(data)
    record.log_format = record.log_format or "raw"
    record.scheme = record.scheme or "pocketkube"
    return record


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class ProcessRuntime:
    name = "process"

    def __init__(self, data_dir: Path, pod_cidr: str | None = None, node_ip: str = "") -> None:
        """`pod_cidr`: where pod IPs come from (None: no sandboxes, for tests of containers alone);
        `node_ip`: the IP of hostNetwork pods."""
        self.root = Path(data_dir) / "pods"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.ips = PodIPs(pod_cidr) if pod_cidr else None
        self.node_ip = node_ip
        self._sandboxes: dict[str, str] = {}  # pod uid → IP, once its sandbox exists
        self._histories: dict[tuple[str, str], ContainerHistory] = {}
        self._exits: dict[str, asyncio.Future[ContainerRecord]] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._contexts: dict[str, tuple[dict[str, str], User | None]] = {}  # record id → exec env, user
        self._stdins: dict[str, int] = {}  # record id → write end of its stdin FIFO
        self._stdin_once: set[str] = set()  # record ids whose stdin closes after the first attach
        self._sessions: dict[str, weakref.WeakSet] = {}  # record id → its exec/attach sessions
        self._closing: set[asyncio.Task] = set()

    def on_sandbox_lost(self, callback) -> None:
        """A process pod's sandbox is its IP allocation, which cannot die under it."""

    async def version(self) -> str:
        return "pocketkube-process://0.1"

    def can_switch_user(self) -> bool:
        return can_switch_user()

    # ---- sandboxes: the pod's IP ----
    async def run_pod_sandbox(self, pod: dict) -> str:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid") or ""
        if uid in self._sandboxes:
            return self._sandboxes[uid]
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        try:
            self.pod_dir(uid)
            if host_network:
                if not self.node_ip:
                    raise SandboxError("hostNetwork pod, but this runtime has no node IP")
                ip = self.node_ip
            elif self.ips is None:
                raise SandboxError("no pod CIDR to allocate pod IPs from")
            else:
                ip = self.ips.allocate(uid)
        except StartError as e:
            raise SandboxError(str(e)) from None
        except AllocationError as e:
            raise SandboxError(f"failed to allocate an IP for the pod from {self.ips.network if self.ips else ''}: "
                               f"{e}") from None
        self.save_pod(uid, {"ip": ip, "name": meta.get("name"), "namespace": meta.get("namespace"),
                            "hostNetwork": host_network})
        self._sandboxes[uid] = ip
        return ip

    # ---- images: the local catalog ----
    async def image_status(self, image: str) -> ImageInfo | None:
        parse_reference(image)  # InvalidImageName
        try:
            return ImageInfo(image, images.catalog_image_id(image))
        except images.ImageNotRunnable:
            return None

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        parse_reference(image)  # no registry here: the catalog's images need no credentials
        try:
            return ImageInfo(image, images.catalog_image_id(image))
        except images.ImageNotRunnable as e:
            raise ImagePullError(str(e), unreachable=False) from None

    async def exec_sync(self, pod_uid: str, name: str, argv: list[str], *, env: dict[str, str],
                        user: User | None, timeout: float) -> ExecResult:
        return await exec_in(argv, env=env, cwd=self.container_dir(pod_uid, name), user=user, timeout=timeout)

    # ---- layout ----
    def pod_dir(self, pod_uid: str) -> Path:
        return self.root / _path_component(pod_uid)

    def container_dir(self, pod_uid: str, name: str) -> Path:
        return self.pod_dir(pod_uid) / _path_component(name)

    def log_path(self, pod_uid: str, name: str, restart_count: int) -> Path:
        return self.container_dir(pod_uid, name) / f"{restart_count}.log"

    def pods(self) -> dict[str, dict]:
        out = {}
        for d in self.root.iterdir() if self.root.exists() else []:
            try:
                out[d.name] = json.loads((d / POD_FILE).read_text())
            except (OSError, ValueError):
                out[d.name] = {}
        return out

    def save_pod(self, pod_uid: str, info: dict) -> None:
        d = self.pod_dir(pod_uid)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        _write_json(d / POD_FILE, info)

    # ---- start ----
    async def start(self, cfg: ContainerConfig) -> ContainerRecord:
        # The container's program: its command and args, or its catalog image's default.
        spec = {**cfg.spec, "image": cfg.spec.get("image") or cfg.image, "command": cfg.command, "args": cfg.args}
        try:
            launch = images.resolve(spec, cfg.pod_ip)
        except images.ImageNotRunnable as e:
            raise CreateError(str(e)) from None
        argv = launch.argv
        cdir = self.container_dir(cfg.pod_uid, cfg.name)
        self._prepare_dir(cdir, cfg, launch)
        exe = resolve_executable(argv[0], cfg.env.get("PATH", DEFAULT_PATH)) if argv else None
        if exe is None:
            raise StartError(f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH')
        log_path = self.log_path(cfg.pod_uid, cfg.name, cfg.restart_count)
        stdin_r, stdin_w = _open_stdin_fifo(log_path.with_suffix(".stdin")) if cfg.spec.get("stdin") else (None, None)
        # In a thread: under load a fork/exec can take milliseconds, and other pods' status
        # writes should not wait behind it.
        try:
            proc = await asyncio.get_running_loop().run_in_executor(
                None, _spawn, privilege_prefix(cfg.user) + [exe, *argv[1:]], argv[0], cfg, cdir, log_path,
                subprocess.DEVNULL if stdin_r is None else stdin_r)
        except BaseException:
            if stdin_w is not None:
                os.close(stdin_w)
            raise
        finally:
            if stdin_r is not None:
                os.close(stdin_r)
        record = ContainerRecord(
            id=secrets.token_hex(32), name=cfg.name, pid=proc.pid, start_ticks=proc_start_ticks(proc.pid) or 0,
            started_at=now_rfc3339(), restart_count=cfg.restart_count, log_path=str(log_path),
            image=cfg.image, image_id=cfg.image_id or launch.image_id, log_format="raw", scheme="pocketkube")
        self._procs[record.id] = proc
        self._contexts[record.id] = (cfg.env, cfg.user)
        if stdin_w is not None:
            self._stdins[record.id] = stdin_w
            if cfg.spec.get("stdinOnce"):
                self._stdin_once.add(record.id)
        previous = self._histories.get((cfg.pod_uid, cfg.name))
        last = previous.current if previous and not previous.current.running else (previous.last if previous else None)
        self._histories[(cfg.pod_uid, cfg.name)] = ContainerHistory(record, last)
        self._save(cfg.pod_uid, cfg.name)
        self._watch(cfg.pod_uid, record)
        return record

    def record_failed_start(self, pod_uid: str, name: str, restart_count: int, message: str) -> ContainerRecord:
        """A container that never ran (StartError): terminated at once with exit code 128."""
        now = now_rfc3339()
        record = ContainerRecord(id=secrets.token_hex(32), name=name, pid=0, start_ticks=0, started_at=now,
                                 restart_count=restart_count, log_path="", exit_code=128, finished_at=now,
                                 reason="StartError", message=message)
        previous = self._histories.get((pod_uid, name))
        last = previous.current if previous else None
        self._histories[(pod_uid, name)] = ContainerHistory(record, last)
        self._save(pod_uid, name)
        return record

    @staticmethod
    def _prepare_dir(cdir: Path, cfg: ContainerConfig, launch: images.Launch) -> None:
        cdir.mkdir(parents=True, exist_ok=True)
        os.chmod(cdir.parent, 0o755)
        for rel, content in launch.files.items():
            target = cdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for rel in launch.dirs:
            (cdir / rel).mkdir(parents=True, exist_ok=True)
        for m in cfg.mounts:
            _link_mount(cdir, m, cdir.parent.parent.parent)
        if cfg.user is not None:
            os.chown(cdir, cfg.user.uid, cfg.user.gid)
            for rel in launch.dirs:
                for p in [cdir / rel, *(cdir / rel).rglob("*")]:
                    os.chown(p, cfg.user.uid, cfg.user.gid)

    # ---- exits ----
    def _watch(self, pod_uid: str, record: ContainerRecord) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ContainerRecord] = loop.create_future()
        self._exits[record.id] = fut
        self._keys[record.id] = (pod_uid, record.name)
        try:
            pidfd = os.pidfd_open(record.pid)
        except ProcessLookupError:
            self._on_exit(record, None)
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._on_exit(record, pidfd)
        loop.add_reader(pidfd, readable)

    def _on_exit(self, record: ContainerRecord, _pidfd: int | None) -> None:
        # Kill what is left of the group first: the leader is still a zombie, so its pid cannot be reused.
        try:
            os.killpg(record.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc = self._procs.pop(record.id, None)
        if proc is not None:
            code = proc.wait()
            record.exit_code = 128 - code if code < 0 else code
            record.reason = exit_reason(record.exit_code)
        else:
            record.exit_code = 137
            record.reason = "ContainerStatusUnknown"
            record.message = "The container exited while the node agent was not running; its exit code is unknown"
        record.finished_at = now_rfc3339()
        self._end_streams(record.id)
        key = self._keys.pop(record.id, None)
        if key is not None and key[0] and self.pod_dir(key[0]).exists():
            self._save(*key)
        fut = self._exits.pop(record.id, None)
        if fut is not None and not fut.done():
            fut.set_result(record)

    def exited(self, record: ContainerRecord) -> asyncio.Future[ContainerRecord]:
        fut = self._exits.get(record.id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(record)
        return fut

    async def stop(self, record: ContainerRecord, grace: float) -> None:
        if not record.running:
            return
        fut = self.exited(record)
        if grace > 0:
            self._signal(record, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(fut), grace)
                return
            except TimeoutError:
                pass
        self._signal(record, signal.SIGKILL)
        await fut

    @staticmethod
    def _signal(record: ContainerRecord, sig: int) -> None:
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            pass

    # ---- exec, attach, port-forward (process_streams) ----
    def _running(self, pod_uid: str, name: str) -> ContainerRecord:
        h = self.history(pod_uid, name)
        if h is None or not h.current.running or not h.current.pid:
            raise ContainerNotRunning(f'container not found ("{name}")')
        return h.current

    def _exec_context(self, record: ContainerRecord) -> tuple[dict[str, str], User | None]:
        """The container's environment and user; for a container adopted after an agent restart,
        read from /proc (the agent runs as root whenever it switched users)."""
        if record.id in self._contexts:
            return self._contexts[record.id]
        env: dict[str, str] = {}
        user = None
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{record.pid}/environ").read_bytes()
            env = dict(kv.decode(errors="replace").split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)
            st = os.stat(f"/proc/{record.pid}")
            if can_switch_user() and st.st_uid != os.geteuid():
                user = User(st.st_uid, st.st_gid)
        self._contexts[record.id] = (env, user)
        return env, user

    def _track(self, record_id: str, session) -> None:
        self._sessions.setdefault(record_id, weakref.WeakSet()).add(session)

    def _end_streams(self, record_id: str) -> None:
        """The container is gone: its exec sessions die with it (as in its PID namespace), attach
        sessions see its exit; its stdin FIFO is closed."""
        self._contexts.pop(record_id, None)
        self._stdin_once.discard(record_id)
        fd = self._stdins.pop(record_id, None)
        if fd is not None:
            os.close(fd)
        sessions = self._sessions.pop(record_id, None)
        if sessions:
            loop = asyncio.get_running_loop()
            for s in list(sessions):
                if isinstance(s, ProcessExec):
                    task = loop.create_task(s.close())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    async def exec_stream(self, pod_uid: str, name: str, argv: list[str], opts: StreamOptions) -> ProcessExec:
        record = self._running(pod_uid, name)
        env, user = self._exec_context(record)
        session = await ProcessExec.start(argv, opts, env=env, cwd=self.container_dir(pod_uid, name),
                                          prefix=privilege_prefix(user), path=env.get("PATH", DEFAULT_PATH))
        self._track(record.id, session)
        return session

    async def attach(self, pod_uid: str, name: str, opts: StreamOptions) -> ProcessAttach:
        record = self._running(pod_uid, name)

        def stdin_closed() -> None:
            if record.id in self._stdin_once:  # stdinOnce: its stdin ends with the first attach's
                self._stdin_once.discard(record.id)
                fd = self._stdins.pop(record.id, None)
                if fd is not None:
                    os.close(fd)
        session = ProcessAttach(record.log_path, self.exited(record), opts, stdin=self._stdins.get(record.id),
                                on_stdin_closed=stdin_closed)
        self._track(record.id, session)
        return session

    async def port_forward(self, pod_uid: str, port: int) -> TcpPortStream:
        ip = self._sandboxes.get(pod_uid)
        if not ip:
            raise StreamError(f"pod sandbox {pod_uid} has no IP: the pod is not running")
        return await connect_port(ip, port)

    # ---- persistence and re-adoption ----
    def _save(self, pod_uid: str, name: str) -> None:
        h = self._histories[(pod_uid, name)]
        cdir = self.container_dir(pod_uid, name)
        cdir.mkdir(parents=True, exist_ok=True)
        _write_json(cdir / STATE_FILE, {"current": h.current.to_json(),
                                        "last": h.last.to_json() if h.last else None})

    def history(self, pod_uid: str, name: str) -> ContainerHistory | None:
        key = (pod_uid, name)
        if key not in self._histories:
            self._load(pod_uid, name)
        return self._histories.get(key)

    def _load(self, pod_uid: str, name: str) -> None:
        try:
            data = json.loads((self.container_dir(pod_uid, name) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return
        current = _from_json(data["current"])
        last = _from_json(data["last"]) if data.get("last") else None
        self._histories[(pod_uid, name)] = ContainerHistory(current, last)
        if current.running:
            if proc_start_ticks(current.pid) == current.start_ticks:
                self._watch(pod_uid, current)  # adopted: alive, and the same process we started
            else:
                self._keys[current.id] = (pod_uid, name)
                self._on_exit(current, None)

    def running(self) -> list[tuple[str, ContainerRecord]]:
        return [(uid, h.current) for (uid, _), h in self._histories.items() if h.current.running]

    async def usage(self) -> list[ContainerUsage]:
        """Each running container's process group, summed from /proc."""
        running = [(uid, r) for uid, r in self.running() if r.pid]
        now = time.time()
        groups = await asyncio.to_thread(procstats.group_usage, {r.pid for _, r in running})
        return [ContainerUsage(uid, r.name, *groups.get(r.pid, (0, 0)), now) for uid, r in running]

    async def adopt_all(self) -> None:
        """Load every saved sandbox (its IP taken again) and container, so that live ones are
        watched (and killable) again."""
        for uid, info in self.pods().items():
            ip = info.get("ip") or ""
            if ip:
                self._sandboxes[uid] = ip
                if self.ips is not None and not info.get("hostNetwork"):
                    self.ips.restore(uid, ip)
            for d in self.pod_dir(uid).iterdir():
                if d.is_dir():
                    self.history(uid, d.name)

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        """A process pod's sandbox is its IP: freed, the pod's directory (logs) kept."""
        self._sandboxes.pop(pod_uid, None)
        if self.ips is not None:
            self.ips.release(pod_uid)

    async def remove_pod(self, pod_uid: str) -> None:
        records = [h.current for (uid, _), h in self._histories.items() if uid == pod_uid and h.current.running]
        await asyncio.gather(*(self.stop(r, 0) for r in records))
        for key in [k for k in self._histories if k[0] == pod_uid]:
            del self._histories[key]
        self._sandboxes.pop(pod_uid, None)
        if self.ips is not None:
            self.ips.release(pod_uid)
        shutil.rmtree(self.pod_dir(pod_uid), ignore_errors=True)


def kill_recorded(data_dir: Path) -> int:
    """SIGKILL every container process recorded under a node's data dir that is still alive.

    For whoever outlives a node agent that died without stopping its pods (`up`, tests): a
    SIGKILLed agent leaves its containers running by design, so that a restart re-adopts them.
    Returns how many process groups were killed.
    """
    killed = 0
    for state in (Path(data_dir) / "pods").glob(f"*/*/{STATE_FILE}"):
        try:
            current = ContainerRecord.from_json(json.loads(state.read_text())["current"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if current.running and current.pid and proc_start_ticks(current.pid) == current.start_ticks:
            try:
                os.killpg(current.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
