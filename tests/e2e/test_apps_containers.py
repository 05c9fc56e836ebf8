"""DaemonSet and StatefulSet pods in real containers (`pocketkube up --runtime containerd`, two
nodes, busybox): one daemon pod per node; a StatefulSet pod's hostname and its stable name in
/etc/hosts (`<pod>.<service>.<namespace>.svc.cluster.local`), seen from inside the container."""

from __future__ import annotations

import pytest
import yaml

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

# This helper's own container-mode ranges.
RANGES = {"node_ip_base": "10.217.0.0", "pod_cidr_base": "10.227.0.0/16", "service_cidr": "10.237.0.0/16",
          "lb_pool": "10.217.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(240)]
SCRIPT = "hostname; grep -F \"$(hostname)\" /etc/hosts; exec sleep 3600"


def workload(kind: str, name: str, **spec) -> str:
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {
        "selector": {"matchLabels": {"app": name}}, **spec,
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"terminationGracePeriodSeconds": 1,
                              "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", SCRIPT]}]}}}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-appsc-", tmp_path_factory.mktemp("images"), ["busybox"], nodes=2, **RANGES) as c:
        yield c


k = module_kubectl()


def ready_pods(k, selector: str) -> list[dict]:
    return [p for p in get_json(k, "pods", "-l", selector)["items"]
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")]


def test_daemonset_runs_a_container_on_each_node(k):
    k.ok("apply", "-f", "-", input=workload("DaemonSet", "agent"))
    k.ok("rollout", "status", "ds/agent", "--timeout=90s")
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 2 else None)(ready_pods(k, "app=agent")), timeout=60,
                    what="a ready daemon pod on each node")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-1", "node-2"]
    k.ok("delete", "ds", "agent")


def test_statefulset_pods_know_their_stable_names(k):
    k.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                                  "spec": {"clusterIP": "None", "selector": {"app": "web"},
                                                           "ports": [{"port": 80}]}}))
    k.ok("apply", "-f", "-", input=workload("StatefulSet", "web", replicas=2, serviceName="web"))
    k.ok("rollout", "status", "sts/web", "--timeout=120s")
    for name in ("web-0", "web-1"):
        logs = wait_for(lambda name=name: (lambda out: out if "svc" in out else None)(k.ok("logs", name)),
                        timeout=30, what=f"{name}'s output")
        lines = logs.splitlines()
        assert lines[0] == name
        assert f"{name}.web.default.svc.cluster.local" in logs, logs
    k.ok("delete", "sts", "web")
    k.ok("delete", "svc", "web")
