"""A pod's status computed from what the kubelet knows: pure functions, no I/O.

The pod worker gathers, per container, the runtime's record of its runs and its own view (why
it waits, whether its probes passed) into ContainerView values; `pod_status` turns those into
the status the API stores: phase, conditions, container statuses, QoS class, IPs. This is the
part of the kubelet that upstream keeps in generateAPIPodStatus and pkg/kubelet/status, kept
apart here so that it is tested without processes, clocks or an API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pocketkube.agent.runtime.interface import ContainerHistory, ContainerRecord


def container_id(rec: ContainerRecord) -> str:
    """`<scheme>://<id>` as the runtime names its containers (pocketkube://, containerd://)."""
    return f"{rec.scheme or 'pocketkube'}://{rec.id}"


@dataclass(frozen=True)
class Waiting:
    """Why a container is not running now (CrashLoopBackOff, ErrImagePull, ...)."""

    reason: str
    message: str = ""


@dataclass(frozen=True)
class ContainerView:
    """One container as the pod worker sees it: the runtime's history and the worker's verdicts."""

    history: ContainerHistory | None = None
    waiting: Waiting | None = None
    ready: bool = False
    started: bool = False


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


def terminated_state(rec: ContainerRecord) -> dict:
    """The `terminated` state of a finished run."""
    t = {"exitCode": rec.exit_code, "reason": rec.reason or ("Completed" if rec.exit_code == 0 else "Error"),
         "startedAt": rec.started_at, "finishedAt": rec.finished_at}
    if rec.message:
        t["message"] = rec.message
    if rec.pid:
        t["containerID"] = container_id(rec)
    return t


def container_status(c: dict, view: ContainerView, *, terminated: bool, init_running: bool = False) -> dict:
    """One containerStatuses entry. `terminated`: the pod's containers were stopped for good
    (a waiting reason no longer applies); `init_running`: init containers are not done yet."""
    name = c["name"]
    h = view.history
    rec = h.current if h else None
    status: dict = {"name": name, "image": c.get("image", ""), "imageID": "", "ready": False,
                    "started": False, "restartCount": rec.restart_count if rec else 0,
                    "state": {}, "lastState": {}}
    if rec is not None:
        status["image"] = rec.image or status["image"]
        status["imageID"] = rec.image_id
        if rec.pid:
            status["containerID"] = container_id(rec)
    if h is not None and h.last is not None:
        status["lastState"] = {"terminated": terminated_state(h.last)}
    if rec is not None and rec.running:
        status["state"] = {"running": {"startedAt": rec.started_at}}
        status["ready"] = view.ready and view.started
        status["started"] = view.started
    elif view.waiting is not None and not terminated:
        waiting = view.waiting
        status["state"] = {"waiting": {"reason": waiting.reason,
                                       **({"message": waiting.message} if waiting.message else {})}}
        if rec is not None:
            status["lastState"] = {"terminated": terminated_state(rec)}
    elif rec is not None:
        status["state"] = {"terminated": terminated_state(rec)}
    else:
        status["state"] = {"waiting": {"reason": "PodInitializing" if init_running else "ContainerCreating"}}
    return status


def _names(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


def pod_conditions(*, phase: str, incomplete: list[str], unready: list[str], existing: list[dict],
                   has_ip: bool, terminated: bool, now: str) -> list[dict]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady (and PodScheduled, kept as
    the scheduler wrote it). lastTransitionTime changes only when a condition's status does."""
    before = {c.get("type"): c for c in existing}
    completed = phase in ("Succeeded", "Failed")

    def cond(type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
        old = before.get(type_) or {}
        status = "True" if ok else "False"
        c = {"type": type_, "status": status, "lastProbeTime": None,
             "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status else now}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    out = [cond("PodReadyToStartContainers", has_ip and not (completed and terminated)),
           cond("Initialized", not incomplete, "" if not incomplete else "ContainersNotInitialized",
                f"containers with incomplete status: {_names(incomplete)}" if incomplete else "")]
    ready = not unready and not completed
    ready_msg = "" if ready or completed else f"containers with unready status: {_names(unready)}"
    out.append(cond("Ready", ready, "" if ready else ready_reason, ready_msg))
    out.append(cond("ContainersReady", ready, "" if ready else ready_reason, ready_msg))
    if "PodScheduled" in before:
        out.append(before["PodScheduled"])
    return out


def pod_status(pod: dict, views: Mapping[str, ContainerView], *, pod_ip: str, host_ip: str, start_time: str,
               terminated: bool, terminal: bool, now: str) -> dict:
    """The pod's whole status. `terminal`: the pod is being deleted and its containers are stopped,
    so the phase is final; `now` stamps conditions that change."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    inits = spec.get("initContainers") or []

    def view(c: dict) -> ContainerView:
        return views.get(c["name"]) or ContainerView()

    init_statuses = [container_status(c, view(c), terminated=terminated) for c in inits]
    incomplete = [s["name"] for s in init_statuses if (s["state"].get("terminated") or {}).get("exitCode") != 0]
    init_failed = policy == "Never" and any(
        (s["state"].get("terminated") or {}).get("exitCode") not in (None, 0) for s in init_statuses)
    statuses = sorted((container_status(c, view(c), terminated=terminated, init_running=bool(incomplete))
                       for c in spec.get("containers") or []), key=lambda s: s["name"])
    phase = pod_phase(policy, statuses, bool(incomplete), init_failed, terminal)
    unready = [s["name"] for s in statuses if not s["ready"]]
    status: dict = {
        "phase": phase, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": start_time, "qosClass": qos_class(pod), "containerStatuses": statuses,
    }
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    if inits:
        status["initContainerStatuses"] = init_statuses
    status["conditions"] = pod_conditions(
        phase=phase, incomplete=incomplete, unready=unready,
        existing=(pod.get("status") or {}).get("conditions") or [], has_ip=bool(pod_ip),
        terminated=terminated, now=now)
    return status
