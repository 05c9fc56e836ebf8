"""The control plane against a real API server: Deployments → ReplicaSets → pods → nodes.

The ControllerManager and Scheduler run in-process, unless the server process already runs
them (`pocketkube server` starts its control plane): two sets would race, so a probe decides
once per module. The server is started with short node-monitor grace and eviction periods,
for either case.

There is no kubelet here. Two simulated nodes are registered through the API, and a
simulated kubelet (in this file) renews their Leases, marks their pods Running and Ready, and
finishes the graceful deletion of their pods, as a real kubelet would. "Stopping" a simulated
node stops both, like pulling its power cord.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest
from control_plane_helpers import server_in_temp_dir, until

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.informer import Informer
from pocketkube.client.rest import Client
from pocketkube.controllers.manager import ControllerManager, ControllerManagerSettings
from pocketkube.controllers.nodelifecycle import NodeLifecycleSettings
from pocketkube.scheduler.scheduler import Scheduler

PODS = BY_PLURAL[("", "pods")]
SERVICES = BY_PLURAL[("", "services")]
NODES = BY_PLURAL[("", "nodes")]
EVENTS = BY_PLURAL[("", "events")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
REPLICASETS = BY_PLURAL[("apps", "replicasets")]
NS = "default"
SIM_NODES = ("simulated-node-1", "simulated-node-2")


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SimulatedKubelets:
    """Heartbeats and pod status for the simulated nodes; nothing runs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.alive = set(SIM_NODES)
        self.pods = Informer(client, PODS)
        self.pods.add_handlers(self._on_pod, lambda old, new: self._on_pod(new))
        self._tasks: list[asyncio.Task] = []

    async def register(self) -> None:
        for name in SIM_NODES:
            node = await self._create_or_get(NODES, "", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "pocketkube.io/simulated": "true"}}})
            await self.client.update_status(NODES, {**node, "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "simulated kubelet is posting ready status",
                                "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}],
                "capacity": {"pods": "110"}, "allocatable": {"pods": "110"}}})
            await self._create_or_get(LEASES, "kube-node-lease", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_time()}})
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.pods.run()), loop.create_task(self._renew_leases())]
        await self.pods.synced.wait()

    async def _create_or_get(self, res, namespace: str, obj: dict) -> dict:
        try:
            return await self.client.create(res, obj, namespace)
        except errors.AlreadyExists:  # registered by an earlier test against the same server
            return await self.client.get(res, namespace, obj["metadata"]["name"])

    async def _renew_leases(self) -> None:
        while True:
            for name in list(self.alive):
                try:
                    await self.client.patch(LEASES, "kube-node-lease", name, {"spec": {"renewTime": micro_time()}})
                except errors.ApiError:
                    pass
            await asyncio.sleep(0.3)  # on purpose: the fake kubelets' heartbeat period

    def _on_pod(self, pod: dict) -> None:
        if deep_get(pod, "spec", "nodeName") in self.alive:
            self._tasks.append(asyncio.get_running_loop().create_task(self._kubelet(pod)))

    async def _kubelet(self, pod: dict) -> None:
        m = pod["metadata"]
        try:
            if m.get("deletionTimestamp"):
                await self.client.delete(PODS, m["namespace"], m["name"], grace_period=0)
            elif deep_get(pod, "status", "phase") != "Running":
                ts = now_rfc3339()
                await self.client.update_status(PODS, {**pod, "status": {
                    "phase": "Running", "podIP": "127.244.0.10", "startTime": ts,
                    "conditions": [{"type": t, "status": "True", "lastTransitionTime": ts}
                                   for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}})
        except (errors.NotFound, errors.Conflict):
            pass  # gone, or changed: the next event brings it back

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


GRACE_PERIOD, EVICTION_TIMEOUT = 1.5, 1.0


@pytest.fixture(scope="module")
def server():
    yield from server_in_temp_dir("pk-ctl-", ["--node-monitor-grace-period", str(GRACE_PERIOD),
                                              "--pod-eviction-timeout", str(EVICTION_TIMEOUT)])


_server_runs_them: dict[int, bool] = {}


async def server_runs_controllers(client: Client, port: int) -> bool:
    """Whether the server's own control plane makes ReplicaSets for Deployments (probed once)."""
    if port not in _server_runs_them:
        await client.create(DEPLOYMENTS, deployment("probe", 0, "nginx:1"))
        try:
            await until(lambda: _first(client.list(REPLICASETS, NS, label_selector="app=probe")),
                        "a ReplicaSet made by the server", timeout=1.5)
            _server_runs_them[port] = True
        except AssertionError:
            _server_runs_them[port] = False
    return _server_runs_them[port]


async def _first(listing: Awaitable[tuple[list[dict], str]]) -> list[dict]:
    return (await listing)[0]


@pytest.fixture
async def cluster(server):
    client = Client(server.url, server.token(), str(server.ca_file))
    kubelets = SimulatedKubelets(client)
    await kubelets.register()
    in_process: list[ControllerManager | Scheduler] = []
    if not await server_runs_controllers(client, server.port):
        manager = ControllerManager(client, ControllerManagerSettings(node_lifecycle=NodeLifecycleSettings(
            grace_period=GRACE_PERIOD, eviction_timeout=EVICTION_TIMEOUT, monitor_period=0.25)))
        in_process = [manager, Scheduler(client)]
        for component in in_process:
            await component.start()
        await manager.wait_synced(10)
    yield client, kubelets
    for component in reversed(in_process):
        await component.stop()
    await kubelets.stop()
    await client.close()


# Without these the API server adds DefaultTolerationSeconds' 300 s tolerations.
QUICK_EVICTION = [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}
                  for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]


def deployment(name: str, replicas: int, image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image}],
                                           "tolerations": QUICK_EVICTION}}}}


async def active_pods(client: Client, app: str) -> list[dict]:
    pods, _ = await client.list(PODS, NS, label_selector=f"app={app}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def rollout_done(client: Client, name: str, replicas: int) -> dict | None:
    d = await client.get(DEPLOYMENTS, NS, name)
    s = d.get("status") or {}
    done = (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas", 0) == replicas
            and s.get("replicas", 0) == replicas and s.get("availableReplicas", 0) == replicas)
    return d if done else None


async def events_for(client: Client, reason: str) -> list[dict]:
    events, _ = await client.list(EVENTS, NS)
    return [e for e in events if e.get("reason") == reason]


async def test_deployment_lifecycle_scheduling_gc_and_eviction(cluster):
    client, kubelets = cluster
    await client.create(DEPLOYMENTS, deployment("web", 3, "nginx:1"))

    async def three_bound_pods():
        pods = await active_pods(client, "web")
        return pods if len(pods) == 3 and all(deep_get(p, "spec", "nodeName") for p in pods) else None
    pods = await until(three_bound_pods, "3 bound pods")
    assert {p["spec"]["nodeName"] for p in pods} == set(SIM_NODES)  # spread over both nodes
    d = await until(lambda: rollout_done(client, "web", 3), "rollout of 3")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conditions = {c["type"]: c for c in d["status"]["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    (rs1,) = (await client.list(REPLICASETS, NS, label_selector="app=web"))[0]
    assert conditions["Progressing"]["message"] == f'ReplicaSet "{rs1["metadata"]["name"]}" has successfully progressed.'
    pod_hash = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"web-{pod_hash}"
    assert all(p["metadata"]["name"].startswith(f"web-{pod_hash}-") for p in pods)
    assert all(p["metadata"]["labels"]["pod-template-hash"] == pod_hash for p in pods)

    scheduled = await until(lambda: events_for(client, "Scheduled"), "Scheduled events")
    assert scheduled[0]["source"]["component"] == "default-scheduler"
    assert scheduled[0]["message"].startswith("Successfully assigned default/web-")
    created = await until(lambda: events_for(client, "SuccessfulCreate"), "SuccessfulCreate events")
    assert created[0]["message"].startswith(f"Created pod: web-{pod_hash}-")
    scaling = await until(lambda: events_for(client, "ScalingReplicaSet"), "ScalingReplicaSet event")
    assert scaling[0]["message"] == f"Scaled up replica set web-{pod_hash} from 0 to 3"

    # Scale up and down through spec.replicas.
    await client.patch(DEPLOYMENTS, NS, "web", {"spec": {"replicas": 5}})
    await until(lambda: rollout_done(client, "web", 5), "rollout of 5")
    await client.patch(DEPLOYMENTS, NS, "web", {"spec": {"replicas": 1}})
    await until(lambda: rollout_done(client, "web", 1), "scale down to 1")
    await until(lambda: _count(active_pods(client, "web"), 1), "1 pod left")

    # A rolling update: a new ReplicaSet at revision 2, the old one at 0 replicas.
    await client.patch(DEPLOYMENTS, NS, "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:2"}]}}}}, content_type="application/strategic-merge-patch+json")
    d = await until(lambda: rollout_done(client, "web", 1), "rolling update")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    rss = {r["metadata"]["name"]: r for r in (await client.list(REPLICASETS, NS, label_selector="app=web"))[0]}
    assert len(rss) == 2
    old = rss.pop(rs1["metadata"]["name"])
    (new,) = rss.values()
    assert old["spec"]["replicas"] == 0 and old["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert new["spec"]["replicas"] == 1 and new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    await until(lambda: _count(active_pods(client, "web"), 1), "only the new pod")
    (pod,) = await active_pods(client, "web")
    assert pod["spec"]["containers"][0]["image"] == "nginx:2"

    # A node goes silent: it is marked Unknown and tainted, its pods are evicted and replaced.
    await client.patch(DEPLOYMENTS, NS, "web", {"spec": {"replicas": 4}})
    await until(lambda: rollout_done(client, "web", 4), "rollout of 4")
    pods = await active_pods(client, "web")
    lost = "simulated-node-1"
    assert any(p["spec"]["nodeName"] == lost for p in pods)
    kubelets.alive.discard(lost)

    async def node_unreachable():
        node = await client.get(NODES, "", lost)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
        return ready["status"] == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in taints and node
    node = await until(node_unreachable, "node marked unreachable")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")

    async def all_on_survivor():
        pods = await active_pods(client, "web")
        return len(pods) == 4 and all(deep_get(p, "spec", "nodeName") == "simulated-node-2" for p in pods)
    await until(all_on_survivor, "pods evicted and replaced on the other node")
    assert await events_for(client, "TaintManagerEviction")

    # The node comes back: the taints go.
    kubelets.alive.add(lost)

    async def untainted():
        node = await client.get(NODES, "", lost)
        return not (node.get("spec") or {}).get("taints")
    await until(untainted, "taints removed")

    # Deleting the Deployment: the garbage collector removes its ReplicaSets, then their pods.
    await client.delete(DEPLOYMENTS, NS, "web")

    async def all_gone():
        rss, _ = await client.list(REPLICASETS, NS, label_selector="app=web")
        pods, _ = await client.list(PODS, NS, label_selector="app=web")
        return not rss and not pods
    await until(all_gone, "ReplicaSets and pods garbage collected")


async def _count(pods: Awaitable[list[dict]], n: int) -> bool:
    return len(await pods) == n


async def test_hundred_replicas_are_all_bound_and_spread(cluster):
    client, _ = cluster
    await client.create(DEPLOYMENTS, deployment("many", 100, "nginx:1"))

    async def all_bound():
        pods, _ = await client.list(PODS, NS, label_selector="app=many")
        return len(pods) == 100 and all(deep_get(p, "spec", "nodeName") for p in pods) and pods
    # How fast is bench/cluster.py's to measure (on a shared 2-core machine a timed test measures
    # the neighbours); here: all of them bound within the wait, spread evenly.
    pods = await until(all_bound, "100 bound pods", timeout=30)
    per_node = {n: sum(p["spec"]["nodeName"] == n for p in pods) for n in SIM_NODES}
    assert per_node == {"simulated-node-1": 50, "simulated-node-2": 50}
    await client.delete(DEPLOYMENTS, NS, "many")


@pytest.mark.parametrize("finalizer", ["orphan", "foregroundDeletion"])
async def test_garbage_collector_honours_deletion_finalizers(cluster, finalizer):
    """The controller side of Orphan and Foreground deletion: the owner waits, with its finalizer,
    while the garbage collector orphans or deletes its dependents, then lets it go."""
    client, _ = cluster
    name = f"owner-{finalizer.lower()}"
    owner = await client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS, "finalizers": [finalizer]},
        "spec": {"ports": [{"port": 80}]}})
    ref = {"apiVersion": "v1", "kind": "Service", "name": name, "uid": owner["metadata"]["uid"],
           "blockOwnerDeletion": True}
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": f"{name}-dependent", "namespace": NS, "ownerReferences": [ref]},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    await client.delete(SERVICES, NS, name)

    async def owner_gone():
        try:
            await client.get(SERVICES, NS, name)
        except errors.NotFound:
            return True
        return False
    await until(owner_gone, "the owner's finalizer removed and the owner deleted")
    if finalizer == "orphan":
        pod = await client.get(PODS, NS, f"{name}-dependent")
        assert not pod["metadata"].get("ownerReferences")
        await client.delete(PODS, NS, f"{name}-dependent", grace_period=0)
    else:
        with pytest.raises(errors.NotFound):
            await client.get(PODS, NS, f"{name}-dependent")
