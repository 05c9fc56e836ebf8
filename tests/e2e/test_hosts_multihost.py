"""Agents on other hosts: three network namespaces as hosts on a bridge (pocketkube.testing.netns_hosts),
one agent per host with `--routes host-gw` and its pod CIDR from node IPAM, the API server (with the
controller manager) in the root namespace on the bridge's address.

Process runtime: each host's pod range is a local range of its namespace, so a process pod's IP
is a real address of that host, and crossing hosts needs the host-gw routes the agents program.
Addresses are this topic's own: hosts 10.251.0.1i, pods 10.252.0.0/16, Services 10.253.0.0/16,
LoadBalancers 10.254.0.0/24; all of them blackholed in the root namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketkube.apiserver.pki import PKI, serving_hosts
from pocketkube.proxy.select import nftables_usable
from pocketkube.testing.image_clusters import image_archives
from pocketkube.testing.netns_hosts import leftovers, netns_hosts
from pocketkube.testing.procs import ServerProcess, preferred_kubectl
from pocketkube.testing.requires import CONTAINERD, NFT, ROOT, have_containerd, is_root, requires
from pocketkube.testing.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires(is_root(), ROOT), requires(nftables_usable(), NFT),
              pytest.mark.timeout(240)]

BRIDGE_NET = "10.251.0.0/24"
SERVER_IP = "10.251.0.1"
POD_CIDR = "10.252.0.0/16"
SERVICE_CIDR = "10.253.0.0/16"
LB_POOL = "10.254.0.0/24"
HOSTS = 3
NODE_PORT = 30008
GRACE = 8  # --node-monitor-grace-period: the link-down test waits for it

WHOAMI = ("import http.server, os\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = os.environ['POD_NAME'].encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
          "        self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "http.server.ThreadingHTTPServer((os.environ['POD_IP'], 8080), H).serve_forever()\n")


def pod(name: str, node: str, image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{
                "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", WHOAMI],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}}


class MultiHost:
    def __init__(self, hosts, server: ServerProcess, kubectl, image: str) -> None:
        self.hosts = hosts
        self.server = server
        self.kubectl = kubectl
        self.image = image  # what the web pods run: the process catalog's python, or the test image
        self.agents: dict[int, subprocess.Popen] = {}

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl.ok("get", *args, "-o", "json"))


RUNTIMES = ["process", pytest.param("containerd", marks=requires(have_containerd(), CONTAINERD))]
# With containerd: each host's pods in namespaces of their own behind its bridge, every other
# destination via their gateway (the host has no default route itself).
CONTAINER_ARGS = ["--runtime", "containerd", "--node-bridge", "pkh-cni0", "--pod-routes", "0.0.0.0/0"]


@pytest.fixture(scope="module", params=RUNTIMES)
def cluster(request, tmp_path_factory):
    containers = request.param == "containerd"
    root = tmp_path_factory.mktemp("pkh-multihost")
    data = root / "server"
    pki = PKI(data)
    pki.ensure(serving_hosts(SERVER_IP))
    tokens = {}
    for i in range(1, HOSTS + 1):  # the server reads node tokens at start
        tokens[i] = root / f"h{i}.token"
        tokens[i].write_text(pki.node_token(f"h{i}"))
    server = ServerProcess(data, ["--bind-address", SERVER_IP, "--service-cidr", SERVICE_CIDR,
                                  "--load-balancer-pool", LB_POOL, "--cluster-cidr", POD_CIDR,
                                  "--node-monitor-grace-period", str(GRACE)])
    logs = []
    try:
        with netns_hosts(HOSTS, base=BRIDGE_NET, blackholes=(POD_CIDR, SERVICE_CIDR, LB_POOL)) as hosts:
            server.start(port=0, timeout=30)
            kubectl = preferred_kubectl(server.kubeconfig)
            env = MultiHost(hosts, server, kubectl, "python:3" if containers else "python")
            for h in hosts.hosts:
                log = open(root / f"h{h.index}.log", "ab")
                logs.append(log)
                env.agents[h.index] = hosts.spawn(h.index, [
                    sys.executable, "-m", "pocketkube", "agent", "--server", server.url,
                    "--token-file", str(tokens[h.index]), "--ca-file", str(server.ca_file),
                    "--node-name", f"h{h.index}", "--node-ip", h.ip, "--data-dir", str(data / "nodes" / f"h{h.index}"),
                    "--routes", "host-gw", "--dataplane", "nftables", "--lease-interval", "1",
                    *(CONTAINER_ARGS if containers else [])],
                    cgroups=containers, stdout=log, stderr=subprocess.STDOUT)

            def ready() -> bool:
                nodes = env.get("nodes")["items"]
                return len(nodes) == HOSTS and all(
                    any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions", []))
                    for n in nodes)
            wait_for(ready, timeout=90, what=f"{HOSTS} Ready nodes (agent logs in {root})")
            if containers:  # every host's containerd gets the test image (its socket is a file)
                archive = image_archives(root, ["python"])["python"]
                subprocess.run([sys.executable, "-m", "pocketkube", "image", "load", "--data-dir", str(data),
                                str(archive)], check=True, capture_output=True, timeout=120)
            try:
                yield env
            finally:
                kubectl.close()
    finally:
        server.stop()
        for log in logs:
            log.close()
    assert leftovers() == [], "netns hosts left behind"
    assert str(root) not in Path("/proc/self/mountinfo").read_text(), "mounts left behind"


def test_nodes_get_pod_cidrs_and_routes(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    cidrs = {name: n["spec"]["podCIDR"] for name, n in nodes.items()}
    assert len(set(cidrs.values())) == HOSTS
    assert all(c.startswith("10.252.") and c.endswith("/24") for c in cidrs.values())
    for i in range(1, HOSTS + 1):
        want = {f"{cidrs[f'h{j}']} via 10.251.0.1{j}" for j in range(1, HOSTS + 1) if j != i}

        def routes(i=i) -> set[str]:
            out = cluster.hosts.run(i, ["ip", "-4", "route", "show", "proto", "176"]).stdout
            return {" ".join(line.split()[:3]) for line in out.splitlines()}
        wait_for(lambda i=i, want=want: routes(i) == want, timeout=20, what=f"h{i}'s host-gw routes {want}")
        assert "default" not in cluster.hosts.run(i, ["ip", "route"]).stdout


def test_pod_on_h1_reaches_pod_on_h3_and_nodeport_reaches_every_host(cluster):
    k = cluster.kubectl
    k.ok("apply", "--validate=false", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        *(pod(f"web-h{i}", f"h{i}", cluster.image) for i in range(1, HOSTS + 1)), SERVICE]}))

    def pod_ips() -> dict[str, str]:
        pods = cluster.get("pods", "-l", "app=web")["items"]
        return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}
    ips = wait_for(lambda: (lambda got: got if len(got) == HOSTS else None)(pod_ips()), timeout=40,
                   what="3 Ready web pods")
    h3_ip = ips["web-h3"]
    out = k.ok("exec", "web-h1", "--", "python3", "-c",
               f"import urllib.request; print(urllib.request.urlopen('http://{h3_ip}:8080', timeout=5).read().decode())")
    assert out.strip() == "web-h3"

    seen: set[str] = set()

    def every_host() -> bool:
        done = subprocess.run(["curl", "-sS", "--max-time", "3", f"http://10.251.0.12:{NODE_PORT}/"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            seen.add(done.stdout.strip())
        return seen == {f"web-h{i}" for i in range(1, HOSTS + 1)}
    wait_for(every_host, timeout=30, interval=0.05, what=f"NodePort on h2 reaching every host's pod (saw {seen})")


def test_link_down_makes_node_not_ready_and_withdraws_its_endpoints(cluster):
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in cluster.get("pods", "-l", "app=web")["items"]}
    h2_ip = pods["web-h2"]

    def ready_addresses() -> set[str]:
        ep = cluster.get("endpoints", "web")
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
    wait_for(lambda: h2_ip in ready_addresses(), timeout=20, what="h2's pod in the endpoints")
    cluster.hosts.link(2, up=False)
    t0 = time.monotonic()
    try:
        def h2_not_ready() -> bool:
            node = cluster.get("node", "h2")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            return ready["status"] == "Unknown"
        wait_for(h2_not_ready, timeout=GRACE + 20, what="Node h2 NotReady (Unknown)")
        assert time.monotonic() - t0 >= GRACE - 1  # not before the grace period
        wait_for(lambda: h2_ip not in ready_addresses(), timeout=15, what="h2's endpoint withdrawn")
        assert {pods["web-h1"], pods["web-h3"]} <= ready_addresses()
    finally:
        cluster.hosts.link(2, up=True)


def test_a_deleted_node_loses_its_routes_everywhere(cluster):
    """Last: host 3 leaves the cluster (its agent stops, its Node is deleted); the others drop
    their route to its pod range, and its own routes went with its agent."""
    cidr = cluster.get("node", "h3")["spec"]["podCIDR"]
    agent = cluster.agents[3]
    agent.terminate()
    agent.wait(60)
    assert cluster.hosts.run(3, ["ip", "-4", "route", "show", "proto", "176"]).stdout == ""
    cluster.kubectl.ok("delete", "node", "h3")
    for i in (1, 2):
        wait_for(lambda i=i: cidr not in cluster.hosts.run(i, ["ip", "-4", "route", "show", "proto", "176"]).stdout,
                 timeout=20, what=f"h{i}'s route to {cidr} removed")
