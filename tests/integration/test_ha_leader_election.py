"""Two `pocketkube controller-manager` processes against one API server: exactly one leads (holds
kube-system/kube-controller-manager and acts), a graceful stop hands over within ~2 s (the lease
is released), a kill -9 within the 15 s lease duration (kube's defaults throughout)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiclient import PODS, Api, wait_until

from pocketkube.apiserver.pki import PKI
from pocketkube.testing.procs import ServerProcess

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
SCHED_LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
EVENTS = "/api/v1/namespaces/kube-system/events"
REPLICASETS = "/apis/apps/v1/namespaces/default/replicasets"


class ControllerManager:
    def __init__(self, server: ServerProcess, root: Path, name: str) -> None:
        self.log_path = root / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pocketkube", "controller-manager", "--server", server.url,
             "--token-file", str(root / "cm-token"), "--ca-file", str(server.ca_file)],
            stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)

    def leads(self, identity: str) -> bool:
        return bool(identity) and f"{identity}: became leader" in self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def setup() -> Iterator[tuple[ServerProcess, Api, list[ControllerManager]]]:
    root = Path(tempfile.mkdtemp(prefix="pk-ha-le-"))
    data = root / "data"
    data.mkdir()
    server = ServerProcess(data, extra_args=["--no-control-plane"])
    cms: list[ControllerManager] = []
    api: Api | None = None
    try:
        server.start()
        (root / "cm-token").write_text(PKI(data).controlplane_token())  # made by the server's first start
        api = Api(server)
        cms += [ControllerManager(server, root, "cm-a"), ControllerManager(server, root, "cm-b")]
        yield server, api, cms
    finally:
        for cm in cms:
            cm.stop()
        if api is not None:
            api.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _holder(api: Api, path: str = LEASE) -> str:
    r = api.get(path)
    return r.json()["spec"].get("holderIdentity", "") if r.status == 200 else ""


def _leader(api: Api, cms: list[ControllerManager]) -> ControllerManager | None:
    holder = _holder(api)
    return next((cm for cm in cms if cm.proc.poll() is None and cm.leads(holder)), None)


def _pods(api: Api) -> int:
    return len(api.get(PODS).json()["items"])


def _replicaset(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


@pytest.mark.timeout(90)
def test_one_leader_acts_and_a_graceful_stop_hands_over_at_once(setup):
    _, api, cms = setup
    leader = wait_until(lambda: _leader(api, cms), timeout=20)
    assert leader is not None, "no controller manager became leader"
    follower = next(cm for cm in cms if cm is not leader)
    assert wait_until(lambda: _holder(api, SCHED_LEASE), timeout=10), "no scheduler leader"
    assert "became leader of kube-system/kube-controller-manager" not in follower.log_path.read_text()
    assert api.post(REPLICASETS, _replicaset("web", 3)).status == 201
    assert wait_until(lambda: _pods(api) == 3, timeout=15), f"pods: {_pods(api)}"
    time.sleep(1.0)  # a second controller acting would create more than 3 by now (the follower is live)
    assert _pods(api) == 3

    old = _holder(api)
    lease = api.get(LEASE).json()["spec"]
    assert lease["leaseDurationSeconds"] == 15 and lease.get("leaseTransitions", 0) == 0
    t0 = time.monotonic()
    leader.stop()  # SIGTERM: the lease is released
    assert wait_until(lambda: follower.leads(_holder(api)), timeout=10)
    took = time.monotonic() - t0
    assert took < 5.0, f"takeover after a graceful stop took {took:.1f} s"
    assert _holder(api) != old and api.get(LEASE).json()["spec"]["leaseTransitions"] == 1
    new = _holder(api)
    messages = wait_until(lambda: {e["message"] for e in api.get(EVENTS).json()["items"]
                                   if e["reason"] == "LeaderElection"} >= {f"{old} became leader", f"{new} became leader"},
                          timeout=5)
    assert messages, "no LeaderElection events on the Lease"
    # The new leader acts: deleting a pod gets it replaced.
    name = api.get(PODS).json()["items"][0]["metadata"]["name"]
    assert api.request("DELETE", f"{PODS}/{name}?gracePeriodSeconds=0").status == 200
    assert wait_until(lambda: _pods(api) == 3 and name not in {
        p["metadata"]["name"] for p in api.get(PODS).json()["items"]}, timeout=15)


@pytest.mark.timeout(90)
def test_kill_9_of_the_leader_hands_over_within_the_lease_duration(setup):
    _, api, cms = setup
    leader = wait_until(lambda: _leader(api, cms), timeout=20)
    assert leader is not None
    follower = next(cm for cm in cms if cm is not leader)
    t0 = time.monotonic()
    leader.stop(signal.SIGKILL)
    assert wait_until(lambda: follower.leads(_holder(api)), timeout=25)
    took = time.monotonic() - t0
    assert took < 19.0, f"takeover after kill -9 took {took:.1f} s"
    assert api.post(REPLICASETS, _replicaset("after", 2)).status == 201
    assert wait_until(lambda: _pods(api) == 2, timeout=15)


@pytest.mark.timeout(90)
def test_a_leader_whose_lease_is_taken_stops_acting_at_once(setup):
    _, api, cms = setup
    leader = wait_until(lambda: _leader(api, cms), timeout=20)
    assert leader is not None
    # Someone else holds the lease now (as after a partition that outlasted the lease): the
    # leader sees it at its next renewal and stops; nobody acts until the lease runs out.
    lease = api.get(LEASE).json()
    lease["spec"]["holderIdentity"] = "intruder_00000000-0000-0000-0000-000000000000"
    assert api.request("PUT", LEASE, lease).status == 200
    assert wait_until(lambda: "leader election lost for kube-system/kube-controller-manager"
                      in leader.log_path.read_text(), timeout=10)
    assert api.post(REPLICASETS, _replicaset("paused", 1)).status == 201
    time.sleep(3.0)  # nobody acts while the intruder's lease is valid
    assert _pods(api) == 0
    # The intruder never renews: after 15 s one of ours takes the lease and the pod is made.
    assert wait_until(lambda: _pods(api) == 1, timeout=25)
    assert _leader(api, cms) is not None
