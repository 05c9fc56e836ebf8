"""The pod worker: one task per pod, reconciling the API's pod (desired) with the runtime's containers.

A worker wakes on a pod update, a container exit, a probe result flip or a back-off expiry; it
then starts what should run, restarts what exited (with the kubelet's exponential back-off), and
writes the pod's status (computed by kubelet.pod_status) through the pods/status subresource when
it changed. A pod starts as CRI orders it: its sandbox (which gives the pod its IP), then per
container the image (kubelet.image_manager), the config, create and start. Deletion is graceful:
SIGTERM, wait, SIGKILL, then the pod object is removed with gracePeriodSeconds=0 and a uid
precondition, and its sandbox removed. The worker reaches the node only through its Kubelet
host: the runtime interface, the image manager, the back-offs and the event recorder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pocketkube.agent import lifecycle
from pocketkube.agent.envvars import EnvError, container_env, expand_argv, references
from pocketkube.agent.kubelet.image_manager import go_duration
from pocketkube.agent.kubelet.pod_status import ContainerView, Waiting, pod_status, should_restart
from pocketkube.agent.kubelet.pull_secrets import credentials_for
from pocketkube.agent.kubelet.volumes import MountError, VolumeError, container_mounts
from pocketkube.agent.probes import ProbeTarget, ProbeWorker
from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    ContainerRecord,
    CreateError,
    ExecResult,
    RegistryAuth,
    RuntimeUnavailable,
    SandboxError,
    StartError,
    User,
)
from pocketkube.agent.security_context import container_user
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.events import NORMAL, WARNING
from pocketkube.client.interface import MERGE_PATCH
from pocketkube.util.backoff import Backoff

if TYPE_CHECKING:
    from pocketkube.agent.kubelet.kubelet import Kubelet

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
DEFAULT_GRACE = 30
CONFIG_RETRY = 10.0
MOUNT_RETRY = 5.0  # a missing ConfigMap or Secret wakes the pod sooner, through its watch
POST_START_TIMEOUT = 120.0  # upstream waits for postStart without a deadline; the pod's worker waits


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------

def crash_loop_backoff(clock: Callable[[], float] = time.time) -> Backoff:
    """The kubelet's crash-loop and image-pull back-off (flowcontrol.Backoff): 10 s doubling to
    5 min, forgotten once a container ran for twice the maximum."""
    return Backoff(initial=10.0, maximum=300.0, reset_after=600.0, clock=clock)


def sandbox_backoff(clock: Callable[[], float] = time.time) -> Backoff:
    """Retries of a pod whose sandbox could not be created: soon at first (a runtime that is
    restarting), then every 30 s at most."""
    return Backoff(initial=1.0, maximum=30.0, reset_after=300.0, clock=clock)


# ---------------------------------------------------------------------------------------------
# Pod workers
# ---------------------------------------------------------------------------------------------

class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
        self.k = kubelet
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.wake = asyncio.Event()
        self.gone = False  # the pod no longer exists in the API
        self.finished = False
        self.detached = False  # the agent is going away: the loop ends without touching containers
        self.terminated = False  # containers were stopped for deletion; nothing may start again
        self.waiting: dict[str, Waiting] = {}
        self.ready: dict[str, bool] = {}
        self.started: dict[str, bool] = {}
        self.probe_tasks: dict[str, list[asyncio.Task]] = {}
        self.exit_tasks: dict[str, asyncio.Task] = {}
        self.last_patch: dict | None = None
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.ip = ""
        self.sandbox_changed = False  # its sandbox died: kill the containers, make another
        self.env_objects: dict[str, dict[tuple[str, str], dict | None]] = {}  # per container, for probes
        self.evicted = ""  # the eviction message once the node evicted the pod
        self.sandbox_stopped = False  # a finished pod's sandbox was stopped (its IP freed)
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
        while not self.finished and not self.detached:
            self.wake.clear()
            try:
                delay = await self.sync()
            except asyncio.CancelledError:
                raise
            except RuntimeUnavailable as e:  # containerd restarting: no traceback, a retry
                log.warning("sync of pod %s: the runtime is unavailable, retrying: %s", self.key, e)
                delay = 1.0
            except Exception:
                log.exception("sync of pod %s failed", self.key)
                delay = 1.0
            if self.finished or self.detached:
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
            await self._stop_sandbox()
            return None
        if self.evicted:
            await self.stop_containers(self._termination_grace())
            await self.write_status()
            return None
        try:
            refresh, stale = await self.k.volumes.set_up(self.pod, self.ip)
        except VolumeError as e:
            self._event(WARNING, "FailedMount", e.event_message())
            await self.write_status()
            return MOUNT_RETRY
        for e in stale:  # mounted before, not updated now: the pod runs on with the files it has
            self._event(WARNING, "FailedMount", e.event_message())
        if stale:
            refresh = MOUNT_RETRY if refresh is None else min(refresh, MOUNT_RETRY)
        if self.sandbox_changed:
            await self._replace_sandbox()
        if not self.ip:
            if self.k.sandbox_backoff.failures_pending(self.uid):  # woken early (e.g. by its own status write)
                return self.k.sandbox_backoff.remaining(self.uid) + 0.01
            try:
                self.ip = await self.k.runtime.run_pod_sandbox(self.pod)
            except SandboxError as e:
                return await self._sandbox_failed(str(e))
            self.k.sandbox_backoff.reset(self.uid)
        await self.k.services_synced()
        delays = await self._reconcile_containers()
        await self.write_status()
        if refresh is not None:
            delays.append(refresh)
        return min(delays) if delays else None

    def evict(self, message: str) -> None:
        """The node evicts the pod (an emptyDir over its sizeLimit): containers killed, phase
        Failed with reason Evicted, as the kubelet's eviction manager does."""
        if self.evicted or self.terminated:
            return
        self.evicted = message
        self._event(WARNING, "Evicted", message)
        self.wake.set()

    async def _stop_sandbox(self) -> None:
        """A finished pod gives its sandbox up (the kubelet's killPod of a terminal pod): its
        network and IP are freed, while the pod, its statuses and logs stay until it is deleted,
        so a Job's hundreds of finished pods do not exhaust the node's pod CIDR."""
        if self.sandbox_stopped or not self.ip:
            return
        self.sandbox_stopped = True
        try:
            await self.k.runtime.stop_pod_sandbox(self.uid)
        except SandboxError as e:
            log.warning("stopping the sandbox of finished pod %s: %s", self.key, e)

    def sandbox_lost(self) -> None:
        self.sandbox_changed = True
        self.wake.set()

    async def _replace_sandbox(self) -> None:
        """The pod's sandbox died (its network namespace's keeper): its containers are killed and
        started again, per restart policy, in a new sandbox, as the kubelet does."""
        self.sandbox_changed = False
        self._event(NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        await self.stop_containers(self._termination_grace(), terminating=False)
        self.ip = ""

    async def _sandbox_failed(self, message: str) -> float:
        """FailedCreatePodSandBox: the pod stays Pending (its containers ContainerCreating) and
        the sandbox is tried again after a back-off."""
        self._event(WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {message}")
        delay = self.k.sandbox_backoff.next(self.uid)
        await self.write_status()
        return delay

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
                    self._event(WARNING, "BackOff",
                                f"Back-off restarting failed container {name} in pod {self.pod_ref()}",
                                self._field_path(name))
                self.waiting[name] = Waiting("CrashLoopBackOff", message)
                delays.append(self.k.backoff.remaining(key, finished) + 0.01)
                return
            self.k.backoff.next(key, finished)
        await self._start(c, rec.restart_count + 1 if rec else 0, delays)

    def _event(self, type_: str, reason: str, message: str, field_path: str = "") -> None:
        self.k.events.event(self.pod, type_, reason, message, res=PODS, field_path=field_path)

    def _field_path(self, name: str) -> str:
        kind = "initContainers" if any(c["name"] == name for c in self.spec.get("initContainers") or []) \
            else "containers"
        return f"spec.{kind}{{{name}}}"

    async def _start(self, c: dict, restart_count: int, delays: list[float]) -> None:
        name = c["name"]
        fp = self._field_path(name)
        image = await self.k.images.ensure(self.uid, c, lambda t, r, m: self._event(t, r, m, fp),
                                           self.waiting.get(name), self._pull_credentials)
        if image.info is None:
            if image.waiting is not None:
                self.waiting[name] = image.waiting
            if image.retry is not None:
                delays.append(image.retry)
            return
        try:
            env = await self._env(c)
        except EnvError as e:
            self.waiting[name] = Waiting("CreateContainerConfigError", str(e))
            self._event(WARNING, "Failed", f"Error: {e}", fp)
            delays.append(CONFIG_RETRY)
            return
        try:
            mounts = container_mounts(self.pod, c, self.k.volumes.paths(self.uid))
        except MountError as e:
            self.waiting[name] = Waiting("CreateContainerConfigError", str(e))
            self._event(WARNING, "Failed", f"Error: {e}", fp)
            delays.append(CONFIG_RETRY)
            return
        self.waiting.pop(name, None)
        cfg = ContainerConfig(pod_uid=self.uid, name=name, command=expand_argv(c.get("command") or [], env),
                              args=expand_argv(c.get("args") or [], env), env=env, restart_count=restart_count,
                              image=image.image, image_id=image.info.id, user=self._user(c), pod_ip=self.ip,
                              pod=self.pod, spec=c, mounts=mounts)
        try:
            record = await self.k.runtime.start(cfg)
        except CreateError as e:
            self.waiting[name] = Waiting("CreateContainerError", str(e))
            self._event(WARNING, "Failed", f"Error: {e}", fp)
            delays.append(CONFIG_RETRY)
            return
        except StartError as e:
            message = f"failed to start container {name!r}: {e}"
            self.k.runtime.record_failed_start(self.uid, name, restart_count, message)
            self._event(WARNING, "Failed", f"Error: {message}", fp)
            delays.append(0.0)
            return
        self._event(NORMAL, "Created", f"Created container: {name}", fp)
        self._event(NORMAL, "Started", f"Started container {name}", fp)
        await self._post_start(c, record)
        self._on_started(c, record, adopted=False)

    async def _post_start(self, c: dict, record: ContainerRecord) -> None:
        """Run the postStart hook; when it fails, kill the container (it restarts per policy)."""
        hook = (c.get("lifecycle") or {}).get("postStart")
        if not hook:
            return
        result, _ = await lifecycle.timed(hook, self._target(c), POST_START_TIMEOUT)
        if result.success:
            return
        name, fp = c["name"], self._field_path(c["name"])
        message = lifecycle.failure_message("PostStart", hook, name, self.pod_ref(), result.message)
        self._event(WARNING, "FailedPostStartHook", message, fp)
        self._event(NORMAL, "Killing", "FailedPostStartHook", fp)
        self.waiting[name] = Waiting("PostStartHookError", message)
        await self.k.runtime.stop(record, self._termination_grace())

    async def _kill(self, c: dict, record: ContainerRecord, grace: float) -> None:
        """Stop a container as the kubelet does: its preStop hook first, within the grace period,
        then SIGTERM with what is left of it (never less than lifecycle.MINIMUM_GRACE)."""
        hook = (c.get("lifecycle") or {}).get("preStop")
        if hook and grace > 0 and record.running:
            result, took = await lifecycle.timed(hook, self._target(c), grace)
            if not result.success:
                self._event(WARNING, "FailedPreStopHook", lifecycle.failure_message(
                    "PreStop", hook, c["name"], self.pod_ref(), result.message), self._field_path(c["name"]))
            grace = lifecycle.remaining_grace(grace, took)
        await self.k.runtime.stop(record, grace)

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

    def _target(self, c: dict) -> ProbeTarget:
        """Where probes and hooks of container `c` go: the pod IP, its ports, exec through the runtime."""
        name = c["name"]
        env, user = self._probe_env(c), self._user(c)

        async def exec_in_container(argv: list[str], timeout: float) -> ExecResult:
            return await self.k.runtime.exec_sync(self.uid, name, argv, env=env, user=user, timeout=timeout)
        return ProbeTarget(self.ip, c, exec=exec_in_container)

    def _run_probes(self, c: dict, record: ContainerRecord, kinds: list[str], adopted: bool = False) -> None:
        name = c["name"]
        target = self._target(c)
        for kind in kinds:
            probe = c.get(f"{kind}Probe")
            if not probe:
                continue
            worker = ProbeWorker(kind, probe, target, lambda k, ok: self._on_probe(c, record, k, ok),
                                 lambda k, msg: self._on_probe_failure(name, msg))
            if adopted and kind == "readiness":
                worker.ok = True
            self.probe_tasks.setdefault(name, []).append(asyncio.create_task(worker.run()))

    def _user(self, c: dict) -> User | None:
        return container_user(self.pod, c, can_switch_user=self.k.runtime.can_switch_user())

    def _probe_env(self, c: dict) -> dict[str, str]:
        objects = self.env_objects.get(c["name"], {})
        try:
            return container_env(self.pod, c, self.k.services(), self.ip, self.k.node_ip, self.k.allocatable,
                                 objects=lambda kind, name: objects.get((kind, name)))
        except EnvError:
            return {}

    async def _pull_credentials(self, image: str) -> list[RegistryAuth]:
        """The credentials of the pod's image pull secrets (or its ServiceAccount's) for `image`;
        secrets that cannot be read are named in upstream's FailedToRetrieveImagePullSecret Event."""
        ring, missing = await self.k.pull_keyring(self.pod)
        if missing:
            self._event(WARNING, "FailedToRetrieveImagePullSecret",
                        f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull "
                        "the image may not succeed.")
        return credentials_for(image, ring)

    async def _env(self, c: dict) -> dict[str, str]:
        """The container's environment, with the ConfigMaps and Secrets it names read fresh from
        the API (a missing one is an EnvError: CreateContainerConfigError, retried)."""
        objects = await self.k.env_objects(self.pod["metadata"].get("namespace", ""), references(c))
        self.env_objects[c["name"]] = objects
        warnings: list[tuple[str, str]] = []
        env = container_env(self.pod, c, self.k.services(), self.ip, self.k.node_ip, self.k.allocatable,
                            objects=lambda kind, name: objects.get((kind, name)), warnings=warnings)
        for reason, message in warnings:
            self._event(WARNING, reason, message)
        return env

    def _on_probe_failure(self, name: str, message: str) -> None:
        self._event(WARNING, "Unhealthy", message, self._field_path(name))

    def _on_probe(self, c: dict, record: ContainerRecord, kind: str, ok: bool) -> None:
        name = c["name"]
        if kind == "readiness":
            self.ready[name] = ok
        elif kind == "startup" and ok:
            self.started[name] = True
            self._stop_probes(name)
            self._run_probes(c, record, ["liveness", "readiness"])
        elif not ok:
            self._event(NORMAL, "Killing", f"Container {name} failed {kind} probe, will be restarted",
                        self._field_path(name))
            asyncio.create_task(self._kill(c, record, self._termination_grace()))
        self.wake.set()

    def detach(self) -> None:
        """Stop watching this pod's containers without touching them (the agent is going away)."""
        # The flag too: Python 3.11's wait_for can swallow a cancel that races with a wake-up.
        self.detached = True
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

    async def stop_containers(self, grace: float, terminating: bool = True) -> None:
        """Kill every running container (preStop first); `terminating`: nothing starts again."""
        self.terminated = self.terminated or terminating
        for name in list(self.probe_tasks):
            self._stop_probes(name)
        running = [h.current for h in self._histories() if h.current.running]
        for rec in running:
            self._event(NORMAL, "Killing", f"Stopping container {rec.name}", self._field_path(rec.name))
        await asyncio.gather(*(self._kill(self._container_spec(rec.name), rec, grace) for rec in running))
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
        await self.k.volumes.tear_down(self.uid)
        self.k.backoff.forget_prefix(self.uid)
        self.k.images.forget(self.uid)
        self.k.sandbox_backoff.reset(self.uid)
        self.finished = True

    # ---- status ----
    def views(self) -> dict[str, ContainerView]:
        names = [c["name"] for c in (self.spec.get("initContainers") or []) + (self.spec.get("containers") or [])]
        return {name: ContainerView(history=self.k.runtime.history(self.uid, name), waiting=self.waiting.get(name),
                                    ready=bool(self.ready.get(name)), started=bool(self.started.get(name)))
                for name in names}

    def build_status(self, terminal: bool = False) -> dict:
        status = pod_status(self.pod, self.views(), pod_ip=self.ip, host_ip=self.k.node_ip,
                            start_time=self.start_time, terminated=self.terminated, terminal=terminal,
                            now=now_rfc3339())
        if self.evicted:
            status.update(phase="Failed", reason="Evicted", message=self.evicted)
        return status

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
