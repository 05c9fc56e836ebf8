"""In container mode the API server is reachable from pods as in every Kubernetes cluster: at
https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (the `kubernetes` Service's
ClusterIP:443), DNATed by the data plane to the API server's own address on the cluster bridge,
with a certificate the cluster CA signed for that ClusterIP and the Service's DNS names. The
host reaches the ClusterIP too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl

import pytest

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# Ranges of this module's own (no other test file's, nor kind's defaults).
RANGES = {"node_ip_base": "10.253.0.0", "pod_cidr_base": "10.247.0.0/16", "service_cidr": "10.99.0.0/16",
          "lb_pool": "10.253.1.0/24"}
CLUSTER_IP = "10.99.0.1"
APISERVER_IP = "10.253.0.254"  # the node range's last usable address (net.addresses.ContainerPlan)
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(240)]

# What an in-cluster client does (client-go's rest.InClusterConfig): dial the env's host and
# port, verify the server against the cluster CA, by IP and by the Service's DNS name.
CLIENT = r"""
import http.client, os, socket, ssl
host, port = os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"])
ctx = ssl.create_default_context(cadata=os.environ["CA_PEM"])
conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
conn.request("GET", "/api")
print("by-ip", host, port, conn.getresponse().status, flush=True)
with socket.create_connection((host, port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="kubernetes.default.svc") as tls:
        tls.sendall(b"GET /api HTTP/1.1\r\nHost: kubernetes.default.svc\r\nConnection: close\r\n\r\n")
        print("by-name", tls.recv(64).split(b"\r\n")[0].decode(), flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-api-", tmp_path_factory.mktemp("images"), ["python"], nodes=2, **RANGES) as c:
        yield c


k = module_kubectl()


def test_kubernetes_service_points_at_the_advertise_address_with_the_real_port(k, cluster):
    port = int(cluster.url.rsplit(":", 1)[1])  # `--port 0`: a random one
    svc = get_json(k, "service", "kubernetes")
    assert svc["spec"]["clusterIP"] == CLUSTER_IP and svc["spec"]["ports"][0]["port"] == 443
    ep = get_json(k, "endpoints", "kubernetes")["subsets"][0]
    assert [a["ip"] for a in ep["addresses"]] == [APISERVER_IP] and ep["ports"][0]["port"] == port
    eps = get_json(k, "endpointslice", "kubernetes")
    assert eps["endpoints"][0]["addresses"] == [APISERVER_IP] and eps["ports"][0]["port"] == port
    assert APISERVER_IP not in {cluster.node_ip(i) for i in (1, 2)}


def test_host_reaches_the_cluster_ip_with_a_verified_certificate(cluster):
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    assert ipaddress.ip_address(CLUSTER_IP) in ipaddress.ip_network(RANGES["service_cidr"])

    def status() -> str:
        with socket.create_connection((CLUSTER_IP, 443), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=CLUSTER_IP) as tls:
                tls.sendall(b"GET /version HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
                return tls.recv(64).split(b"\r\n")[0].decode()
    # The node agents program the data plane shortly after they are Ready.
    assert wait_for(lambda: _quiet(status), timeout=30, what="host → ClusterIP:443") == "HTTP/1.1 200 OK"


def _quiet(fn):
    try:
        return fn()
    except OSError:
        return None


def test_pods_reach_the_api_server_through_the_kubernetes_service(k, cluster, tmp_path):
    # The CA goes in by env: the API serves no ConfigMaps yet (no kube-root-ca.crt, no volumes).
    ca_pem = (cluster.data_dir / "pki" / "ca.crt").read_text()
    pods = []
    for node in ("node-1", "node-2"):
        name = f"incluster-{node}"
        pods.append(name)
        manifest = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": "Never", "containers": [{
                "name": "client", "image": "python:3", "imagePullPolicy": "Never",
                "command": ["python3", "-c", CLIENT],
                "env": [{"name": "CA_PEM", "value": ca_pem}],
            }]},
        }
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(manifest))
        k.ok("create", "-f", str(path))
    try:
        for name in pods:
            phase = wait_for(lambda n=name: _phase(k, n) in ("Succeeded", "Failed") and _phase(k, n), timeout=90,
                             what=f"{name} finished")
            logs = k.run("logs", name).stdout
            assert phase == "Succeeded", logs
            # No token: 401 (or 403) proves both the route and the certificate's SANs.
            by_ip = next(line for line in logs.splitlines() if line.startswith("by-ip")).split()
            assert by_ip[1:3] == [CLUSTER_IP, "443"] and by_ip[3] in ("401", "403"), logs
            by_name = next(line for line in logs.splitlines() if line.startswith("by-name"))
            assert by_name.split()[2] in ("401", "403"), logs
    finally:
        k.run("delete", "pod", *pods, "--wait=true", timeout=60)


def _phase(k, name: str) -> str:
    return (get_json(k, "pod", name).get("status") or {}).get("phase", "")


def _server_pid(cluster) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"server" in argv and str(cluster.data_dir).encode() in argv:
                return int(entry)
    return None


def test_a_restarted_server_listens_on_the_advertise_address_again(cluster):
    """`up` restarts a crashed server with both sockets: ClusterIP:443 answers again."""
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))

    def status() -> str:
        with socket.create_connection((CLUSTER_IP, 443), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="kubernetes.default") as tls:
                tls.sendall(b"GET /version HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
                return tls.recv(64).split(b"\r\n")[0].decode()
    old = _server_pid(cluster)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _server_pid(cluster) not in (None, old), timeout=30, what="a new API server process")
    assert wait_for(lambda: _quiet(status), timeout=30, what="ClusterIP:443 after the restart") == "HTTP/1.1 200 OK"
