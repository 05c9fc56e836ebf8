"""Traffic counters end to end: the seed on a process-runtime `pocketkube up`, some curls to node-1's
NodePort, and `kubectl get --raw /api/v1/nodes/node-1/proxy/metrics` shows them (entry and
endpoint counts, pod names), as does the agent's JSON snapshot through nodes/proxy. Both data
planes (nftables when root). Ranges: nodes 127.201.1.x / 127.201.2.x, pods 127.202.x, Services
127.203.x, load balancers 127.204.x (this topic's own)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from svc_helpers import wait_for, wait_ready

from pocketkube.proxy.select import nftables_usable
from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import KUBECTL, NFT, NGINX, have_nginx, require, requires

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CURLS = 30

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.slow,
              pytest.mark.timeout(240)]

PLANES = {
    "nftables": {"node_ip_base": "127.201.1.0", "pod_cidr_base": "127.202.0.0/16",
                 "service_cidr": "127.203.0.0/16", "lb_pool": "127.204.0.0/24"},
    "userspace": {"node_ip_base": "127.201.2.0", "pod_cidr_base": "127.205.0.0/16",
                  "service_cidr": "127.206.0.0/16", "lb_pool": "127.204.1.0/24"},
}


@pytest.fixture(scope="module", params=sorted(PLANES))
def seeded(request):
    plane = request.param
    if plane == "nftables":
        require(nftables_usable(), NFT)
    with running_cluster(f"pk-ctr-{plane}-", nodes=3, extra_args=["--dataplane", plane, "--no-dns"],
                         **PLANES[plane]) as cluster:
        binaries = kubectl_binaries()
        k = Kubectl(binaries.get("kubectl-1.32") or next(iter(binaries.values())), cluster.kubeconfig, cwd=ROOT)
        try:
            k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
            k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))
            pods = wait_ready(k, "app=myapp,type=front-end", 3)
            wait_for(lambda: _get(cluster.node_ip(1), 30008), timeout=10, what="nginx via node-1:30008")
            yield plane, cluster, k, {p["metadata"]["name"] for p in pods}
        finally:
            k.close()


def _get(ip: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=2) as r:  # one connection each
            return r.status == 200
    except OSError:
        return False


def metrics(k: Kubectl, node: str) -> dict[str, list]:
    text = k.ok("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics")
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def seed_counts(k: Kubectl, node: str) -> tuple[float, dict[str, float]]:
    """(node-1's NodePort entry count, endpoint counts by pod) of myapp-service on `node`."""
    m = metrics(k, node)
    entry = sum(s.value for s in m["pocketkube_proxy_entry_connections"]
                if s.name.endswith("_total") and s.labels["service"] == "myapp-service"
                and s.labels["kind"] == "NodePort")
    endpoints = {s.labels["pod"]: s.value for s in m["pocketkube_proxy_endpoint_connections"]
                 if s.name.endswith("_total") and s.labels["service"] == "myapp-service"}
    return entry, endpoints


def test_kubectl_get_raw_metrics_shows_the_seeds_connections(seeded):
    plane, cluster, k, pods = seeded
    entry_before, eps_before = seed_counts(k, "node-1")
    for _ in range(CURLS):
        assert _get(cluster.node_ip(1), 30008)
    entry_after, eps_after = seed_counts(k, "node-1")
    assert entry_after - entry_before == CURLS
    # node-1's data plane chose the endpoint of every connection it took in
    assert set(eps_after) == pods, eps_after
    assert sum(eps_after.values()) - sum(eps_before.values()) == CURLS
    sample = next(iter(metrics(k, "node-1")["pocketkube_proxy_endpoint_connections"]))
    assert sample.labels["dataplane"] == plane and sample.labels["node"] == "node-1"


def test_agent_snapshot_through_nodes_proxy(seeded):
    plane, cluster, k, pods = seeded
    snap = json.loads(k.ok("get", "--raw", "/api/v1/nodes/node-2/proxy/proxy/traffic"))
    assert snap["node"] == "node-2" and snap["dataplane"] == plane
    (entry,) = [e for e in snap["entries"] if e["service"] == "myapp-service" and e["kind"] == "NodePort"]
    assert (entry["ip"], entry["port"]) == (cluster.node_ip(2), 30008)
