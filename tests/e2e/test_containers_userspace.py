"""`pocketkube up --runtime containerd --dataplane userspace`: the userspace data plane serves
container pods as the nftables one does, from the host and from pods on every node, to pods on
every node: ClusterIP, every node IP:NodePort, the LoadBalancer IP, and a pod reaching itself
through its Service (hairpin). The VIPs are local addresses of the host in this mode (hostnet's
`local_vips`), so the plane binds them and pods' packets to them reach its listeners.
"""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from pocketkube.net import portmap
from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, NGINX, have_containerd, have_nginx, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

# Ranges of their own: never a developer's cluster nor another test module's.
RANGES = {"node_ip_base": "10.255.0.0", "pod_cidr_base": "10.249.0.0/16", "service_cidr": "10.101.0.0/16",
          "lb_pool": "10.255.1.0/24"}
NODES = (1, 2, 3)
pytestmark = [requires(have_containerd(), CONTAINERD), requires(have_nginx(), NGINX),
              requires(images.have_busybox(), BUSYBOX), pytest.mark.slow, pytest.mark.timeout(300)]

# Each target ip:port in $TARGETS, retried for a few seconds (a node's plane may lag the API by
# a moment): "reached <target>" once an HTTP 200 came back through it, else "failed <target>".
PROBE = """
for t in $TARGETS; do
  ok=failed
  for i in $(seq 50); do
    if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${t%:*} ${t#*:} 2>/dev/null | grep -q ' 200 '; then ok=reached; break; fi
    sleep 0.2
  done
  echo "$ok $t"
done
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-ctr-us-", tmp_path_factory.mktemp("images"), ["nginx", "busybox"],
                       extra_args=["--dataplane", "userspace"], **RANGES) as c:
        yield c
    # portmap's shared chains are gone, or still hold another cluster's mappings (never emptied).
    dnat = subprocess.run(["iptables", "-t", "nat", "-S", portmap.DNAT_CHAIN], capture_output=True, text=True)
    assert dnat.returncode != 0 or f"-A {portmap.DNAT_CHAIN} " in dnat.stdout, dnat.stdout


k = module_kubectl()


def apply(k, manifest: str, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(manifest)
    k.ok("apply", "-f", str(path))


def probe_pod(name: str, node: int, targets: list[str], *, serve: bool = False) -> str:
    """A busybox pod on node-`node` that probes `targets`; with `serve`, nginx beside it (the pod
    behind the Service it probes: hairpin) and the prober stays up so the pod stays Ready."""
    web = ("  - {name: web, image: nginx, imagePullPolicy: IfNotPresent,"
           " readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}}\n") if serve else ""
    tail = "; sleep 3600" if serve else ""
    script = (PROBE + tail).replace("\n", "\n      ")
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: node-{node}
  restartPolicy: Never
  containers:
{web}  - name: probe
    image: busybox
    imagePullPolicy: IfNotPresent
    env: [{{name: TARGETS, value: "{' '.join(targets)}"}}]
    command:
    - sh
    - -c
    - |
      {script}
"""


WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: nginx, imagePullPolicy: IfNotPresent, readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""

SELF_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: self}
spec:
  type: NodePort
  selector: {app: self}
  ports: [{port: 80, targetPort: 80}]
"""


def service_addresses(k, name: str) -> tuple[str, int, str]:
    """(ClusterIP, nodePort, LoadBalancer IP or '') of a Service."""
    svc = get_json(k, "service", name)
    ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}]
    return svc["spec"]["clusterIP"], svc["spec"]["ports"][0].get("nodePort", 0), ingress[0].get("ip", "")


def report(k, *args: str) -> list[str]:
    """The probe's "reached/failed <target>" lines from a pod's logs."""
    return [line for line in k.run("logs", *args).stdout.splitlines() if line.startswith(("reached ", "failed "))]


def http_ok(url: str) -> bool:
    try:
        return "Welcome to nginx!" in urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError:
        return False


def test_host_and_pods_on_every_node_reach_every_frontend_and_a_pod_itself(k, cluster, tmp_path):
    apply(k, WEB, tmp_path, "web")
    apply(k, SELF_SERVICE, tmp_path, "self-svc")
    probes = [f"probe-{i}" for i in NODES]
    try:
        wait_for(lambda: len([p for p in get_json(k, "pods", "-l", "app=web")["items"] if is_ready(p)]) == 3,
                 timeout=90, what="3 web pods Ready")
        cluster_ip, node_port, lb_ip = wait_for(lambda: (a := service_addresses(k, "web"))[2] and a, timeout=30,
                                                what="the LoadBalancer IP")
        assert cluster_ip.startswith("10.101.") and lb_ip.startswith("10.255.1.")
        targets = [f"{cluster_ip}:80", f"{lb_ip}:80", *(f"{cluster.node_ip(i)}:{node_port}" for i in NODES)]

        # From the host.
        for target in targets:
            wait_for(lambda t=target: http_ok(f"http://{t}/"), timeout=20, what=f"host → {target}")

        # From a pod on every node.
        for i, name in zip(NODES, probes, strict=True):
            apply(k, probe_pod(name, i, targets), tmp_path, name)
        for name in probes:
            wait_for(lambda n=name: get_json(k, "pod", n)["status"].get("phase") in ("Succeeded", "Failed"),
                     timeout=90, what=f"{name} done")
            assert report(k, name) == [f"reached {t}" for t in targets], k.run("logs", name).stdout

        # Hairpin: the only pod behind `self` reaches itself through its ClusterIP and a NodePort.
        self_ip, self_port, _ = service_addresses(k, "self")
        hairpin = [f"{self_ip}:80", f"{cluster.node_ip(2)}:{self_port}"]
        apply(k, probe_pod("self", 2, hairpin, serve=True), tmp_path, "self")
        wait_for(lambda: len(report(k, "self", "-c", "probe")) == len(hairpin), timeout=90,
                 what="the hairpin probe's report")
        assert report(k, "self", "-c", "probe") == [f"reached {t}" for t in hairpin]
    finally:
        k.run("delete", "pod", *probes, "self", "--wait=true", "--ignore-not-found", timeout=90)
        k.run("delete", "service", "web", "self", "--ignore-not-found", timeout=60)
        k.run("delete", "deployment", "web", "--wait=true", "--ignore-not-found", timeout=90)


def host_port_pod(node: int) -> str:
    """A busybox pod on node-`node` answering "node-<node>" on port 80, mapped to hostPort 18080."""
    reply = f"HTTP/1.0 200 OK\\r\\n\\r\\nnode-{node}"
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: hostport-{node}, labels: {{app: hostport}}}}
spec:
  nodeName: node-{node}
  containers:
  - name: web
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'while true; do printf "{reply}" | nc -l -p 80; done']
    ports: [{{containerPort: 80, hostPort: 18080}}]
    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
"""


def http_body(url: str) -> str:
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError as e:
        return f"ERR {e}"


def test_a_host_port_is_reachable_at_its_own_node_ip(k, cluster, tmp_path):
    """hostPort through the conflist's portmap: <node IP>:<hostPort> from the host reaches that
    node's pod, though two nodes' pods map the same port on this one host (as the scheduler
    allows on different nodes). When the cluster stops, portmap's shared chains go unless another
    cluster still maps a port (module fixture; net.portmap)."""
    for node in (1, 2):
        apply(k, host_port_pod(node), tmp_path, f"hostport-{node}")
    try:
        wait_for(lambda: all(is_ready(p) for p in get_json(k, "pods", "-l", "app=hostport")["items"]),
                 timeout=90, what="the hostPort pods Ready")
        for node in (1, 2):
            wait_for(lambda n=node: http_body(f"http://{cluster.node_ip(n)}:18080/") == f"node-{n}", timeout=20,
                     what=f"node-{node} IP:18080 answered by node-{node}'s pod")
        dnat = subprocess.run(["iptables", "-t", "nat", "-S", portmap.DNAT_CHAIN], capture_output=True, text=True)
        assert f"-A {portmap.DNAT_CHAIN} " in dnat.stdout  # made by portmap; removed at the end (fixture)
    finally:
        k.run("delete", "pod", "hostport-1", "hostport-2", "--wait=true", "--grace-period=1", "--ignore-not-found",
              timeout=90)
