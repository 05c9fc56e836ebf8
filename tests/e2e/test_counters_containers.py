"""Traffic counters in container mode: pods in their own network namespaces behind node bridges.

One 2-node `pocketkube up --runtime containerd` (nftables). A client pod's connections to a
ClusterIP (prerouting DNAT on the host, from a bridge) are counted once across the node tables;
host connections to a NodePort by that node only; a client pod's connections to a Service with
no endpoints are counted as rejected once (filter-forward). Ranges: nodes 10.201.0.x, pods
10.202.0.0/16, Services 10.203.0.0/16, load balancers 10.204.0.0/24 (this topic's own).
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from pocketkube.testing import images
from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_container_cluster
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

RANGES = {"node_ip_base": "10.201.0.0", "pod_cidr_base": "10.202.0.0/16", "service_cidr": "10.203.0.0/16",
          "lb_pool": "10.204.0.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(240)]

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"
N = 12


@pytest.fixture(scope="module")
def cluster():
    with running_container_cluster("pk-ctrc-", nodes=2, from_host=("busybox",), extra_args=["--no-dns"],
                                   **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    yield kc
    kc.close()


def apply(k: Kubectl, *objects: dict) -> None:
    for obj in objects:
        k.ok("apply", "-f", "-", input=json.dumps(obj))


def busybox_pod(name: str, script: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", script]}]}}


def service(name: str, app: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def snapshots(k: Kubectl) -> list[dict]:
    return [json.loads(k.ok("get", "--raw", f"/api/v1/nodes/node-{i}/proxy/proxy/traffic")) for i in (1, 2)]


def total(snaps: list[dict], part: str, service_name: str, **match) -> int:
    return sum(x["connections"] for s in snaps for x in s[part]
               if x["service"] == service_name and all(x[k] == v for k, v in match.items()))


def test_pod_and_host_connections_are_counted_once_across_bridged_node_tables(k, cluster):
    apply(k, busybox_pod("web-a", HTTPD, {"app": "web"}), busybox_pod("web-b", HTTPD, {"app": "web"}),
          service("web", "web", type="NodePort"), service("nobody", "nobody"))
    wait_for(lambda: all(p["status"].get("phase") == "Running" for p in get_json(k, "pods", "-l", "app=web")["items"])
             and len(get_json(k, "pods", "-l", "app=web")["items"]) == 2, timeout=60, what="web pods running")
    vip = get_json(k, "svc", "web")["spec"]["clusterIP"]
    node_port = get_json(k, "svc", "web")["spec"]["ports"][0]["nodePort"]
    nobody = get_json(k, "svc", "nobody")["spec"]["clusterIP"]
    wait_for(lambda: _get(cluster.node_ip(1), node_port), timeout=30, what="the NodePort serving")
    before = snapshots(k)
    for _ in range(N):
        assert _get(cluster.node_ip(1), node_port)
    after = snapshots(k)
    assert total(after, "entries", "web", kind="NodePort") - total(before, "entries", "web", kind="NodePort") == N
    assert after[1]["entries"] and total([after[1]], "entries", "web", kind="NodePort") == 0  # node-2's own port
    assert total(after, "endpoints", "web") - total(before, "endpoints", "web") == N
    # From a pod: N connections to the ClusterIP, 3 to a Service without endpoints.
    script = (f"for i in $(seq {N}); do wget -q -O /dev/null http://{vip}/ && echo ok; done; "
              f"for i in 1 2 3; do wget -q -O /dev/null http://{nobody}/ 2>&1 | grep -q refused && echo refused; done; "
              "echo done; sleep 3600")
    before = snapshots(k)
    apply(k, busybox_pod("client", script))
    logs = wait_for(lambda: _finished(k.run("logs", "client").stdout), timeout=60, what="the client's loop")
    assert logs.count("ok") == N and logs.count("refused") == 3, logs
    after = snapshots(k)
    counted = total(after, "entries", "web", kind="ClusterIP") - total(before, "entries", "web", kind="ClusterIP")
    assert counted == N
    endpoints = total(after, "endpoints", "web") - total(before, "endpoints", "web")
    assert endpoints == N
    assert total(after, "rejected", "nobody") - total(before, "rejected", "nobody") == 3


def _finished(out: str) -> str | None:
    return out if "done" in out else None


def _get(ip: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
