"""NodeResourcesFit: requests of the node's pods plus the new one against allocatable; and the
machine's share each node reports."""

from __future__ import annotations

from pocketkube.agent.node import machine_share
from pocketkube.scheduler.plugins import NodeInfo, filter_reasons, fit_error_message, select_node


def node(name: str, cpu: str | None = "1", memory: str | None = "1Gi") -> dict:
    allocatable = {"pods": "110"}
    if cpu is not None:
        allocatable["cpu"] = cpu
    if memory is not None:
        allocatable["memory"] = memory
    return {"metadata": {"name": name}, "spec": {},
            "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(cpu: str | None = None, memory: str | None = None, init_cpu: str | None = None) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": requests}}]}
    if init_cpu:
        spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": init_cpu}}}]
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


def test_requests_are_summed_against_allocatable():
    info = NodeInfo(node("n1"))
    assert filter_reasons(pod("600m"), info) == []
    info.add_pod(pod("600m", "512Mi"))
    assert filter_reasons(pod("400m"), info) == []
    assert filter_reasons(pod("500m", "600Mi"), info) == ["Insufficient cpu", "Insufficient memory"]
    assert filter_reasons(pod(init_cpu="2"), NodeInfo(node("n2"))) == ["Insufficient cpu"]


def test_unreported_resources_do_not_limit_but_extended_ones_do():
    assert filter_reasons(pod("64"), NodeInfo(node("n", cpu=None))) == []
    p = pod()
    p["spec"]["containers"][0]["resources"]["requests"]["example.com/gpu"] = "1"
    assert filter_reasons(p, NodeInfo(node("n"))) == ["Insufficient example.com/gpu"]


def test_fit_error_message_counts_every_reason():
    nodes = [NodeInfo(node(f"n{i}", cpu="500m")) for i in range(3)]
    decision = select_node(pod("1", "2Gi"), nodes)
    assert decision.node is None
    assert decision.message == ("0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory. "
                                "preemption: 0/3 nodes are available: 3 No preemption victims found for "
                                "incoming pod.")
    assert fit_error_message(2, ["node(s) were unschedulable", "Insufficient cpu"]).startswith(
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable.")


def test_scheduler_picks_the_node_with_room():
    full, free = NodeInfo(node("full")), NodeInfo(node("free"))
    full.add_pod(pod("900m"))
    assert select_node(pod("500m"), [full, free]).node == "free"


def test_machine_share():
    assert machine_share(3, cpus=2, mem_kib=24 * 1024 * 1024) == ("666m", "8388608Ki")
    assert machine_share(2, cpus=4, mem_kib=1000) == ("2", "500Ki")
    assert machine_share(0, cpus=1, mem_kib=10) == ("1", "10Ki")
