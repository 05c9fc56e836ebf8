"""`up` restarts a crashed API server; Services keep serving through the outage, and clients
resume their watches instead of relisting (kube-apiserver's own request counter shows it).

"No LIST after the restart" proves something only once the clients are back: the test first
waits until the restarted server holds as many open watches of each resource as the old one did
(apiserver_longrunning_requests), then until the clients have acted on changes made after the
restart, and only then counts the LIST requests.
"""

import json
import os
import re
import signal
import ssl
import time
import urllib.request

import pytest
import yaml

from pocketkube.testing.procs import (
    Kubectl,
    kubectl_binaries,
    running_cluster,
)
from pocketkube.testing.requires import NGINX, have_nginx, requires
from pocketkube.testing.waits import wait_for

pytestmark = [requires(have_nginx(), NGINX), pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-restart-", node_ip_base="127.0.41.0", pod_cidr_base="127.241.0.0/16",
                         service_cidr="127.141.0.0/16", lb_pool="127.242.0.0/24",
                         extra_args=["--dataplane", "userspace"]) as c:
        yield c


def server_pid(cluster) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"server" in argv and str(cluster.data_dir).encode() in argv:
                return int(entry)
    raise AssertionError("no server process")


def api_get(cluster, path: str) -> bytes:
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    req = urllib.request.Request(cluster.url + path,
                                 headers={"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"})
    return urllib.request.urlopen(req, timeout=2, context=ctx).read()


SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/"
AFTER_RESTART_SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-after"},
                         "spec": {"type": "NodePort", "selector": {"app": "web"},
                                  "ports": [{"port": 80, "targetPort": 80, "nodePort": 30081}]}}


def open_watches(metrics: str) -> dict[str, int]:
    """Open WATCH requests by resource, from the apiserver_longrunning_requests gauge."""
    counts: dict[str, int] = {}
    for m in re.finditer(r'apiserver_longrunning_requests\{[^}]*[{,]resource="([^"]*)"[^}]*verb="WATCH"\} (\S+)', metrics):
        counts[m.group(1)] = counts.get(m.group(1), 0) + int(float(m.group(2)))
    return counts


def list_requests(metrics: str) -> int:
    return sum(int(float(m.group(1))) for m in re.finditer(r'apiserver_request_total\{[^}]*verb="LIST"[^}]*\} (\S+)',
                                                          metrics))


def test_crashed_server_is_restarted_and_traffic_never_stops(cluster):
    k = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    try:
        k.ok("create", "deployment", "web", "--image=nginx", "--replicas=3")
        k.ok("create", "service", "nodeport", "web", "--tcp=80:80", "--node-port=30080")
        urls = [f"http://{cluster.node_ip(i)}:30080/" for i in (1, 2, 3)]
        wait_for(lambda: all(_ok(u) for u in urls), timeout=60, what="NodePort serving on every node")
        slices = k.ok("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name").split()
        watches_before = open_watches(api_get(cluster, "/metrics").decode())
        assert watches_before.get("pods", 0) >= 3, watches_before  # every kubelet watches its pods
        old_pid = server_pid(cluster)
        os.kill(old_pid, signal.SIGKILL)
        failures = requests = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for u in urls:
                requests += 1
                failures += not _ok(u)
            try:
                pid = server_pid(cluster)
                if pid != old_pid and api_get(cluster, "/version"):
                    break
            except (AssertionError, OSError):
                pass
            time.sleep(0.05)  # the polling interval of this wait, which also counts failed requests
        else:
            pytest.fail("the API server was not restarted")
        assert failures == 0, f"{failures} of {requests} requests failed while the API server was down"

        def watches_back() -> bool:
            now = open_watches(api_get(cluster, "/metrics").decode())
            return all(now.get(resource, 0) >= n for resource, n in watches_before.items())
        wait_for(watches_back, timeout=60, what=f"the clients' watches back ({watches_before})")

        # The clients are back once they act on changes made after the restart: a new NodePort
        # Service served on every node takes the controller manager's Service and Pod watches (its
        # EndpointSlice) and every node proxy's Service and EndpointSlice watches; scaling to 4
        # takes the Deployment, ReplicaSet, Pod and Node watches and a kubelet's. None of the
        # test's own requests is a LIST, so every LIST the new server counts is a client's relist.
        k.ok("create", "-f", "-", input=json.dumps(AFTER_RESTART_SERVICE))
        after = [f"http://{cluster.node_ip(i)}:30081/" for i in (1, 2, 3)]
        wait_for(lambda: all(_ok(u) for u in after), timeout=60,
                 what="a Service created after the restart serving on every node")
        k.ok("scale", "deployment", "web", "--replicas=4")

        def four_endpoints() -> bool:
            return sum(len(json.loads(api_get(cluster, SLICES + name.rsplit("/", 1)[1])).get("endpoints") or [])
                       for name in slices) == 4
        wait_for(four_endpoints, timeout=60, what="the restarted control plane to scale and publish 4 endpoints")
        relists = list_requests(api_get(cluster, "/metrics").decode())
        assert relists == 0, f"{relists} LIST requests after the restart: clients should resume their watches"
    finally:
        k.run("delete", "deployment", "web", "--wait=true", timeout=60)
        k.run("delete", "service", "web", "web-after")
        k.close()


def _ok(url: str) -> bool:
    try:
        return b"Welcome to nginx" in urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        return False
