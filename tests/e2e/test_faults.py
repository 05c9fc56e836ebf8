"""A real cluster under faults: the API server stopped, a node agent killed and restarted.

The data plane must not need the control plane: with the server frozen, every request through
every node's NodePort succeeds; afterwards the agents and proxies pick up changes again. A node
agent killed with SIGKILL and started again re-adopts its pods (same processes).

`pocketkube up` stops the cluster when its API server exits, so the outage is a SIGSTOP: the
server holds its connections and answers nothing, the harder case for clients (no reset tells
them it is gone). POCKETKUBE_FAULT_OUTAGE sets its length (CI: 10 s; the issue's form: 30).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest

from pocketkube.proxy.model import ServiceEntry, ServicePort
from pocketkube.proxy.nftables.proxier import NftablesDataPlane
from pocketkube.proxy.select import nftables_usable
from pocketkube.testing.procs import (
    ClusterProcess,
    Kubectl,
    kubectl_binaries,
    running_cluster,
)
from pocketkube.testing.requires import NFT, NGINX, have_nginx, requires
from pocketkube.testing.waits import get_json, wait_for

OUTAGE = float(os.environ.get("POCKETKUBE_FAULT_OUTAGE", "10"))
pytestmark = [requires(have_nginx(), NGINX), pytest.mark.slow, pytest.mark.timeout(300)]

# A backend that names itself, to see a new pod join the data plane.
WHOAMI = ("import http.server, os\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = os.environ['HOSTNAME'].encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
          "        self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "http.server.ThreadingHTTPServer((os.environ['POD_IP'], 80), H).serve_forever()\n")


def dataplanes() -> list:
    nft = requires(nftables_usable(), NFT)
    return [pytest.param("nftables", marks=nft), "userspace"]


@pytest.fixture(scope="module", params=dataplanes())
def cluster(request):
    with running_cluster("pk-faults-", node_ip_base="127.0.13.0", pod_cidr_base="127.251.0.0/16",
                         service_cidr="127.101.0.0/16", lb_pool="127.205.0.0/24",
                         extra_args=["--dataplane", request.param]) as c:
        c.dataplane = request.param
        c.restarted: list[subprocess.Popen] = []
        yield c
        for agent in c.restarted:  # not children of `up`: stop them first, as `up` stops its own
            agent.send_signal(signal.SIGTERM)
            agent.wait(40)


@pytest.fixture(scope="module")
def k(cluster):
    kc = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    yield kc
    kc.close()


def cmdline(pid: int) -> list[str]:
    return open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1]


def server_pid(cluster: ClusterProcess) -> int:
    """The API server process of this cluster, from /proc."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = cmdline(int(entry))
            except OSError:
                continue
            if args[1:4] == ["-m", "pocketkube", "server"] and str(cluster.data_dir) in args:
                return int(entry)
    raise AssertionError("no API server process")


def container_pids(cluster: ClusterProcess) -> dict[str, int]:
    """pod uid/container -> pid of the running process, as every node recorded it."""
    out = {}
    for state in (cluster.data_dir / "nodes").glob("*/pods/*/*/state.json"):
        current = json.loads(state.read_text())["current"]
        if current.get("exit_code") is None:
            out[f"{state.parent.parent.name}/{state.parent.name}"] = current["pid"]
    return out


def alive(pids: dict[str, int]) -> bool:
    return all(os.path.exists(f"/proc/{pid}") for pid in pids.values())


def get(ip: str, port: int, timeout: float = 2.0) -> str:
    """One HTTP/1.0 GET on a fresh connection; returns the body ('' if the request failed)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return ""
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace") if head.startswith(b"HTTP/1.") and b" 200 " in head[:16] else ""


def attempt(ip: str, port: int, timeout: float = 5.0) -> str:
    """'' if a GET through ip:port succeeded, else why not."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            head = s.recv(16)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return "" if head.startswith(b"HTTP/1.") and b" 200 " in head else f"answer {head!r}"


def load(ips: list[str], port: int, seconds: float, pause: float = 0.05) -> Counter:
    """Requests through every node in turn for `seconds`: (node, '' or the failure) -> count.

    Paced: a new loopback connection per request as fast as possible soon reuses a client port
    whose DNAT conntrack entry is still in TIME_WAIT, and that SYN is lost (see bench/dataplane.py
    TUNING); that is a host tuning matter, not what this test is about.
    """
    results: Counter = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for ip in ips:
            results[(ip, attempt(ip, port))] += 1
        time.sleep(pause)  # on purpose: paced load (see the docstring)
    return results


def failures(results: Counter) -> dict:
    return {key: n for key, n in results.items() if key[1]}


def node_ips(cluster: ClusterProcess) -> list[str]:
    return [cluster.node_ip(i) for i in range(1, cluster.nodes + 1)]


@pytest.fixture(scope="module")
def web(cluster, k):
    """3 nginx pods behind a NodePort Service, serving through every node."""
    k.ok("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80")
    k.ok("expose", "deployment", "web", "--type=NodePort", "--port=80")
    k.ok("rollout", "status", "deployment/web", "--timeout=60s")
    port = get_json(k, "svc", "web")["spec"]["ports"][0]["nodePort"]
    wait_for(lambda: all(get(ip, port) for ip in node_ips(cluster)), what="NodePort serving on every node")
    return port


def test_data_plane_serves_while_the_server_is_stopped_then_changes_flow_again(cluster, k, web):
    pids = container_pids(cluster)
    assert len(pids) == 3
    server = server_pid(cluster)
    os.kill(server, signal.SIGSTOP)
    try:
        results = load(node_ips(cluster), web, OUTAGE)
    finally:
        os.kill(server, signal.SIGCONT)
    assert sum(results.values()) > 5 * OUTAGE * len(node_ips(cluster))
    assert failures(results) == {}, (sum(results.values()), failures(results))
    assert container_pids(cluster) == pids and alive(pids)
    # The agents and proxies are live again: a new pod behind the Service starts and joins the data
    # plane, and a new Service is programmed, on every node.
    k.ok("run", "extra", "--image=python", "--labels=app=web", "--restart=Never", "--",
         "python3", "-c", WHOAMI)
    for ip in node_ips(cluster):
        wait_for(lambda ip=ip: any(get(ip, web) == "extra" for _ in range(12)), timeout=30,
                 what=f"the new pod served through {ip}")
    k.ok("expose", "deployment", "web", "--name=web2", "--type=NodePort", "--port=80")
    port2 = get_json(k, "svc", "web2")["spec"]["ports"][0]["nodePort"]
    wait_for(lambda: all(get(ip, port2) for ip in node_ips(cluster)), what="the new Service on every node")
    k.ok("delete", "pod", "extra", "--wait=true")
    k.ok("delete", "svc", "web2")
    assert alive(pids)


def restart_agent(cluster: ClusterProcess, args: list[str]) -> subprocess.Popen:
    with open(cluster.data_dir / "logs" / "restarted-agent.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    cluster.restarted.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("Node ready: "), line
    return proc


def test_killed_agent_restarts_and_readopts_its_pods_while_serving(cluster, k, web):
    pods = get_json(k, "pods", "-l", "app=web")["items"]
    node = pods[0]["spec"]["nodeName"]
    agent = cluster.agent_pids()[node]
    args = cmdline(agent)
    pids = container_pids(cluster)
    victim_ip = args[args.index("--node-ip") + 1]
    others = [ip for ip in node_ips(cluster) if ip != victim_ip]
    os.kill(agent, signal.SIGKILL)
    # The kernel's rules outlive the agent; a userspace proxy dies with its process.
    serving = node_ips(cluster) if cluster.dataplane == "nftables" else others
    results = load(serving, web, 3)
    assert failures(results) == {}, (sum(results.values()), failures(results))
    restart_agent(cluster, args)
    if cluster.dataplane == "userspace":  # its listeners come back once the proxy has listed Services
        wait_for(lambda: get(victim_ip, web), timeout=10, what="the restarted node's proxy")
    results = load(node_ips(cluster), web, 3)
    assert failures(results) == {}, (sum(results.values()), failures(results))
    assert container_pids(cluster) == pids and alive(pids), "the restarted agent did not re-adopt its pods"
    after = {p["metadata"]["name"]: p for p in
             get_json(k, "pods", "-l", "app=web")["items"]}
    for p in pods:
        now = after[p["metadata"]["name"]]
        assert now["status"]["phase"] == "Running"
        assert now["status"]["containerStatuses"][0]["restartCount"] == \
            p["status"]["containerStatuses"][0]["restartCount"]
    assert "Ready" in k.ok("get", "node", node)
    # The restarted agent still does its job: scaling up places a pod that serves.
    k.ok("scale", "deployment", "web", "--replicas=6")
    k.ok("rollout", "status", "deployment/web", "--timeout=60s")
    wait_for(lambda: len(container_pids(cluster)) == 6, what="6 containers running")
    assert failures(load(node_ips(cluster), web, 1)) == {}


@requires(nftables_usable(), NFT)
async def test_restarted_nftables_plane_keeps_the_old_table_until_its_first_apply():
    """A restarted agent's proxy must not empty its node's table before it has listed Services."""
    vip = "127.101.250.7"
    entry = ServiceEntry(ServicePort("faults", "web", "", "TCP", 80, (vip,), 30999), ())
    model = {(entry.port.key, "TCP"): entry}
    node = (f"faults-{os.getpid()}", "127.0.13.250")
    first = NftablesDataPlane(*node)
    try:
        await first.start()
        await first.apply(model)  # then the agent dies: no stop(), the table stays
        again = NftablesDataPlane(*node)
        await again.start()
        assert vip in nft_table(first.table), "start() emptied the table before the first apply"
        await again.apply({})
        assert vip not in nft_table(first.table)
    finally:
        await first.stop()


def nft_table(name: str) -> str:
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True,
                          check=True).stdout
