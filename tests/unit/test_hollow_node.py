"""The hollow node's decisions (pure) and its kubelet against the fake client."""

from __future__ import annotations

import ipaddress

import pytest

from pocketkube.agent.hollow import Action, HollowKubelet, PodIPs, decide, hollow_status
from pocketkube.agent.hollow_fleet import HollowNodeAgent, hollow_specs
from pocketkube.api.resources import BY_PLURAL
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.waits import wait_for_async

pytestmark = pytest.mark.unit

PODS = BY_PLURAL[("", "pods")]
NOW = "2026-01-02T03:04:05Z"


def _pod(name: str = "p", node: str = "hollow-0", **status) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"},
                                                      {"name": "side", "image": "side:1"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}], **status}}


def test_decide():
    assert decide(_pod(), started=False) is Action.START
    assert decide(_pod(), started=True) is Action.NONE
    assert decide(_pod(phase="Running", podIP="10.236.128.2"), started=False) is Action.ADOPT
    assert decide(_pod(phase="Succeeded"), started=False) is Action.NONE
    deleting = _pod()
    deleting["metadata"]["deletionTimestamp"] = NOW
    assert decide(deleting, started=True) is Action.DELETE
    assert decide(deleting, started=False) is Action.DELETE


def test_pod_ips_skip_the_gateway_and_reuse_released_addresses():
    ips = PodIPs("10.236.128.0/30")  # hosts .1 and .2; .1 is the gateway
    assert ips.assign("a") == "10.236.128.2"
    assert ips.assign("a") == "10.236.128.2"
    ips.release("a")
    assert ips.assign("b") == "10.236.128.2"
    big = PodIPs("10.236.128.0/24")
    got = {big.assign(str(i)) for i in range(253)}
    assert len(got) == 253 and "10.236.128.1" not in got and "10.236.128.255" not in got


def test_hollow_status_is_running_and_ready_with_the_kubelets_shape():
    pod = _pod()
    pod["spec"]["initContainers"] = [{"name": "init", "image": "init:1"}]
    st = hollow_status(pod, pod_ip="10.236.128.9", host_ip="10.236.0.1", now=NOW)
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.236.128.9" and st["podIPs"] == [{"ip": "10.236.128.9"}]
    assert st["hostIP"] == "10.236.0.1" and st["startTime"] == NOW and st["qosClass"] == "BestEffort"
    assert [c["name"] for c in st["containerStatuses"]] == ["app", "side"]
    for c in st["containerStatuses"]:
        assert c["ready"] and c["started"] and c["state"] == {"running": {"startedAt": NOW}}
        assert c["containerID"].startswith("hollow://")
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}


def test_hollow_specs_carve_pod_cidrs_and_number_nodes():
    specs = hollow_specs("hollow-3-", 100, "10.236.3.1", "10.236.128.0/17")
    assert [s.name for s in specs[:2]] == ["hollow-3-0", "hollow-3-1"]
    assert specs[99].ip == "10.236.3.100"
    nets = [ipaddress.ip_network(s.pod_cidr) for s in specs]
    assert nets[0] == ipaddress.ip_network("10.236.128.0/24") and len(set(nets)) == 100
    small = hollow_specs("h-", 1000, "10.236.0.1", "10.236.128.0/17")
    assert ipaddress.ip_network(small[0].pod_cidr).prefixlen == 27
    with pytest.raises(ValueError, match="too small"):
        hollow_specs("h-", 1000, "10.236.0.1", "10.236.128.0/24")
    with pytest.raises(ValueError, match="at least 1"):
        hollow_specs("h-", 0, "10.236.0.1", "10.236.128.0/24")
    with pytest.raises(ValueError, match="no room"):
        hollow_specs("h-", 3, "255.255.255.254", "10.236.128.0/24")


def test_hollow_node_object_is_labelled_simulated(tmp_path):
    node = HollowNodeAgent(FakeClient(), "hollow-0", "10.236.0.1", "10.236.128.0/24", tmp_path, 0)  # type: ignore[arg-type]
    obj = node.node_object()
    assert obj["metadata"]["labels"]["pocketkube.io/hollow"] == "true"
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "hollow-0"


async def test_hollow_kubelet_starts_its_pods_and_removes_deleted_ones():
    client = FakeClient()
    client.seed(PODS, _pod("mine"))
    client.seed(PODS, _pod("other", node="hollow-1"))
    kubelet = HollowKubelet(client, "hollow-0", "10.236.0.1", "10.236.128.0/24")  # type: ignore[arg-type]
    await kubelet.start()
    try:
        async def phase(name: str) -> str:
            return (await client.get(PODS, "default", name))["status"].get("phase", "")
        await wait_for_async(lambda: phase("mine"), what="mine Running")
        assert await phase("mine") == "Running"
        assert await phase("other") == "Pending"
        mine = await client.get(PODS, "default", "mine")
        assert mine["status"]["podIP"] == "10.236.128.2"
        patches = client.actions_of("patch", "pods")
        assert [a.subresource for a in patches] == ["status"]

        await client.delete(PODS, "default", "mine")  # graceful: the kubelet finishes it

        async def gone() -> bool:
            return not [p for p in client.objects(PODS, "default") if p["metadata"]["name"] == "mine"]
        await wait_for_async(gone, what="mine deleted")
        assert not kubelet.ips.assigned and not kubelet.started
    finally:
        await kubelet.stop()


def test_hollow_tokens_one_for_all_or_one_each():
    from pocketkube.agent.hollow_fleet import hollow_tokens

    assert hollow_tokens("abc-DEF_12\n", ["a", "b"]) == {"a": "abc-DEF_12", "b": "abc-DEF_12"}
    assert hollow_tokens("a: t1\nb: t2\nc: t3\n", ["a", "b"]) == {"a": "t1", "b": "t2"}
    with pytest.raises(ValueError, match="no token for 1 node"):
        hollow_tokens("a: t1\n", ["a", "b"])


async def test_a_restarted_hollow_kubelet_adopts_running_pods_and_keeps_their_ips():
    client = FakeClient()
    uid = client.seed(PODS, _pod("running", phase="Running", podIP="10.236.128.7"))["metadata"]["uid"]
    kubelet = HollowKubelet(client, "hollow-0", "10.236.0.1", "10.236.128.0/24")  # type: ignore[arg-type]
    await kubelet.start()
    try:
        await wait_for_async(lambda: uid in kubelet.started, what="adopted", timeout=5)
        assert kubelet.ips.assigned == {uid: "10.236.128.7"}
        assert not client.actions_of("patch", "pods")  # nothing to write: it already runs
    finally:
        await kubelet.stop()
