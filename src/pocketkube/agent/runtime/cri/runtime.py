"""The containerd backend of the runtime interface: pods as CRI sandboxes, containers as CRI
containers, over the async CriClient.

State lives in containerd (labels and annotations as the kubelet sets them), so `adopt_all`
rebuilds everything from ListPodSandbox/ListContainers after an agent restart. What the
interface asks synchronously (history, running, pods) is answered from memory, kept current by
start/stop and by one poller task: containerd 1.6 has no GetContainerEvents, so while anything
runs the poller lists containers every `poll_interval` seconds (the kubelet's PLEG, faster) and
resolves the `exited` futures of those that ended.

On disk, under `<data_dir>/pods/<uid>/` (the sandbox's log directory): the CRI logs
`<name>/<restartCount>.log` (written by containerd), `pod.json` (save_pod), `etc.hosts` (the
pod's /etc/hosts; not a valid container name, so it never collides with a log directory) and
`<name>/<restartCount>.termination-log` (each run's /dev/termination-log).

The pod's cgroup `<cgroup_root>/<node>/pod<uid>` (cgroupfs; containerd needs a cgroup_parent for
sandbox stats) is created with the sandbox and removed with the pod, as the kubelet's pod
container manager does.

Logs are rotated as the kubelet's container log manager does (`log_rotation`, every
`log_monitor_period` seconds; logmanager): `N.log` becomes `N.log.<time>`, later gzipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent import logrotation
from pocketkube.agent.runtime.cri import netns_port
from pocketkube.agent.runtime.cri import translate as t
from pocketkube.agent.runtime.cri.client import CriClient, CriError, NotFound, Unavailable
from pocketkube.agent.runtime.cri.exec_pids import ExecTracker
from pocketkube.agent.runtime.cri.logmanager import ContainerLogManager, remove_logs
from pocketkube.agent.runtime.cri.streams import CriPortStream, CriSession
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    ContainerHistory,
    ContainerNotRunning,
    ContainerRecord,
    ContainerUsage,
    CreateConfigError,
    CreateError,
    ExecResult,
    ImageInfo,
    ImagePullError,
    RegistryAuth,
    RuntimeUnavailable,
    SandboxError,
    StartError,
    StreamError,
    StreamOptions,
    User,
)
from pocketkube.agent.runtime.tcp_stream import TcpPortStream
from pocketkube.api.timestamps import now_rfc3339

log = logging.getLogger(__name__)

POD_FILE = "pod.json"
HOSTS_FILE = "etc.hosts"
CGROUP_FS = Path("/sys/fs/cgroup")
DEFAULT_CGROUP_ROOT = "/pocketkube"
HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"


RUNNING_CONTAINERS = api.ContainerFilter(state=api.ContainerStateValue(state=api.CONTAINER_RUNNING))
READY_SANDBOXES = api.PodSandboxFilter(state=api.PodSandboxStateValue(state=api.SANDBOX_READY))


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def cgroup_dirs(cgroup_path: str, fs: Path = CGROUP_FS) -> list[Path]:
    """Where a cgroupfs path lives: one directory per v1 hierarchy, or one under cgroup v2."""
    rel = cgroup_path.strip("/")
    if (fs / "cgroup.controllers").exists():  # cgroup v2 (unified)
        return [fs / rel]
    out = []
    for h in sorted(fs.iterdir()) if fs.is_dir() else []:
        # Every hierarchy runc creates the path in, named ones (systemd, hybrid mode's unified)
        # included; the cpu/cpuacct-style symlinks are the same directories again.
        if h.is_dir() and not h.is_symlink():
            out.append(h / rel)
    return out


def remove_cgroup(cgroup_path: str, fs: Path = CGROUP_FS) -> None:
    """rmdir the cgroup and anything below it (deepest first), in every hierarchy; absent is
    fine, a cgroup that still has processes raises OSError (EBUSY)."""
    for top in cgroup_dirs(cgroup_path, fs):
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda d: -len(d[0])):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(dirpath)


@dataclass
class _Sandbox:
    id: str
    ip: str


class ContainerdRuntime:
    """Runtime over a CRI endpoint (containerd 1.6). `data_dir` is the node's directory;
    `node_ip` is the IP of hostNetwork pods; `cluster_dns` the cluster DNS servers (none yet:
    ClusterFirst pods then get the host's resolv.conf, as the kubelet's fallback)."""

    name = "containerd"

    def __init__(self, endpoint: str, *, data_dir: str | Path, node_name: str, node_ip: str,
                 cluster_dns: tuple[str, ...] = (), cluster_domain: str = t.CLUSTER_DOMAIN,
                 cgroup_root: str = DEFAULT_CGROUP_ROOT, resolv_conf: str | Path = HOST_RESOLV_CONF,
                 poll_interval: float = 0.4, client: CriClient | None = None,
                 log_rotation: logrotation.LogRotatePolicy | None = logrotation.DEFAULT_POLICY,
                 log_monitor_period: float = logrotation.MONITOR_PERIOD) -> None:
        self.client = client or CriClient(endpoint)
        self.root = Path(data_dir).absolute() / "pods"
        self.node_name = node_name
        self.node_ip = node_ip
        self.cluster_dns = tuple(cluster_dns)
        self.cluster_domain = cluster_domain
        self.cgroup_root = cgroup_root
        self.resolv_conf = Path(resolv_conf)
        self.poll_interval = poll_interval
        self._sandboxes: dict[str, _Sandbox] = {}
        self._netns_paths: dict[str, str | None] = {}  # sandbox id → its network namespace
        self._sandbox_info: dict[str, dict] = {}  # uid -> name/namespace/ip of sandboxes found by adopt_all
        self._histories: dict[tuple[str, str], ContainerHistory] = {}
        self._watched: dict[str, tuple[ContainerRecord, asyncio.Future[ContainerRecord]]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None
        self._sandbox_locks: dict[str, asyncio.Lock] = {}
        self._exec_locks: dict[str, asyncio.Lock] = {}  # container id → serializes exec starts
        self._sandbox_lost: Callable[[str], None] | None = None
        self._log_manager = ContainerLogManager(self.client, log_rotation, period=log_monitor_period) \
            if log_rotation is not None else None
        self._log_rotation: asyncio.Task | None = None

    async def version(self) -> str:
        try:
            v = await self.client.version()
        except CriError as e:
            raise SandboxError(f"the container runtime at {self.client.endpoint} does not answer: {e}") from None
        return f"{v.runtime_name}://{v.runtime_version}"

    async def close(self) -> None:
        """Stop the poller and close the client (containers keep running in containerd)."""
        for task in [self._poller, self._log_rotation, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = self._log_rotation = None
        await self.client.close()

    def _rotate_logs(self) -> None:
        """Start the log rotation loop (once; it needs the running loop, hence not in __init__)."""
        if self._log_manager is not None and self._log_rotation is None:
            self._log_rotation = asyncio.get_running_loop().create_task(self._log_manager.run(),
                                                                        name="container log rotation")

    # ---- layout ----------------------------------------------------------------------------------

    def can_switch_user(self) -> bool:
        return True

    def pod_dir(self, pod_uid: str) -> Path:
        return self.root / t.safe_component(pod_uid, "pod uid")

    def container_dir(self, pod_uid: str, name: str) -> Path:
        return self.pod_dir(pod_uid) / t.safe_component(name, "container name")

    def log_path(self, pod_uid: str, name: str, restart_count: int) -> Path:
        return self.container_dir(pod_uid, name) / f"{restart_count}.log"

    def _termination_log(self, pod_uid: str, name: str, restart_count: int) -> Path:
        return self.container_dir(pod_uid, name) / f"{restart_count}.termination-log"

    def _cgroup_parent(self, pod_uid: str) -> str:
        return t.cgroup_parent(self.cgroup_root, self.node_name, pod_uid)

    def pods(self) -> dict[str, dict]:
        out = dict(self._sandbox_info)
        for d in self.root.iterdir() if self.root.is_dir() else []:
            try:
                out[d.name] = json.loads((d / POD_FILE).read_text())
            except (OSError, ValueError):
                out.setdefault(d.name, {})
        return out

    def save_pod(self, pod_uid: str, info: dict) -> None:
        d = self.pod_dir(pod_uid)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / POD_FILE, json.dumps(info))

    # ---- sandboxes -------------------------------------------------------------------------------

    def _sandbox_config(self, pod: dict, uid: str, attempt: int = 0) -> api.PodSandboxConfig:
        try:
            return t.sandbox_config(pod, log_directory=str(self.pod_dir(uid)), cgroup_parent=self._cgroup_parent(uid),
                                    attempt=attempt, host=self._host_resolv(),
                                    cluster_dns=self.cluster_dns, cluster_domain=self.cluster_domain,
                                    node_ip=self.node_ip)
        except t.ConfigError as e:
            raise SandboxError(str(e)) from None

    def _host_resolv(self) -> t.ResolvConf:
        """The host's resolv.conf; with only a local stub resolver there (systemd-resolved's
        127.0.0.53, unreachable from a pod), the upstream servers it forwards to, as the kubelet
        documents for --resolv-conf."""
        host = t.parse_resolv_conf(_read(self.resolv_conf))
        if host.servers and all(t.is_loopback(s) for s in host.servers) and Path(SYSTEMD_RESOLV_CONF).is_file():
            upstream = t.parse_resolv_conf(_read(SYSTEMD_RESOLV_CONF))
            return t.ResolvConf(upstream.servers, host.searches or upstream.searches, host.options)
        return host

    async def _ip_of(self, sandbox_id: str, host_network: bool) -> str:
        if host_network:
            return self.node_ip
        status = (await self.client.pod_sandbox_status(sandbox_id)).status
        return status.network.ip

    async def run_pod_sandbox(self, pod: dict) -> str:
        uid = (pod.get("metadata") or {}).get("uid", "")
        if not uid:
            raise SandboxError("the pod has no metadata.uid")
        lock = self._sandbox_locks.setdefault(uid, asyncio.Lock())
        async with lock:
            return await self._run_pod_sandbox(pod, uid)

    async def _run_pod_sandbox(self, pod: dict, uid: str) -> str:
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        try:
            existing = await self.client.list_pod_sandbox(api.PodSandboxFilter(label_selector={t.POD_UID: uid}))
            ready = [s for s in existing if s.state == api.SANDBOX_READY]
            if ready:
                sandbox = max(ready, key=lambda s: s.metadata.attempt)
                ip = await self._ip_of(sandbox.id, host_network)
                self._sandboxes[uid] = _Sandbox(sandbox.id, ip)
                return ip
            for s in existing:  # a dead sandbox (its pause exited): free its network first
                with contextlib.suppress(NotFound):
                    await self.client.stop_pod_sandbox(s.id)
            attempt = max((s.metadata.attempt + 1 for s in existing), default=0)
            config = self._sandbox_config(pod, uid, attempt)
            pod_dir = self.pod_dir(uid)
            pod_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(pod_dir, 0o755)
            self._make_cgroup(uid)
            sandbox_id = await self.client.run_pod_sandbox(config)
            ip = await self._ip_of(sandbox_id, host_network)
        except CriError as e:
            raise SandboxError(t.grpc_error_text(e.code, e.message)) from None
        except OSError as e:
            raise SandboxError(f"failed to prepare the pod's directory or cgroup: {e}") from None
        self._sandboxes[uid] = _Sandbox(sandbox_id, ip)
        self._sandbox_info.pop(uid, None)
        hosts = t.etc_hosts(pod, ip, host_file=_read(HOST_HOSTS), cluster_domain=self.cluster_domain)
        _write_atomic(pod_dir / HOSTS_FILE, hosts)
        return ip

    def _make_cgroup(self, uid: str) -> None:
        for d in cgroup_dirs(self._cgroup_parent(uid)):
            d.mkdir(parents=True, exist_ok=True)

    # ---- images ----------------------------------------------------------------------------------

    async def image_status(self, image: str) -> ImageInfo | None:
        ref = t.normalize_image(image)
        try:
            found = await self.client.image_status(ref)
        except CriError as e:
            raise ImagePullError(t.grpc_error_text(e.code, e.message)) from None
        return ImageInfo(ref, t.image_id(found)) if found is not None else None

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        ref = t.normalize_image(image)
        try:
            await self.client.pull_image(ref, auth=t.auth_config(auth))
            found = await self.client.image_status(ref)
        except CriError as e:
            unreachable = e.code == "DEADLINE_EXCEEDED" or (e.code != "UNAVAILABLE" and t.pull_unreachable(e.message))
            raise ImagePullError(t.grpc_error_text(e.code, e.message), unreachable=unreachable) from None
        if found is None:
            raise ImagePullError(f"image {ref} is not present after it was pulled")
        return ImageInfo(ref, t.image_id(found))

    async def _image_user(self, ref: str) -> t.ImageUser | None:
        """Who the image runs as; None when it is not present (CreateContainer then says so)."""
        try:
            found = await self.client.image_status(ref)
        except CriError:
            return None
        if found is None:
            return None
        return t.ImageUser(found.uid.value if found.HasField("uid") else None, found.username)

    # ---- containers ------------------------------------------------------------------------------

    async def start(self, cfg: ContainerConfig) -> ContainerRecord:
        uid, name = cfg.pod_uid, cfg.name
        try:
            cdir = self.container_dir(uid, name)
        except t.ConfigError as e:
            raise CreateError(str(e)) from None
        sandbox = self._sandboxes.get(uid)
        if sandbox is None:
            try:
                await self.run_pod_sandbox(cfg.pod)
            except SandboxError as e:
                raise CreateError(f"the pod has no sandbox: {e}") from None
            sandbox = self._sandboxes[uid]
        try:
            sandbox_config = self._sandbox_config(cfg.pod, uid)
        except SandboxError as e:
            raise CreateError(str(e)) from None
        cdir.mkdir(parents=True, exist_ok=True)
        term_log = self._termination_log(uid, name, cfg.restart_count)
        term_log.write_bytes(b"")
        os.chmod(term_log, 0o666)  # whatever user the container runs as may write its message
        hosts = self.pod_dir(uid) / HOSTS_FILE
        files = t.ContainerFiles(etc_hosts=str(hosts) if hosts.exists() else "", termination_log=str(term_log))
        image = cfg.image or cfg.image_id
        try:
            config = t.container_config(cfg, files=files, image_user=await self._image_user(image))
        except t.ConfigError as e:
            raise CreateConfigError(str(e)) from None
        await self._remove_stale(uid, name, cfg.restart_count)
        try:
            cid = await self.client.create_container(sandbox.id, config, sandbox_config)
        except CriError as e:
            raise CreateError(e.message or str(e)) from None
        previous = self._histories.get((uid, name))
        start_error: CriError | None = None
        try:
            await self.client.start_container(cid)
        except CriError as e:
            start_error = e
        try:
            resp = await self.client.container_status(cid, verbose=True)
            record = t.record_from_status(resp.status, image=cfg.image, pid=t.pid_from_info(dict(resp.info)))
        except CriError:
            record = self._placeholder(cid, cfg, start_error)
        if start_error is not None and record.running:
            record = self._placeholder(cid, cfg, start_error)
        record.log_path = str(self.log_path(uid, name, cfg.restart_count))
        self._rotate_logs()
        for old in self._set_current(uid, name, record, previous):
            await self._remove_container(old)
        if record.running:
            self._watch(record)
        if start_error is not None:
            raise StartError(start_error.message or str(start_error))
        return record

    def _placeholder(self, cid: str, cfg: ContainerConfig, error: CriError | None) -> ContainerRecord:
        now = now_rfc3339()
        record = ContainerRecord(id=cid, name=cfg.name, pid=0, start_ticks=0, started_at=now,
                                 restart_count=cfg.restart_count, log_path="", image=cfg.image,
                                 image_id=cfg.image_id, log_format="cri", scheme="containerd")
        if error is not None:
            record.exit_code, record.reason, record.message, record.finished_at = 128, "StartError", error.message, now
        return record

    def _set_current(self, uid: str, name: str, record: ContainerRecord,
                     previous: ContainerHistory | None) -> list[ContainerRecord]:
        """Make `record` the current run and the previous current `last`; the runs that drop out
        of the history, to remove (the kubelet's container GC keeps one dead container per name)."""
        last = previous.current if previous is not None and previous.current.id != record.id else \
            (previous.last if previous is not None else None)
        self._histories[(uid, name)] = ContainerHistory(record, last)
        keep = {record.id, last.id if last else None}
        return [old for old in (previous.last, previous.current) if old is not None and old.id not in keep] \
            if previous is not None else []

    async def _remove_container(self, record: ContainerRecord) -> None:
        self._resolve(record)
        with contextlib.suppress(CriError):
            await self.client.remove_container(record.id)
        if record.log_path:
            with contextlib.suppress(OSError):
                remove_logs(record.log_path)
            with contextlib.suppress(OSError):
                os.unlink(Path(record.log_path).with_suffix(".termination-log"))

    async def _remove_stale(self, uid: str, name: str, attempt: int) -> None:
        """Remove a container left with this very name and attempt (e.g. created by an agent that
        died before starting it): containerd would refuse to reserve the name again."""
        try:
            found = await self.client.list_containers(api.ContainerFilter(
                label_selector={t.POD_UID: uid, t.CONTAINER_NAME: name}))
        except CriError:
            return
        for c in found:
            if c.metadata.attempt == attempt:
                with contextlib.suppress(CriError):
                    await self.client.remove_container(c.id)

    def record_failed_start(self, pod_uid: str, name: str, restart_count: int, message: str) -> ContainerRecord:
        h = self._histories.get((pod_uid, name))
        if h is not None and h.current.restart_count == restart_count and h.current.reason == "StartError":
            return h.current  # start() recorded it already, from containerd's own status
        now = now_rfc3339()
        record = ContainerRecord(id=secrets.token_hex(32), name=name, pid=0, start_ticks=0, started_at=now,
                                 restart_count=restart_count, log_path="", exit_code=128, finished_at=now,
                                 reason="StartError", message=message, log_format="cri", scheme="containerd")
        for old in self._set_current(pod_uid, name, record, h):
            task = asyncio.get_running_loop().create_task(self._remove_container(old))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return record

    # ---- exits -----------------------------------------------------------------------------------

    def _watch(self, record: ContainerRecord) -> asyncio.Future[ContainerRecord]:
        watched = self._watched.get(record.id)
        if watched is None:
            watched = self._watched[record.id] = (record, asyncio.get_running_loop().create_future())
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="containerd exits")
        return watched[1]

    def exited(self, record: ContainerRecord) -> asyncio.Future[ContainerRecord]:
        if record.running:
            return self._watch(record)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(record)
        return fut

    async def _poll(self) -> None:
        while self._watched:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._poll_once()
            except Unavailable as e:
                log.debug("containerd unavailable while polling exits: %s", e)
            except CriError as e:
                log.warning("polling container exits failed: %s", e)

    async def _poll_once(self) -> None:
        if not self._watched:
            return
        # Only the running ones are listed: a node's exited containers (a Job's hundreds) would
        # otherwise be listed on every poll. Any other watched one is asked about by itself
        # (_refresh resolves only an exited or vanished one).
        running = {c.id for c in await self.client.list_containers(RUNNING_CONTAINERS)}
        for cid, (record, _) in list(self._watched.items()):
            if cid not in running:
                await self._refresh(record)
        if self._sandbox_lost is not None and self._sandboxes:
            await self._check_sandboxes()

    async def _check_sandboxes(self) -> None:
        """A sandbox that is no longer READY (its pause container died) is forgotten, so that the
        next run_pod_sandbox creates another, and reported once to the kubelet."""
        ready = {s.id for s in await self.client.list_pod_sandbox(READY_SANDBOXES) if s.state == api.SANDBOX_READY}
        for uid, sandbox in list(self._sandboxes.items()):
            if sandbox.id not in ready and self._sandboxes.get(uid) is sandbox:
                del self._sandboxes[uid]
                self._netns_paths.pop(sandbox.id, None)
                log.info("the sandbox %s of pod %s is gone; the kubelet re-creates it", sandbox.id[:12], uid)
                assert self._sandbox_lost is not None
                self._sandbox_lost(uid)

    def on_sandbox_lost(self, callback: Callable[[str], None]) -> None:
        self._sandbox_lost = callback

    async def _refresh(self, record: ContainerRecord) -> None:
        """Update a running `record` from containerd; once it exited, resolve its future."""
        if record.running:
            try:
                status = (await self.client.container_status(record.id)).status
            except NotFound:
                self._mark_unknown(record)
            else:
                fresh = t.record_from_status(status, image=record.image)
                if fresh.running:
                    return
                record.exit_code, record.reason, record.finished_at = fresh.exit_code, fresh.reason, fresh.finished_at
                record.message = fresh.message or self._exit_message(record, dict(status.annotations))
        self._resolve(record)

    def _resolve(self, record: ContainerRecord) -> None:
        self._exec_locks.pop(record.id, None)
        watched = self._watched.pop(record.id, None)
        if watched is not None and not watched[1].done():
            watched[1].set_result(record)

    @staticmethod
    def _mark_unknown(record: ContainerRecord) -> None:
        if record.running:  # as the kubelet says of a container that vanished
            record.exit_code, record.reason, record.finished_at = 137, "ContainerStatusUnknown", now_rfc3339()
            record.message = "The container could not be located when the pod was terminated"

    @staticmethod
    def _exit_message(record: ContainerRecord, annotations: dict[str, str]) -> str | None:
        """The termination message: the run's /dev/termination-log, else (FallbackToLogsOnError,
        failed) the log's tail."""
        if not record.log_path:
            return None
        try:
            text = t.termination_message(Path(record.log_path).with_suffix(".termination-log").read_bytes())
        except OSError:
            text = ""
        if not text and record.exit_code and \
                annotations.get(t.TERMINATION_MESSAGE_POLICY) == "FallbackToLogsOnError":
            text = t.log_tail_message(_read(record.log_path))
        return text or None

    async def stop(self, record: ContainerRecord, grace: float) -> None:
        if not record.running:
            return
        fut = self._watch(record)
        try:
            await self.client.stop_container(record.id, max(0, math.ceil(grace)))
            await self._refresh(record)
        except NotFound:
            self._mark_unknown(record)
            self._resolve(record)
        except Unavailable as e:
            raise RuntimeUnavailable(f"stopping container {record.name}: {e.message}") from None
        if not fut.done():
            await asyncio.shield(fut)

    async def exec_sync(self, pod_uid: str, name: str, argv: list[str], *, env: dict[str, str],
                        user: User | None, timeout: float) -> ExecResult:
        # The command runs with the container's own environment and user (CRI ExecSync has neither).
        h = self._histories.get((pod_uid, name))
        if h is None or not h.current.running:
            raise StartError(f"container {name} is not running")
        seconds = max(1, math.ceil(timeout))
        try:
            resp = await self.client.exec_sync(h.current.id, argv, seconds)
        except Unavailable as e:
            if e.code == "DEADLINE_EXCEEDED":
                return ExecResult(None)
            raise StartError(e.message) from None
        except CriError as e:
            if "timeout" in e.message and "exceeded" in e.message:
                return ExecResult(None)
            raise StartError(e.message) from None
        return ExecResult(resp.exit_code, (resp.stdout + resp.stderr).decode(errors="replace"))

    # ---- exec, attach, port-forward: sessions on containerd's streaming server (cri/streams.py) --

    def _running_record(self, pod_uid: str, name: str) -> ContainerRecord:
        h = self._histories.get((pod_uid, name))
        if h is None or not h.current.running:
            raise ContainerNotRunning(f'container not found ("{name}")')
        return h.current

    async def _url(self, name: str, call) -> str:
        try:
            return await call
        except NotFound:
            raise ContainerNotRunning(f'container not found ("{name}")') from None
        except CriError as e:
            raise StreamError(e.message) from None

    async def exec_stream(self, pod_uid: str, name: str, argv: list[str], opts: StreamOptions) -> CriSession:
        record = self._running_record(pod_uid, name)
        url = await self._url(name, self.client.exec(record.id, argv, tty=opts.tty, stdin=opts.stdin,
                                                     stdout=opts.stdout, stderr=opts.stderr and not opts.tty))
        # Execs into one container start one at a time until each one's process is known.
        lock = self._exec_locks.setdefault(record.id, asyncio.Lock())
        await lock.acquire()
        try:
            tracker = ExecTracker(record.pid)
            session = await CriSession.open(url, opts)
        except BaseException:
            lock.release()
            raise
        session.track(tracker, lock)
        return session

    async def attach(self, pod_uid: str, name: str, opts: StreamOptions) -> CriSession:
        cid = self._running_record(pod_uid, name).id
        url = await self._url(name, self.client.attach(cid, tty=opts.tty, stdin=opts.stdin, stdout=opts.stdout,
                                                       stderr=opts.stderr and not opts.tty))
        return await CriSession.open(url, opts)

    async def port_forward(self, pod_uid: str, port: int) -> CriPortStream | TcpPortStream:
        sandbox = self._sandboxes.get(pod_uid)
        if sandbox is None:
            raise StreamError(f"pod {pod_uid} has no running sandbox on this node")
        # Dial inside the sandbox's netns ourselves, as containerd would (cri/netns_port.py): the
        # streaming server's SPDY copy caps a stream at ~90 MB/s. Not possible → CRI PortForward.
        path = await self._netns_path(sandbox.id)
        if path is not None:
            try:
                sock = await netns_port.dial(path, port, sandbox.id)
            except ConnectionError as e:
                raise StreamError(e.strerror or str(e)) from None
            except netns_port.NetnsUnavailable as e:
                log.info("port-forward through the CRI streaming server: cannot enter %s: %s", path, e)
                self._netns_paths[sandbox.id] = None
            else:
                return await TcpPortStream.from_socket(sock)
        try:
            url = await self.client.port_forward(sandbox.id, [port])
        except CriError as e:
            raise StreamError(e.message) from None
        return await CriPortStream.open(url, port)

    async def _netns_path(self, sandbox_id: str) -> str | None:
        """The sandbox's network namespace (cached; None: use CRI PortForward). Entering it needs
        root (CAP_SYS_ADMIN); the agent without it keeps containerd's streaming server."""
        if sandbox_id not in self._netns_paths:
            path = None
            if os.geteuid() == 0:
                with contextlib.suppress(CriError):
                    resp = await self.client.pod_sandbox_status(sandbox_id, verbose=True)
                    path = netns_port.netns_path(resp.info.get("info", ""))
            self._netns_paths[sandbox_id] = path
        path = self._netns_paths[sandbox_id]
        return path if path is not None and os.path.exists(path) else None

    # ---- state -----------------------------------------------------------------------------------

    def history(self, pod_uid: str, name: str) -> ContainerHistory | None:
        return self._histories.get((pod_uid, name))

    def running(self) -> list[tuple[str, ContainerRecord]]:
        return [(uid, h.current) for (uid, _), h in self._histories.items() if h.current.running]

    async def usage(self) -> list[ContainerUsage]:
        """containerd's cgroup stats (ListContainerStats) of our running containers."""
        ours = {r.id: (uid, r.name) for uid, r in self.running()}
        out = []
        for s in await self.client.list_container_stats():
            key = ours.get(s.attributes.id)
            if key is None:
                continue
            stamp = (s.cpu.timestamp or s.memory.timestamp) / 1e9 or time.time()
            out.append(ContainerUsage(key[0], key[1], s.cpu.usage_core_nano_seconds.value,
                                      s.memory.working_set_bytes.value, stamp))
        return out

    async def adopt_all(self) -> None:
        """Rebuild sandboxes and container histories from containerd's labels and annotations;
        watch the running containers again; remove dead containers older than the last run."""
        self._rotate_logs()
        sandboxes = await self.client.list_pod_sandbox()
        for s in sandboxes:
            uid = s.labels.get(t.POD_UID) or s.metadata.uid
            if not uid:
                continue
            self._sandbox_info.setdefault(uid, {"name": s.metadata.name, "namespace": s.metadata.namespace})
            if s.state != api.SANDBOX_READY:
                continue
            current = self._sandboxes.get(uid)
            if current is not None and current.id == s.id:
                continue
            status = (await self.client.pod_sandbox_status(s.id)).status
            host_network = status.linux.namespaces.options.network == api.NODE
            ip = self.node_ip if host_network else status.network.ip
            self._sandboxes[uid] = _Sandbox(s.id, ip)
            self._sandbox_info[uid]["ip"] = ip
        runs: dict[tuple[str, str], list[api.Container]] = {}
        for c in await self.client.list_containers():
            uid, name = c.labels.get(t.POD_UID), c.labels.get(t.CONTAINER_NAME) or c.metadata.name
            if uid and name:
                runs.setdefault((uid, name), []).append(c)
        for (uid, name), found in runs.items():
            found.sort(key=lambda c: (c.metadata.attempt, c.created_at))
            created = [c for c in found if c.state == api.CONTAINER_CREATED]
            for c in created:  # never started (the agent died in between): the kubelet starts a new one
                with contextlib.suppress(CriError):
                    await self.client.remove_container(c.id)
            found = [c for c in found if c.state != api.CONTAINER_CREATED]
            if not found:
                continue
            records = []
            for c in found[-2:]:
                try:
                    resp = await self.client.container_status(c.id, verbose=True)
                except NotFound:
                    continue
                status = resp.status
                record = t.record_from_status(status, pid=t.pid_from_info(dict(resp.info)))
                if record.log_path:
                    record.log_path = str(Path(record.log_path).absolute())
                if not record.running and not record.message:
                    record.message = self._exit_message(record, dict(status.annotations))
                records.append(record)
            for c in found[:-2]:
                with contextlib.suppress(CriError):
                    await self.client.remove_container(c.id)
            if not records:
                continue
            history = ContainerHistory(records[-1], records[-2] if len(records) > 1 else None)
            self._histories[(uid, name)] = history
            if history.current.running:
                self._watch(history.current)

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        # Forgotten first, so that the poller does not report the stop as a lost sandbox.
        sandbox = self._sandboxes.pop(pod_uid, None)
        if sandbox is not None:
            self._netns_paths.pop(sandbox.id, None)
        try:
            sandboxes = await self.client.list_pod_sandbox(api.PodSandboxFilter(label_selector={t.POD_UID: pod_uid}))
            for s in sandboxes:
                with contextlib.suppress(NotFound):
                    await self.client.stop_pod_sandbox(s.id)
        except CriError as e:
            raise SandboxError(t.grpc_error_text(e.code, e.message)) from None

    async def remove_pod(self, pod_uid: str) -> None:
        try:
            sandboxes = await self.client.list_pod_sandbox(api.PodSandboxFilter(label_selector={t.POD_UID: pod_uid}))
        except CriError as e:
            raise SandboxError(t.grpc_error_text(e.code, e.message)) from None
        for s in sandboxes:
            with contextlib.suppress(NotFound):
                await self.client.stop_pod_sandbox(s.id)
        for (uid, _), h in list(self._histories.items()):
            if uid == pod_uid and h.current.running:
                await self._refresh(h.current)
        for s in sandboxes:
            with contextlib.suppress(NotFound):
                await self.client.remove_pod_sandbox(s.id)
        for key in [k for k in self._histories if k[0] == pod_uid]:
            h = self._histories.pop(key)
            for r in (h.current, h.last):
                if r is not None:
                    self._mark_unknown(r)
                    self._resolve(r)
        for s in sandboxes:
            self._netns_paths.pop(s.id, None)
        self._sandboxes.pop(pod_uid, None)
        self._sandbox_info.pop(pod_uid, None)
        self._sandbox_locks.pop(pod_uid, None)
        try:
            remove_cgroup(self._cgroup_parent(pod_uid))
        except t.ConfigError:
            pass
        except OSError as e:
            log.warning("cannot remove the cgroup of pod %s: %s", pod_uid, e)
        with contextlib.suppress(t.ConfigError):
            shutil.rmtree(self.pod_dir(pod_uid), ignore_errors=True)

    def remove_node_cgroups(self) -> None:
        """rmdir `<cgroup_root>/<node>` (and the root when empty): for the wiring, at shutdown."""
        for d in cgroup_dirs(f"{self.cgroup_root.rstrip('/')}/{self.node_name}"):
            for p in (d, d.parent):
                with contextlib.suppress(OSError):
                    p.rmdir()
