"""The process runtime: each container is one child process in its own process group.

argv is exactly as given (no shell); the environment is built as the kubelet builds it
(service links, env, fieldRefs, `$(VAR)` expansion); stdout and stderr go to
<data>/pods/<pod uid>/<container>/<restartCount>.log. When a container's main process exits, the
rest of its process group is killed, as a container's PID namespace dies with its PID 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    ContainerHistory,
    ContainerRecord,
    StartError,
    User,
)
from pocketkube.api.timestamps import now_rfc3339

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETPRIV = "/usr/bin/setpriv"
NOBODY = 65534
STATE_FILE = "state.json"
POD_FILE = "pod.json"


# ---------------------------------------------------------------------------------------------
# Environment: what the kubelet computes for a container
# ---------------------------------------------------------------------------------------------

class EnvError(Exception):
    """An env var cannot be computed; the container waits with CreateContainerConfigError."""


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, unknown or unclosed references stay as is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _service_ip_set(svc: dict) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def services_for_pod(pod: dict, services: list[dict]) -> list[dict]:
    """The Services whose link variables a pod gets: its namespace's (when enableServiceLinks), plus
    default/kubernetes unless the namespace has its own `kubernetes` Service."""
    ns = pod["metadata"].get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, dict] = {}
    master: dict | None = None
    for svc in services:
        if not _service_ip_set(svc):
            continue
        m = svc["metadata"]
        if m.get("namespace") == "default" and m.get("name") == "kubernetes":
            master = svc
        if links and m.get("namespace") == ns:
            chosen[m["name"]] = svc
    if master is not None and "kubernetes" not in chosen:
        chosen["kubernetes"] = master
    return [chosen[k] for k in sorted(chosen)]


def service_env(services: list[dict]) -> dict[str, str]:
    """The Docker-link style variables (FOO_SERVICE_HOST, FOO_PORT_80_TCP_ADDR, ...) per Service."""
    env: dict[str, str] = {}
    for svc in services:
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ip = svc["spec"]["clusterIP"]
        host = f"[{ip}]" if ":" in ip else ip
        ports = svc["spec"].get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        for i, p in enumerate(ports):
            port, proto = str(p.get("port")), (p.get("protocol") or "TCP")
            if i == 0:
                env[f"{prefix}_SERVICE_PORT"] = port
                env[f"{prefix}_PORT"] = f"{proto.lower()}://{host}:{port}"
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = port
            link = f"{prefix}_PORT_{port}_{proto.upper()}"
            env[link] = f"{proto.lower()}://{host}:{port}"
            env[f"{link}_PROTO"] = proto.lower()
            env[f"{link}_PORT"] = port
            env[f"{link}_ADDR"] = ip
    return env


_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


def field_ref(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        section = meta.get(m.group(1).split(".")[1]) or {}
        return str(section.get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvError(f"unsupported fieldRef fieldPath: {path}")


_SUFFIX = {"": 1, "m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | float) -> Fraction:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise EnvError(f"invalid quantity {value!r}")
    return Fraction(m.group(1)) * _SUFFIX[m.group(2)]


def resource_field_ref(container: dict, ref: dict, allocatable: dict[str, str]) -> str:
    """limits.cpu, requests.memory, ... rounded up in units of `divisor`; unset limits are the node's."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = allocatable.get(name)
    amount = quantity(value) if value is not None else Fraction(0)
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(amount / divisor)) if divisor else "0"


def container_env(pod: dict, container: dict, services: list[dict], pod_ip: str, host_ip: str,
                  allocatable: dict[str, str] | None = None) -> dict[str, str]:
    """Service link variables, then the container's env in order, each value expanded against what
    came before it; finally what a container runtime adds (HOSTNAME, PATH, HOME) and POD_IP."""
    env = service_env(services_for_pod(pod, services))
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        if not ref.get("optional"):
            kind = "configmap" if "configMapRef" in src else "secret"
            raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], pod_ip, host_ip, allocatable or {})
            if value is None:
                continue
        else:
            value = expand(var.get("value", ""), env.get)
        env[name] = value
    env.setdefault("HOSTNAME", pod["metadata"].get("name", ""))
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("POD_IP", pod_ip)
    return env


def _value_from(pod: dict, container: dict, source: dict, pod_ip: str, host_ip: str,
                allocatable: dict[str, str]) -> str | None:
    if "fieldRef" in source:
        return field_ref(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
    if "resourceFieldRef" in source:
        return resource_field_ref(container, source["resourceFieldRef"], allocatable)
    ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
    if ref.get("optional"):
        return None
    kind = "configmap" if "configMapKeyRef" in source else "secret"
    raise EnvError(f'{kind} "{ref.get("name", "")}" not found')


def expand_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    return [expand(a, env.get) for a in argv]


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


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


def _spawn(argv: list[str], cfg: ContainerConfig, cwd: Path, log_path: Path) -> subprocess.Popen:
    """Open the log file and start the process (the caller runs this in a worker thread)."""
    with open(log_path, "ab") as logf:
        if cfg.user is not None:
            os.chown(log_path, cfg.user.uid, cfg.user.gid)
        try:
            return subprocess.Popen(argv, cwd=cwd, env=cfg.env, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise StartError(f"exec: {cfg.argv[0]!r}: {e.strerror}") from None
        except ValueError as e:  # a NUL byte in an argument or in the environment
            raise StartError(f"exec: {cfg.argv[0]!r}: {e}") from None


def _path_component(value: str) -> str:
    """A pod UID or container name used as one directory name: whatever a manifest says, the
    path stays inside the data dir (the API validates both; this holds even if it did not)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise StartError(f"invalid name for a container directory: {value!r}")
    return value


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class ProcessRuntime:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "pods"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._histories: dict[tuple[str, str], ContainerHistory] = {}
        self._exits: dict[str, asyncio.Future[ContainerRecord]] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._keys: dict[str, tuple[str, str]] = {}

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
        cdir = self.container_dir(cfg.pod_uid, cfg.name)
        self._prepare_dir(cdir, cfg)
        exe = resolve_executable(cfg.argv[0], cfg.env.get("PATH", DEFAULT_PATH)) if cfg.argv else None
        if exe is None:
            raise StartError(f'exec: "{cfg.argv[0] if cfg.argv else ""}": executable file not found in $PATH')
        log_path = self.log_path(cfg.pod_uid, cfg.name, cfg.restart_count)
        # In a thread: under load a fork/exec can take milliseconds, and other pods' status
        # writes should not wait behind it.
        proc = await asyncio.get_running_loop().run_in_executor(
            None, _spawn, privilege_prefix(cfg.user) + [exe, *cfg.argv[1:]], cfg, cdir, log_path)
        record = ContainerRecord(
            id=secrets.token_hex(32), name=cfg.name, pid=proc.pid, start_ticks=proc_start_ticks(proc.pid) or 0,
            started_at=now_rfc3339(), restart_count=cfg.restart_count, log_path=str(log_path),
            image=cfg.image, image_id=cfg.image_id)
        self._procs[record.id] = proc
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

    def _prepare_dir(self, cdir: Path, cfg: ContainerConfig) -> None:
        cdir.mkdir(parents=True, exist_ok=True)
        os.chmod(cdir.parent, 0o755)
        for rel, content in cfg.files.items():
            target = cdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for rel in cfg.dirs:
            (cdir / rel).mkdir(parents=True, exist_ok=True)
        if cfg.user is not None:
            os.chown(cdir, cfg.user.uid, cfg.user.gid)
            for rel in cfg.dirs:
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
        current = ContainerRecord.from_json(data["current"])
        last = ContainerRecord.from_json(data["last"]) if data.get("last") else None
        self._histories[(pod_uid, name)] = ContainerHistory(current, last)
        if current.running:
            if proc_start_ticks(current.pid) == current.start_ticks:
                self._watch(pod_uid, current)  # adopted: alive, and the same process we started
            else:
                self._keys[current.id] = (pod_uid, name)
                self._on_exit(current, None)

    def running(self) -> list[tuple[str, ContainerRecord]]:
        return [(uid, h.current) for (uid, _), h in self._histories.items() if h.current.running]

    def adopt_all(self) -> None:
        """Load every saved container so that live ones are watched (and killable) again."""
        for uid in self.pods():
            for d in self.pod_dir(uid).iterdir():
                if d.is_dir():
                    self.history(uid, d.name)

    async def remove_pod(self, pod_uid: str) -> None:
        records = [h.current for (uid, _), h in self._histories.items() if uid == pod_uid and h.current.running]
        await asyncio.gather(*(self.stop(r, 0) for r in records))
        for key in [k for k in self._histories if k[0] == pod_uid]:
            del self._histories[key]
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
