"""The kubelet's pod status as pure functions: phase, QoS class, container statuses, conditions."""

from __future__ import annotations

import pytest

from pocketkube.agent.kubelet.pod_status import (
    ContainerView,
    Waiting,
    container_status,
    pod_conditions,
    pod_phase,
    pod_status,
    qos_class,
    should_restart,
    terminated_state,
)
from pocketkube.agent.runtime.interface import ContainerHistory, ContainerRecord

T0, T1, NOW = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:01:00Z"


def _record(*, exit_code: int | None = None, restart: int = 0, pid: int = 42, reason: str | None = None,
            message: str | None = None) -> ContainerRecord:
    return ContainerRecord(id=f"id{restart}", name="c", pid=pid, start_ticks=1, started_at=T0,
                           restart_count=restart, log_path="", image="docker.io/library/busybox:latest",
                           image_id="sha256:abc", exit_code=exit_code,
                           finished_at=T1 if exit_code is not None else None, reason=reason, message=message)


def _status(state: dict, last: dict | None = None) -> dict:
    return {"state": state, "lastState": last or {}}


RUN = {"running": {}}
OK = {"terminated": {"exitCode": 0}}
FAIL = {"terminated": {"exitCode": 1}}
WAIT = {"waiting": {"reason": "ContainerCreating"}}


@pytest.mark.parametrize("policy,states,want", [
    ("Always", [RUN], "Running"),
    ("Always", [WAIT], "Pending"),
    ("Always", [RUN, WAIT], "Pending"),
    ("Always", [OK], "Running"),
    ("OnFailure", [OK, OK], "Succeeded"),
    ("OnFailure", [FAIL], "Running"),
    ("Never", [FAIL, OK], "Failed"),
    ("Never", [OK], "Succeeded"),
])
def test_pod_phase(policy, states, want):
    assert pod_phase(policy, [_status(s) for s in states], False, False) == want


def test_pod_phase_crash_looping_container_counts_as_stopped_and_terminal_pods_are_final():
    looping = _status({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}})
    assert pod_phase("Always", [looping], False, False) == "Running"
    assert pod_phase("Always", [_status(OK)], False, False, terminal=True) == "Succeeded"
    assert pod_phase("Always", [_status(FAIL)], False, False, terminal=True) == "Failed"
    assert pod_phase("Always", [_status(RUN)], True, False) == "Pending"
    assert pod_phase("Never", [_status(WAIT)], True, True) == "Failed"


def test_qos_class():
    def pod(*resources: dict) -> dict:
        return {"spec": {"containers": [{"name": str(i), "resources": r} for i, r in enumerate(resources)]}}
    assert qos_class(pod({})) == "BestEffort"
    assert qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"},
                                  "requests": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert qos_class(pod({"requests": {"cpu": "100m"}})) == "Burstable"
    assert qos_class(pod({"limits": {"cpu": "1", "memory": "1Gi"}}, {})) == "Burstable"


@pytest.mark.parametrize("policy,code,want", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True),
    ("Never", 1, False)])
def test_should_restart(policy, code, want):
    assert should_restart(policy, code) is want


def test_terminated_state_defaults_the_reason_and_names_the_container():
    assert terminated_state(_record(exit_code=0)) == {
        "exitCode": 0, "reason": "Completed", "startedAt": T0, "finishedAt": T1, "containerID": "pocketkube://id0"}
    failed = terminated_state(_record(exit_code=128, pid=0, reason="StartError", message="no such file"))
    assert failed == {"exitCode": 128, "reason": "StartError", "startedAt": T0, "finishedAt": T1,
                      "message": "no such file"}


def test_container_status_running_is_ready_only_when_started_and_ready():
    view = ContainerView(ContainerHistory(_record()), ready=True, started=False)
    status = container_status({"name": "c", "image": "busybox"}, view, terminated=False)
    assert status["state"] == {"running": {"startedAt": T0}}
    assert (status["ready"], status["started"]) == (False, False)
    assert status["image"] == "docker.io/library/busybox:latest" and status["containerID"] == "pocketkube://id0"
    ready = ContainerView(ContainerHistory(_record()), ready=True, started=True)
    assert container_status({"name": "c"}, ready, terminated=False)["ready"] is True


def test_container_status_waiting_shows_the_last_run_and_yields_to_termination():
    view = ContainerView(ContainerHistory(_record(exit_code=1, restart=3)),
                         waiting=Waiting("CrashLoopBackOff", "back-off 40s"))
    status = container_status({"name": "c"}, view, terminated=False)
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
    assert status["lastState"]["terminated"]["exitCode"] == 1 and status["restartCount"] == 3
    stopped = container_status({"name": "c"}, view, terminated=True)
    assert stopped["state"]["terminated"]["exitCode"] == 1


def test_container_status_before_any_run():
    assert container_status({"name": "c", "image": "x"}, ContainerView(), terminated=False)["state"] == {
        "waiting": {"reason": "ContainerCreating"}}
    assert container_status({"name": "c"}, ContainerView(), terminated=False, init_running=True)["state"] == {
        "waiting": {"reason": "PodInitializing"}}


def test_conditions_keep_transition_times_while_the_status_holds():
    existing = [{"type": "Ready", "status": "False", "lastTransitionTime": T0},
                {"type": "Initialized", "status": "True", "lastTransitionTime": T0},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": T0}]
    conds = {c["type"]: c for c in pod_conditions(phase="Running", incomplete=[], unready=[], existing=existing,
                                                  has_ip=True, terminated=False, now=NOW)}
    assert conds["Initialized"]["lastTransitionTime"] == T0
    assert conds["Ready"] == {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": NOW}
    assert conds["PodScheduled"] == existing[2]


def test_conditions_name_what_is_not_ready_and_completed_pods():
    conds = {c["type"]: c for c in pod_conditions(phase="Pending", incomplete=["init"], unready=["a", "b"],
                                                  existing=[], has_ip=False, terminated=False, now=NOW)}
    assert conds["PodReadyToStartContainers"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [init]"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["ContainersReady"]["message"] == "containers with unready status: [a b]"
    done = {c["type"]: c for c in pod_conditions(phase="Succeeded", incomplete=[], unready=["a"], existing=[],
                                                 has_ip=True, terminated=True, now=NOW)}
    assert done["Ready"]["reason"] == "PodCompleted" and "message" not in done["Ready"]
    assert done["PodReadyToStartContainers"]["status"] == "False"


def test_pod_status_whole():
    pod = {"metadata": {"name": "p", "namespace": "default"},
           "spec": {"restartPolicy": "Never", "initContainers": [{"name": "init", "image": "x"}],
                    "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "x"}]}}
    views = {"init": ContainerView(ContainerHistory(_record(exit_code=0))),
             "a": ContainerView(ContainerHistory(_record()), ready=True, started=True)}
    status = pod_status(pod, views, pod_ip="127.244.1.5", host_ip="127.0.1.1", start_time=T0,
                        terminated=False, terminal=False, now=NOW)
    assert status["phase"] == "Pending"  # b has not started yet
    assert [s["name"] for s in status["containerStatuses"]] == ["a", "b"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert status["podIPs"] == [{"ip": "127.244.1.5"}] and status["hostIPs"] == [{"ip": "127.0.1.1"}]
    assert status["qosClass"] == "BestEffort" and status["startTime"] == T0
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "False", "ContainersReady": "False"}


def test_pod_status_failed_init_container_fails_a_never_restarting_pod():
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "initContainers": [{"name": "init"}],
                                               "containers": [{"name": "c"}]}}
    views = {"init": ContainerView(ContainerHistory(_record(exit_code=2)))}
    status = pod_status(pod, views, pod_ip="", host_ip="127.0.1.1", start_time=T0, terminated=False,
                        terminal=False, now=NOW)
    assert status["phase"] == "Failed" and "podIP" not in status
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
