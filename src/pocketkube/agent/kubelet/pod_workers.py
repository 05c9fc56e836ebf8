"""The kubelet: per-pod workers reconciling the API's pods (desired) with the runtime's containers.

Each pod bound to this node gets one PodWorker task. A worker wakes on a pod update, a container
exit, a probe result flip or a back-off expiry; it then starts what should run, restarts what
exited (with the kubelet's exponential back-off), and writes the pod's status through the
pods/status subresource when it changed. Deletion is graceful: SIGTERM, wait, SIGKILL, then
the pod object is removed with gracePeriodSeconds=0 and a uid precondition.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pocketkube.agent.probes import ProbeTarget, ProbeWorker
from pocketkube.agent.runtime import images
from pocketkube.agent.runtime.interface import ContainerConfig, ContainerRecord, Runtime, StartError, User
from pocketkube.agent.runtime.process import (
    NOBODY,
    EnvError,
    can_switch_user,
    container_env,
    expand_argv,
)
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.informer import Informer
from pocketkube.client.rest import MERGE_PATCH, Client
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
SERVICES = BY_PLURAL[("", "services")]
EVENTS = BY_PLURAL[("", "events")]
DEFAULT_GRACE = 30
SHUTDOWN_GRACE = 3.0
CONFIG_RETRY = 10.0


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------

def crash_loop_backoff(clock: Callable[[], float] = time.time) -> Backoff:
    """The kubelet's crash-loop and image-pull back-off (flowcontrol.Backoff): 10 s doubling to
    5 min, forgotten once a container ran for twice the maximum."""
    return Backoff(initial=10.0, maximum=300.0, reset_after=600.0, clock=clock)


def go_duration(seconds: float) -> str:
    """Go's time.Duration formatting for whole seconds: 10s, 1m20s, 5m0s."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _resources(c: dict) -> tuple[dict, dict]:
    r = c.get("resources") or {}
    return r.get("requests") or {}, r.get("limits") or {}


def qos_class(pod: dict) -> str:
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        requests, limits = _resources(c)
        if requests or limits:
            any_set = True
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_phase(policy: str, statuses: list[dict], init_pending: bool, init_failed: bool,
              terminal: bool = False) -> str:
    """The kubelet's getPhase over computed container statuses."""
    if init_failed:
        return "Failed"
    if init_pending:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif (s.get("lastState") or {}).get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting and not terminal:
        return "Pending"
    if running and not terminal:
        return "Running"
    if stopped or terminal:
        if terminal:
            return "Succeeded" if stopped == succeeded and not running and not waiting else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def container_user(pod: dict, container: dict) -> User | None:
    """Containers run as nobody unless securityContext.runAsUser says otherwise (0 = root)."""
    if not can_switch_user():
        return None
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    uid = sc.get("runAsUser")
    if uid == 0:
        return None
    gid = sc.get("runAsGroup", NOBODY if uid is None else 0)
    groups = tuple(pod_sc.get("supplementalGroups") or ())
    return User(uid=NOBODY if uid is None else int(uid), gid=int(gid), groups=groups)


# ---------------------------------------------------------------------------------------------
# Pod IPs
# ---------------------------------------------------------------------------------------------

class PodIPs:
    """Pod IPs from the node's pod CIDR: never the network, the .1 gateway or the broadcast."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.by_uid: dict[str, str] = {}

    def restore(self, uid: str, ip: str) -> None:
        if ip:
            self.by_uid[uid] = ip

    def allocate(self, uid: str) -> str:
        if uid in self.by_uid:
            return self.by_uid[uid]
        used = set(self.by_uid.values())
        for host in self.network.hosts():
            ip = str(host)
            if int(host) - int(self.network.network_address) < 2 or ip in used:
                continue
            self.by_uid[uid] = ip
            return ip
        raise RuntimeError(f"pod CIDR {self.network} is full")

    def release(self, uid: str) -> None:
        self.by_uid.pop(uid, None)


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

class EventRecorder:
    """Sends Events in the background; a repeat of the same event PATCHes its count instead.

    Events yield to pod status writes: during a burst of pod starts, the statuses (which make
    pods Ready) go first and the events follow.
    """

    def __init__(self, client: Client, node: str, cache_size: int = 4096,
                 quiet: asyncio.Event | None = None) -> None:
        self.client, self.node = client, node
        self._quiet = quiet
        self._queue: asyncio.Queue[tuple[dict, str, str, str, str]] = asyncio.Queue()
        self._seen: OrderedDict[tuple, tuple[str, int]] = OrderedDict()
        self._cache_size = cache_size

    def emit(self, pod: dict, type_: str, reason: str, message: str, field_path: str = "") -> None:
        self._queue.put_nowait((pod, type_, reason, message, field_path))

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if self._quiet is not None:
                await self._quiet.wait()
            try:
                await self._send(*item)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - an event that cannot be recorded is only logged
                log.debug("event not recorded: %s", e)

    async def drain(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _send(self, pod: dict, type_: str, reason: str, message: str, field_path: str) -> None:
        meta = pod["metadata"]
        key = (meta.get("uid"), field_path, type_, reason, message)
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                await self.client.patch(EVENTS, meta["namespace"], name, {"count": count + 1, "lastTimestamp": now})
                self._remember(key, name, count + 1)
                return
            except errors.NotFound:
                pass
        name = f"{meta['name']}.{time.time_ns():x}"
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid"),
                    "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}
        if field_path:
            involved["fieldPath"] = field_path
        await self.client.create(EVENTS, {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": self.node}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1, "type": type_, "eventTime": None, "reportingComponent": "kubelet",
            "reportingInstance": self.node})
        self._remember(key, name, 1)

    def _remember(self, key: tuple, name: str, count: int) -> None:
        self._seen[key] = (name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)


# ---------------------------------------------------------------------------------------------
# Pod workers
# ---------------------------------------------------------------------------------------------

@dataclass
class Waiting:
    reason: str
    message: str = ""


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
        self.k = kubelet
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.wake = asyncio.Event()
        self.gone = False  # the pod no longer exists in the API
        self.finished = False
        self.terminated = False  # containers were stopped for deletion; nothing may start again
        self.waiting: dict[str, Waiting] = {}
        self.ready: dict[str, bool] = {}
        self.started: dict[str, bool] = {}
        self.probe_tasks: dict[str, list[asyncio.Task]] = {}
        self.exit_tasks: dict[str, asyncio.Task] = {}
        self.image_failed_at: dict[str, float] = {}
        self.last_patch: dict | None = None
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.ip = ""
        self.task = asyncio.create_task(self._loop(), name=f"pod {self.key}")

    @property
    def key(self) -> str:
        return f"{self.pod['metadata'].get('namespace')}/{self.pod['metadata'].get('name')}"

    @property
    def spec(self) -> dict:
        return self.pod.get("spec") or {}

    @property
    def policy(self) -> str:
        return self.spec.get("restartPolicy") or "Always"

    def pod_ref(self) -> str:
        m = self.pod["metadata"]
        return f"{m['name']}_{m.get('namespace')}({self.uid})"

    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def mark_gone(self) -> None:
        self.gone = True
        self.wake.set()

    async def _loop(self) -> None:
        while not self.finished:
            self.wake.clear()
            try:
                delay = await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed", self.key)
                delay = 1.0
            if self.finished:
                break
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
            except TimeoutError:
                pass
        self.k.worker_done(self)

    # ---- the reconcile step ----
    async def sync(self) -> float | None:
        if self.gone:
            await self.stop_containers(self._grace())
            await self._cleanup()
            return None
        if self.pod["metadata"].get("deletionTimestamp"):
            await self._delete_gracefully()
            return None
        if (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not self._any_running():
            return None
        if not self.ip:
            self.ip = self.k.ips.allocate(self.uid)
            self.k.runtime.save_pod(self.uid, {"ip": self.ip, "name": self.pod["metadata"]["name"],
                                               "namespace": self.pod["metadata"].get("namespace")})
        await self.k.services_synced()
        delays = await self._reconcile_containers()
        await self.write_status()
        return min(delays) if delays else None

    async def _reconcile_containers(self) -> list[float]:
        delays: list[float] = []
        for c in self.spec.get("initContainers") or []:
            rec = self._current(c["name"])
            if rec is not None and not rec.running and rec.exit_code == 0:
                continue
            if rec is None or not rec.running:
                if rec is not None and not should_restart(self.policy, rec.exit_code or 0):
                    return delays  # a failed init container under restartPolicy Never fails the pod
                await self._start_or_backoff(c, rec, delays)
            return delays
        starts = []
        for c in self.spec.get("containers") or []:
            rec = self._current(c["name"])
            if rec is None or (not rec.running and should_restart(self.policy, rec.exit_code or 0)):
                starts.append(self._start_or_backoff(c, rec, delays))
        await asyncio.gather(*starts)
        return delays

    def _current(self, name: str) -> ContainerRecord | None:
        h = self.k.runtime.history(self.uid, name)
        if h is not None and h.current.running and name not in self.exit_tasks:
            self._on_started(self._container_spec(name), h.current, adopted=True)
        return h.current if h else None

    def _container_spec(self, name: str) -> dict:
        for c in (self.spec.get("initContainers") or []) + (self.spec.get("containers") or []):
            if c["name"] == name:
                return c
        return {"name": name}

    def _any_running(self) -> bool:
        return any(h.current.running for h in self._histories())

    def _histories(self):
        for c in (self.spec.get("initContainers") or []) + (self.spec.get("containers") or []):
            h = self.k.runtime.history(self.uid, c["name"])
            if h is not None:
                yield h

    async def _start_or_backoff(self, c: dict, rec: ContainerRecord | None, delays: list[float]) -> None:
        name = c["name"]
        key = f"{self.uid}/{name}"
        if rec is not None:
            finished = parse_rfc3339(rec.finished_at, default=0.0)
            if self.k.backoff.failures_pending(key, finished):
                wait = self.k.backoff.delay(key)
                message = f"back-off {go_duration(wait)} restarting failed container={name} pod={self.pod_ref()}"
                if self.waiting.get(name) != Waiting("CrashLoopBackOff", message):
                    self.k.events.emit(self.pod, "Warning", "BackOff",
                                       f"Back-off restarting failed container {name} in pod {self.pod_ref()}",
                                       self._field_path(name))
                self.waiting[name] = Waiting("CrashLoopBackOff", message)
                delays.append(self.k.backoff.remaining(key, finished) + 0.01)
                return
            self.k.backoff.next(key, finished)
        await self._start(c, rec.restart_count + 1 if rec else 0, delays)

    def _field_path(self, name: str) -> str:
        kind = "initContainers" if any(c["name"] == name for c in self.spec.get("initContainers") or []) \
            else "containers"
        return f"spec.{kind}{{{name}}}"

    async def _start(self, c: dict, restart_count: int, delays: list[float]) -> None:
        name, image = c["name"], c.get("image", "")
        fp = self._field_path(name)
        launch = self._resolve_image(c, delays)
        if launch is None:
            return
        try:
            env = container_env(self.pod, c, self.k.services(), self.ip, self.k.node_ip, self.k.allocatable)
        except EnvError as e:
            self.waiting[name] = Waiting("CreateContainerConfigError", str(e))
            self.k.events.emit(self.pod, "Warning", "Failed", f"Error: {e}", fp)
            delays.append(CONFIG_RETRY)
            return
        self.waiting.pop(name, None)
        user = container_user(self.pod, c)
        cfg = ContainerConfig(pod_uid=self.uid, name=name, argv=expand_argv(launch.argv, env), env=env,
                              restart_count=restart_count, image=images.parse_image(image).normalized(),
                              image_id=launch.image_id, user=user, files=launch.files, dirs=launch.dirs)
        self.k.events.emit(self.pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', fp)
        try:
            record = await self.k.runtime.start(cfg)
        except StartError as e:
            message = f"failed to start container {name!r}: {e}"
            self.k.runtime.record_failed_start(self.uid, name, restart_count, message)
            self.k.events.emit(self.pod, "Warning", "Failed", f"Error: {message}", fp)
            delays.append(0.0)
            return
        self.k.events.emit(self.pod, "Normal", "Created", f"Created container: {name}", fp)
        self.k.events.emit(self.pod, "Normal", "Started", f"Started container {name}", fp)
        self._on_started(c, record, adopted=False)

    def _resolve_image(self, c: dict, delays: list[float]) -> images.Launch | None:
        """The image's launch, or None with the container waiting in ErrImagePull/ImagePullBackOff."""
        name, image = c["name"], c.get("image", "")
        key = f"{self.uid}/{name}/image"
        fp = self._field_path(name)
        failed_at = self.image_failed_at.get(name)
        if failed_at is not None and self.k.image_backoff.failures_pending(key, failed_at):
            if self.waiting[name].reason != "ImagePullBackOff":
                self.k.events.emit(self.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', fp)
                self.k.events.emit(self.pod, "Warning", "Failed", "Error: ImagePullBackOff", fp)
                self.waiting[name] = Waiting("ImagePullBackOff", f'Back-off pulling image "{image}": '
                                             f"ErrImagePull: {self.waiting[name].message}")
            delays.append(self.k.image_backoff.remaining(key, failed_at) + 0.01)
            return None
        try:
            launch = images.resolve(c, self.ip)
        except images.ImageNotRunnable as e:
            now = self.k.clock()
            self.k.image_backoff.next(key, now)
            self.image_failed_at[name] = now
            self.waiting[name] = Waiting("ErrImagePull", str(e))
            self.k.events.emit(self.pod, "Warning", "Failed", f'Failed to pull image "{image}": {e}', fp)
            self.k.events.emit(self.pod, "Warning", "Failed", "Error: ErrImagePull", fp)
            delays.append(self.k.image_backoff.delay(key) + 0.01)
            return None
        self.image_failed_at.pop(name, None)
        self.k.image_backoff.forget_prefix(key)
        return launch

    # ---- running containers: exits and probes ----
    def _on_started(self, c: dict, record: ContainerRecord, adopted: bool) -> None:
        name = c["name"]
        self.ready[name] = not c.get("readinessProbe")
        self.started[name] = not c.get("startupProbe")
        if adopted:
            # A re-adopted container passed its probes before; do not flap it to unready.
            self.ready[name] = self.started[name] = True
        self.exit_tasks[name] = asyncio.create_task(self._await_exit(name, record))
        self._start_probes(c, record, adopted)

    async def _await_exit(self, name: str, record: ContainerRecord) -> None:
        await self.k.runtime.exited(record)
        self._stop_probes(name)
        self.ready[name] = False
        self.exit_tasks.pop(name, None)
        self.wake.set()

    def _start_probes(self, c: dict, record: ContainerRecord, adopted: bool) -> None:
        """Startup first (liveness and readiness wait for it); an adopted container is past startup."""
        if c.get("startupProbe") and not adopted:
            kinds = ["startup"]
        else:
            kinds = ["liveness", "readiness"]
        self._run_probes(c, record, kinds, adopted)

    def _run_probes(self, c: dict, record: ContainerRecord, kinds: list[str], adopted: bool = False) -> None:
        name = c["name"]
        target = ProbeTarget(self.ip, c, env=self._probe_env(c), user=container_user(self.pod, c),
                             cwd=str(self.k.runtime.container_dir(self.uid, name)))
        for kind in kinds:
            probe = c.get(f"{kind}Probe")
            if not probe:
                continue
            worker = ProbeWorker(kind, probe, target, lambda k, ok: self._on_probe(c, record, k, ok),
                                 lambda k, msg: self._on_probe_failure(name, msg))
            if adopted and kind == "readiness":
                worker.ok = True
            self.probe_tasks.setdefault(name, []).append(asyncio.create_task(worker.run()))

    def _probe_env(self, c: dict) -> dict[str, str]:
        try:
            return container_env(self.pod, c, self.k.services(), self.ip, self.k.node_ip, self.k.allocatable)
        except EnvError:
            return {}

    def _on_probe_failure(self, name: str, message: str) -> None:
        self.k.events.emit(self.pod, "Warning", "Unhealthy", message, self._field_path(name))

    def _on_probe(self, c: dict, record: ContainerRecord, kind: str, ok: bool) -> None:
        name = c["name"]
        if kind == "readiness":
            self.ready[name] = ok
        elif kind == "startup" and ok:
            self.started[name] = True
            self._stop_probes(name)
            self._run_probes(c, record, ["liveness", "readiness"])
        elif not ok:
            self.k.events.emit(self.pod, "Normal", "Killing",
                               f"Container {name} failed {kind} probe, will be restarted", self._field_path(name))
            asyncio.create_task(self.k.runtime.stop(record, self._termination_grace()))
        self.wake.set()

    def detach(self) -> None:
        """Stop watching this pod's containers without touching them (the agent is going away)."""
        self.task.cancel()
        for name in list(self.probe_tasks):
            self._stop_probes(name)
        for t in self.exit_tasks.values():
            t.cancel()

    def _stop_probes(self, name: str) -> None:
        for t in self.probe_tasks.pop(name, []):
            t.cancel()

    # ---- termination ----
    def _termination_grace(self) -> float:
        value = self.spec.get("terminationGracePeriodSeconds")
        return float(DEFAULT_GRACE if value is None else value)

    def _grace(self) -> float:
        value = self.pod["metadata"].get("deletionGracePeriodSeconds")
        return float(value) if value is not None else self._termination_grace()

    async def stop_containers(self, grace: float) -> None:
        self.terminated = True
        for name in list(self.probe_tasks):
            self._stop_probes(name)
        running = [h.current for h in self._histories() if h.current.running]
        for rec in running:
            self.k.events.emit(self.pod, "Normal", "Killing", f"Stopping container {rec.name}",
                               self._field_path(rec.name))
        await asyncio.gather(*(self.k.runtime.stop(rec, grace) for rec in running))
        for t in list(self.exit_tasks.values()):
            t.cancel()
        self.exit_tasks.clear()

    async def _delete_gracefully(self) -> None:
        await self.stop_containers(self._grace())
        self.ready = {k: False for k in self.ready}
        await self.write_status(terminal=True)
        m = self.pod["metadata"]
        try:
            await self.k.client.delete(PODS, m["namespace"], m["name"], grace_period=0,
                                       preconditions={"uid": self.uid})
        except (errors.NotFound, errors.Conflict):
            pass
        await self._cleanup()

    async def _cleanup(self) -> None:
        self.terminated = True
        await self.k.runtime.remove_pod(self.uid)
        self.k.ips.release(self.uid)
        self.k.backoff.forget_prefix(self.uid)
        self.k.image_backoff.forget_prefix(self.uid)
        self.finished = True

    # ---- status ----
    def container_status(self, c: dict, init_running: bool = False) -> dict:
        name = c["name"]
        h = self.k.runtime.history(self.uid, name)
        rec = h.current if h else None
        waiting = self.waiting.get(name)
        status: dict = {"name": name, "image": c.get("image", ""), "imageID": "", "ready": False,
                        "started": False, "restartCount": rec.restart_count if rec else 0,
                        "state": {}, "lastState": {}}
        if rec is not None:
            status["image"] = rec.image or status["image"]
            status["imageID"] = rec.image_id
            if rec.pid:
                status["containerID"] = f"pocketkube://{rec.id}"
        if h is not None and h.last is not None:
            status["lastState"] = {"terminated": _terminated(h.last)}
        if rec is not None and rec.running:
            status["state"] = {"running": {"startedAt": rec.started_at}}
            status["ready"] = bool(self.ready.get(name)) and bool(self.started.get(name))
            status["started"] = bool(self.started.get(name))
        elif waiting is not None and not self.terminated:
            status["state"] = {"waiting": {"reason": waiting.reason, **({"message": waiting.message}
                                                                        if waiting.message else {})}}
            if rec is not None:
                status["lastState"] = {"terminated": _terminated(rec)}
        elif rec is not None:
            status["state"] = {"terminated": _terminated(rec)}
        else:
            reason = "PodInitializing" if init_running else "ContainerCreating"
            status["state"] = {"waiting": {"reason": reason}}
        return status

    def build_status(self, terminal: bool = False) -> dict:
        spec = self.spec
        inits = spec.get("initContainers") or []
        init_statuses = [self.container_status(c) for c in inits]
        incomplete = [s["name"] for s in init_statuses
                      if (s["state"].get("terminated") or {}).get("exitCode") != 0]
        init_failed = self.policy == "Never" and any(
            (s["state"].get("terminated") or {}).get("exitCode") not in (None, 0) for s in init_statuses)
        statuses = sorted((self.container_status(c, init_running=bool(incomplete))
                           for c in spec.get("containers") or []), key=lambda s: s["name"])
        phase = pod_phase(self.policy, statuses, bool(incomplete), init_failed, terminal)
        unready = [s["name"] for s in statuses if not s["ready"]]
        status: dict = {
            "phase": phase, "hostIP": self.k.node_ip, "hostIPs": [{"ip": self.k.node_ip}],
            "startTime": self.start_time, "qosClass": qos_class(self.pod), "containerStatuses": statuses,
        }
        if self.ip:
            status["podIP"], status["podIPs"] = self.ip, [{"ip": self.ip}]
        if inits:
            status["initContainerStatuses"] = init_statuses
        status["conditions"] = self._conditions(phase, incomplete, unready)
        return status

    def _conditions(self, phase: str, incomplete: list[str], unready: list[str]) -> list[dict]:
        existing = {c.get("type"): c for c in (self.pod.get("status") or {}).get("conditions") or []}
        completed = phase in ("Succeeded", "Failed")

        def cond(type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
            old = existing.get(type_) or {}
            status = "True" if ok else "False"
            c = {"type": type_, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status
                 else now_rfc3339()}
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        def names(items: list[str]) -> str:
            return "[" + " ".join(items) + "]"

        ready_reason = "PodCompleted" if completed else "ContainersNotReady"
        out = [cond("PodReadyToStartContainers", bool(self.ip) and not (completed and self.terminated)),
               cond("Initialized", not incomplete, "" if not incomplete else "ContainersNotInitialized",
                    f"containers with incomplete status: {names(incomplete)}" if incomplete else "")]
        ready = not unready and not completed
        ready_msg = "" if ready or completed else f"containers with unready status: {names(unready)}"
        out.append(cond("Ready", ready, "" if ready else ready_reason, ready_msg))
        out.append(cond("ContainersReady", ready, "" if ready else ready_reason, ready_msg))
        if "PodScheduled" in existing:
            out.append(existing["PodScheduled"])
        return out

    async def write_status(self, terminal: bool = False) -> None:
        status = self.build_status(terminal)
        if status == self.last_patch:
            return
        m = self.pod["metadata"]
        try:
            with self.k.status_write():
                updated = await self.k.client.patch(PODS, m["namespace"], m["name"],
                                                    {"metadata": {"uid": self.uid}, "status": status},
                                                    MERGE_PATCH, subresource="status")
        except (errors.NotFound, errors.Conflict):
            return
        self.last_patch = status
        if isinstance(updated, dict) and updated.get("metadata", {}).get("uid") == self.uid:
            self.pod = {**self.pod, "status": updated.get("status") or status}


def _terminated(rec: ContainerRecord) -> dict:
    t = {"exitCode": rec.exit_code, "reason": rec.reason or ("Completed" if rec.exit_code == 0 else "Error"),
         "startedAt": rec.started_at, "finishedAt": rec.finished_at}
    if rec.message:
        t["message"] = rec.message
    if rec.pid:
        t["containerID"] = f"pocketkube://{rec.id}"
    return t


# ---------------------------------------------------------------------------------------------
# The kubelet
# ---------------------------------------------------------------------------------------------

class Kubelet:
    """Watches this node's pods (spec.nodeName=<node>) and runs one PodWorker per pod."""

    def __init__(self, client: Client, runtime: Runtime, node_name: str, node_ip: str, pod_cidr: str,
                 allocatable: dict[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.runtime = runtime
        self.node_name = node_name
        self.node_ip = node_ip
        self.allocatable = allocatable or {}
        self.clock = clock
        self.ips = PodIPs(pod_cidr)
        self.backoff = crash_loop_backoff(clock)
        self.image_backoff = crash_loop_backoff(clock)
        self._status_writes = 0
        self._no_status_writes = asyncio.Event()
        self._no_status_writes.set()
        self.events = EventRecorder(client, node_name, quiet=self._no_status_writes)
        self.pod_informer = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.service_informer = Informer(client, SERVICES)
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Re-adopt what still runs, sync the pod list, and remove pods the API no longer has."""
        self.runtime.adopt_all()
        for uid, info in self.runtime.pods().items():
            self.ips.restore(uid, info.get("ip", ""))
        self.pod_informer.add_handlers(self._on_pod, lambda _old, new: self._on_pod(new), self._on_pod_deleted)
        self._tasks = [asyncio.create_task(self.pod_informer.run(), name="pod informer"),
                       asyncio.create_task(self.service_informer.run(), name="service informer"),
                       asyncio.create_task(self.events.run(), name="events")]
        await self.pod_informer.synced.wait()
        await self._remove_orphans()

    async def _remove_orphans(self) -> None:
        known = {p["metadata"].get("uid") for p in self.pod_informer.list()}
        for uid in set(self.runtime.pods()) - known:
            if uid not in self.workers:
                log.info("removing pod %s: it no longer exists in the API", uid)
                await self.runtime.remove_pod(uid)
                self.ips.release(uid)

    @contextmanager
    def status_write(self) -> Iterator[None]:
        self._status_writes += 1
        self._no_status_writes.clear()
        try:
            yield
        finally:
            self._status_writes -= 1
            if not self._status_writes:
                self._no_status_writes.set()

    async def services_synced(self) -> None:
        await self.service_informer.synced.wait()

    def services(self) -> list[dict]:
        return self.service_informer.list()

    def find_pod(self, namespace: str, name: str) -> dict | None:
        return self.pod_informer.get(f"{namespace}/{name}")

    def _on_pod(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
        elif uid not in self._finished:
            self.workers[uid] = PodWorker(self, pod)

    def _on_pod_deleted(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        self._finished.discard(uid)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.mark_gone()
        elif uid in self.runtime.pods():
            asyncio.create_task(self._remove_orphans())

    def worker_done(self, worker: PodWorker) -> None:
        self.workers.pop(worker.uid, None)
        if not worker.gone:
            self._finished.add(worker.uid)

    async def shutdown(self, kill_pods: bool) -> None:
        """Stop watching; with kill_pods, also stop every container (a short grace, then SIGKILL)."""
        for t in self._tasks[:2]:
            t.cancel()
        workers = list(self.workers.values())
        for w in workers:
            w.detach()
        if kill_pods:
            await asyncio.gather(*(w.stop_containers(min(w._grace(), SHUTDOWN_GRACE)) for w in workers),
                                 return_exceptions=True)
            await asyncio.gather(*(self.runtime.stop(rec, SHUTDOWN_GRACE) for _, rec in self.runtime.running()),
                                 return_exceptions=True)
        await self.events.drain()
        for t in self._tasks[2:]:
            t.cancel()
        await asyncio.gather(*self._tasks, *(w.task for w in workers), return_exceptions=True)
        self.workers.clear()
