"""Service data plane benchmark (issue 4): NodePort throughput and network programming latency.

Throughput: 3 nginx pods (127.244.1.2/3/4:80, child processes with a generated minimal
config) behind a NodePort Service (127.0.1.1:30008); `wrk` straight at one pod is the
baseline, measured in the same run, alternating with the NodePort run. Reported: median rps
of each and their ratio, with keep-alive and with a new connection per request.

Programming latency: 1,000 Services x 10 endpoints programmed, then 100 single-endpoint
changes; each is timed from apply() to the data plane being live, on `--nodes` node agents
sharing the host (each its own plane, applied concurrently: "live on every node").

    .venv/bin/python bench/dataplane.py [--plane nftables|userspace] [--runs 5] [--duration 5]
        [--skip-throughput] [--skip-latency] [--no-tune]

For nftables, connection-per-request runs need conntrack tuning (see TUNING); the sysctls are
set for the duration of the bench only and restored afterwards.

`--runtime containerd` (issue 9, root, nftables): the same throughput through bridge-attached
pods: a `pocketkube up --runtime containerd` cluster (nodes 10.242.0.x, pods 10.240.0.0/16,
Services 10.105.0.0/16, load balancers 10.242.1.0/24, no pod egress), a 3-replica nginx
Deployment (the test image, `pocketkube image load`ed, run with a bench config: no access log,
a 3-byte answer) and a NodePort Service. Four sides, each with the same client shape (3 `wrk`
processes of one thread, the same total connections) at the same three pods:
- direct: wrk i straight at pod i;
- bare DNAT, the kernel's own limit: a table of the bench's own whose one rule DNATs with
  `numgen random mod 3` over the pods, at the node IPs on a port no Service has (wrk i at node i:
  the same kind of destination as a NodePort, a local address; the verdict compares with this)
  and at a VIP of the Service CIDR (routed via the cluster bridge, as ClusterIPs are); the
  plane's tables stay loaded for every side;
- NodePort: wrk i at node i's IP:NodePort, through the plane.
New connections per request leave TIME_WAIT sockets in the pods and conntrack entries behind,
which a later run's reused source ports collide with; so every run (keep-alive too, so the sides
stay alike) gets a client address of its own (the bench table SNATs all traffic to the pods to a
fresh address of the load-balancer pool, routed locally; before the plane's srcnat), waits
until the conntrack count is back to where it was (a cooldown), the order of the sides rotates
from run to run, and the host tuning (TUNING) is the same for all three.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from pocketkube.proxy.model import Endpoint, Model, ServiceEntry, ServicePort

PODS = ["127.244.1.2", "127.244.1.3", "127.244.1.4"]
NODE_NAME, NODE_IP, NODE_PORT = "bench-node-1", "127.0.1.1", 30008
CLUSTER_IP = "127.96.0.8"

# Loopback DNAT with a new connection per request: every flow leaves a conntrack entry in
# TIME_WAIT for 120 s, and wrk soon reuses client ports whose old entry is still there; the
# rate then collapses as the table fills (measured: 43 % falling to 15 % of direct within three
# 4-second runs). The TIME_WAIT timeout is the decisive knob (alone: 99-140 %); the others
# (CLOSE timeout, be_liberal window tracking, tw_reuse, a wider port range) add a little more.
TUNING = {
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
    "net.netfilter.nf_conntrack_tcp_timeout_close": "1",
    "net.netfilter.nf_conntrack_tcp_be_liberal": "1",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.ip_local_port_range": "1024 65000",
}

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    keepalive_requests 1000000;
    server {{
        listen {ip}:80 reuseport backlog=4096;
        location / {{ return 200 "{ip}\\n"; }}
    }}
}}
"""


def make_plane(kind: str, node_name: str, node_ip: str):
    if kind == "nftables":
        from pocketkube.proxy.nftables.proxier import NftablesDataPlane
        return NftablesDataPlane(node_name, node_ip)
    from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
    return UserspaceDataPlane(node_name, node_ip)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


@contextlib.contextmanager
def sysctls(settings: dict[str, str]):
    saved = {}
    try:
        for key, value in settings.items():
            saved[key] = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True,
                                        check=True).stdout.strip()
            subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], check=True)
        yield
    finally:
        for key, value in saved.items():
            subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], check=False)


@contextlib.contextmanager
def nginx_pods(ips: list[str]):
    root = Path(tempfile.mkdtemp(prefix="pk-bench-nginx-"))
    procs = []
    try:
        for ip in ips:
            d = root / ip
            d.mkdir()
            (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, ip=ip))
            procs.append(subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]))
        for ip in ips:
            _wait_http(ip, 80)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_http(ip: str, port: int, timeout: float = 10.0) -> None:
    _wait_http_url(f"http://{ip}:{port}/", timeout)


def _wait_http_url(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["curl", "-sf", "-m", "2", "-o", "/dev/null", url], check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers at {url}")


def wrk(url: str, duration: int, close: bool, connections: int) -> float:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    return _wrk_rps(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, url, close)


def _wrk_rps(out: str, url: str, close: bool) -> float:
    """Requests/sec from wrk's report; socket errors and non-2xx answers are printed."""
    problems = [m.group(0) for m in (re.search(r"Socket errors: .*", out),
                                     re.search(r"Non-2xx or 3xx responses: \d+", out)) if m]
    if problems:
        print(f"    ({url} close={close}: {'; '.join(problems)})")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def wrk_many(urls: list[str], duration: int, close: bool, connections: int) -> float:
    """One single-threaded `wrk` per URL, all at once, `connections` each; their summed rps."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s"] + (["-H", "Connection: close"] if close else [])
    procs = [subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for url in urls]
    total = 0.0
    for url, proc in zip(urls, procs):
        out, err = proc.communicate(timeout=duration + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk {url} failed: {err or out}")
        total += _wrk_rps(out, url, close)
    return total


def web_model(pods: list[str]) -> Model:
    sp = ServicePort("default", "myapp", "", "TCP", 80, (CLUSTER_IP,), NODE_PORT)
    eps = tuple(Endpoint(ip, 80, NODE_NAME) for ip in pods)
    return {(sp.key, sp.protocol): ServiceEntry(sp, eps)}


async def throughput(kind: str, runs: int, duration: int) -> None:
    plane = make_plane(kind, NODE_NAME, NODE_IP)
    await plane.start()
    try:
        await plane.apply(web_model(PODS))
        await asyncio.to_thread(_wait_http, NODE_IP, NODE_PORT)
        for close in (False, True):
            direct, via = [], []
            for _ in range(runs):  # alternate so drift hits both sides alike
                direct.append(await asyncio.to_thread(wrk, f"http://{PODS[0]}/", duration, close, 50))
                via.append(await asyncio.to_thread(wrk, f"http://{NODE_IP}:{NODE_PORT}/", duration, close, 50))
            d, v = statistics.median(direct), statistics.median(via)
            label = "new connection per request" if close else "keep-alive"
            print(f"  {kind} {label:27s} direct {d:9.0f} rps   NodePort {v:9.0f} rps   ratio {v / d:6.1%}"
                  f"   (runs: direct {[round(x) for x in direct]}, NodePort {[round(x) for x in via]})")
    finally:
        await plane.stop()


def big_model(services: int, endpoints: int) -> Model:
    model: Model = {}
    for s in range(services):
        sp = ServicePort("bench", f"svc-{s}", "http", "TCP", 80, (f"127.98.{s // 250}.{s % 250 + 1}",),
                         31000 + s if s < 1000 else 0)
        eps = tuple(Endpoint(f"127.245.{(s * endpoints + e) // 250 % 250}.{(s * endpoints + e) % 250 + 1}",
                             8080, NODE_NAME) for e in range(endpoints))
        model[(sp.key, sp.protocol)] = ServiceEntry(sp, eps)
    return model


async def _timed_apply(plane, model: Model, t0: float, into: list[float]) -> None:
    await plane.apply(model)
    into.append(time.perf_counter() - t0)


async def programming_latency(kind: str, services: int, endpoints: int, changes: int, nodes: int) -> None:
    planes = [make_plane(kind, f"bench-lat-{i}", f"127.0.1.{200 + i}") for i in range(nodes)]
    rng = random.Random(4)
    try:
        for p in planes:
            await p.start()
        model = big_model(services, endpoints)
        t0 = time.perf_counter()
        await asyncio.gather(*(p.apply(model) for p in planes))
        print(f"  {kind}: initial {services} Services x {endpoints} endpoints on {nodes} node(s): "
              f"{time.perf_counter() - t0:.2f} s")
        per_node: list[float] = []
        every_node: list[float] = []
        for i in range(changes):
            key = rng.choice(list(model))
            entry = model[key]
            eps = list(entry.endpoints)
            eps[rng.randrange(len(eps))] = Endpoint(f"127.246.{i // 250}.{i % 250 + 1}", 8080, NODE_NAME)
            model = {**model, key: ServiceEntry(entry.port, tuple(sorted(eps)))}
            t0 = time.perf_counter()
            await asyncio.gather(*(_timed_apply(p, model, t0, per_node) for p in planes))
            every_node.append(time.perf_counter() - t0)
        print(f"  {kind}: {changes} single-endpoint changes, apply() -> live: per node p50 "
              f"{pct(per_node, 50) * 1e3:.1f} ms p99 {pct(per_node, 99) * 1e3:.1f} ms; on all {nodes} nodes "
              f"p50 {pct(every_node, 50) * 1e3:.1f} ms p99 {pct(every_node, 99) * 1e3:.1f} ms "
              f"max {max(every_node) * 1e3:.1f} ms")
    finally:
        for p in planes:
            await p.stop()


# -- container mode (issue 9) -----------------------------------------------------------------

CTR_RANGES = {"node_ip_base": "10.242.0.0", "pod_cidr_base": "10.240.0.0/16", "service_cidr": "10.105.0.0/16",
              "lb_pool": "10.242.1.0/24"}
BARE_VIP = "10.105.255.200"  # in the Service CIDR (routed via the cluster bridge), never allocated here
BARE_NODE_PORT = 30099  # no Service has it
CLIENT_BASE = "10.242.1.100"  # + run number: a fresh client address per run (LB pool, routed locally)
BENCH_TABLE = "pk-bench-dnat"
WRK_PROCS, WRK_CONNECTIONS_EACH = 3, 16
POD_NGINX_CONF = NGINX_CONF.format(dir="/tmp", ip="0.0.0.0").replace('"0.0.0.0\\n"', '"ok\\n"')
WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: bench-web}
spec:
  replicas: 3
  selector: {matchLabels: {app: bench-web}}
  template:
    metadata: {labels: {app: bench-web}}
    spec:
      containers:
      - name: nginx
        image: nginx:bench
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'printf "%s" "$NGINX_CONF" > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf']
        env: [{name: NGINX_CONF, value: CONF}]
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: bench-web}
spec:
  type: NodePort
  selector: {app: bench-web}
  ports: [{port: 80, targetPort: 80, nodePort: 30008}]
"""


def render_bench_table(pods: list[str], nodes: list[str], client: str) -> str:
    """The bare one-rule DNATs (the kernel's limit: at a VIP, and at the node IPs on a port of
    their own, the same kind of destination as a NodePort) and the per-run client SNAT, in one
    transaction.

    The SNAT chain runs before srcnat (priority 90 < 100): the first NAT chain of a hook that
    binds a source NAT wins, so every side's connections to the pods leave from `client`."""
    t = f"ip {BENCH_TABLE}"
    targets = ", ".join(f"{i} : {ip} . 80" for i, ip in enumerate(pods))
    dnat = f"dnat ip to numgen random mod {len(pods)} map {{ {targets} }}"
    return "\n".join([
        f"add table {t}", f"delete table {t}", f"add table {t}",
        f"add chain {t} out {{ type nat hook output priority -100 ; policy accept ; }}",
        f"add rule {t} out ip daddr {BARE_VIP} tcp dport 80 {dnat}",
        f"add rule {t} out ip daddr {{ {', '.join(nodes)} }} tcp dport {BARE_NODE_PORT} {dnat}",
        f"add chain {t} post {{ type nat hook postrouting priority 90 ; policy accept ; }}",
        f"add rule {t} post ip daddr {{ {', '.join(pods)} }} tcp dport 80 snat to {client}",
    ]) + "\n"


def render_client(pods: list[str], client: str) -> str:
    """A new client address for the next run: only the SNAT rule changes (the DNAT chain stays)."""
    t = f"ip {BENCH_TABLE}"
    return f"flush chain {t} post\nadd rule {t} post ip daddr {{ {', '.join(pods)} }} tcp dport 80 snat to {client}\n"


def drop_bench_table() -> None:
    subprocess.run(["nft", "-f", "-"], input=f"add table ip {BENCH_TABLE}\ndelete table ip {BENCH_TABLE}\n",
                   text=True, check=False)


def pod_flows(pods: list[str]) -> Counter:
    """TCP states of the conntrack entries of connections to the pods (whatever side made them);
    other users of the host have entries of their own, so the global count would not do."""
    states: Counter = Counter()
    for ip in pods:
        out = subprocess.run(["conntrack", "-L", "-p", "tcp", "--reply-src", ip], capture_output=True, text=True,
                             check=False).stdout
        states.update(line.split()[3] for line in out.splitlines() if len(line.split()) > 3)
    return states


def cooldown(pods: list[str], timeout: float = 20.0) -> tuple[float, Counter]:
    """Wait until the connections of earlier runs have left the conntrack table (a few probes'
    entries in TIME_WAIT may remain: the tuned timeouts end them within a second or two);
    (seconds waited, the states left)."""
    t0 = time.monotonic()
    while sum((left := pod_flows(pods)).values()) > 10 and time.monotonic() - t0 < timeout:
        time.sleep(0.5)
    return time.monotonic() - t0, left


def container_pods(k) -> list[dict]:
    from pocketkube.testing.waits import get_json, is_ready

    pods = get_json(k, "pods", "-l", "app=bench-web")["items"]
    return pods if len(pods) == 3 and all(is_ready(p) for p in pods) else []


def container_cluster_up(root: Path):
    """A started container cluster with the nginx image loaded and the Deployment + NodePort
    Ready: (cluster, kubectl, pod IPs in node order, node IPs)."""
    from pocketkube.testing import host_images
    from pocketkube.testing.archives import oci_archive
    from pocketkube.testing.procs import ClusterProcess, Kubectl, kubectl_binaries
    from pocketkube.testing.waits import wait_for

    archive = oci_archive(host_images.nginx_image().layout, root / "nginx.tar", name="docker.io/library/nginx:bench")
    cluster = ClusterProcess(root / "data", runtime="containerd", extra_args=["--no-pod-egress"], **CTR_RANGES)
    cluster.start()
    k = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    subprocess.run([sys.executable, "-m", "pocketkube", "image", "load", "--data-dir", str(cluster.data_dir),
                    str(archive)], check=True, capture_output=True, timeout=120)
    k.ok("apply", "-f", "-", input=WEB.replace("value: CONF", f"value: {json.dumps(POD_NGINX_CONF)}"))
    pods = wait_for(lambda: container_pods(k), timeout=120, what="3 nginx pods Ready")
    pods.sort(key=lambda p: (p["spec"].get("nodeName", ""), p["status"]["podIP"]))
    return cluster, k, pods


DNAT_NODES, DNAT_VIP = "bare DNAT at the node IPs", "bare DNAT at a VIP"


def summarize(label: str, rps: dict[str, list[float]]) -> list[str]:
    """Medians per side and the ratios. Paired as well: the sides of one round ran back to back,
    so a round's ratio is immune to drift between rounds (other load on the host); the verdict
    takes the median of those, NodePort against the bare DNAT at the same kind of address."""
    med = {n: statistics.median(v) for n, v in rps.items()}

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rps[a], rps[b]))
    verdict = paired("NodePort", DNAT_NODES)
    lines = [f"{label}: " + ", ".join(f"{n} {m:.0f} rps" + (f" ({m / med['direct']:.1%} of direct)" if n != "direct"
                                                            else "") for n, m in med.items())]
    lines.append(f"  NodePort / {DNAT_NODES}: {verdict:.1%} (median of per-round ratios; target >= 95%: "
                 f"{'met' if verdict >= 0.95 else 'NOT met'}; rounds: "
                 + " ".join(f"{x / y:.0%}" for x, y in zip(rps["NodePort"], rps[DNAT_NODES]))
                 + f"); ratio of medians {med['NodePort'] / med[DNAT_NODES]:.1%}")
    lines.append(f"  per-round medians: NodePort / {DNAT_VIP} {paired('NodePort', DNAT_VIP):.1%}, "
                 + ", ".join(f"{n} / direct {paired(n, 'direct'):.1%}" for n in rps if n != "direct"))
    lines += [f"  {n}: " + " ".join(f"{x:.0f}" for x in v) for n, v in rps.items()]
    return lines


async def container_throughput(runs: int, duration: int) -> list[str]:
    """The four sides, keep-alive then a new connection per request; report lines."""
    root = Path(tempfile.mkdtemp(prefix="pk-bench-dp-ctr-"))
    cluster = k = None
    lines = []
    try:
        cluster, k, pods = await asyncio.to_thread(container_cluster_up, root)
        pod_ips = [p["status"]["podIP"] for p in pods]
        node_ips = [cluster.node_ip(i) for i in range(1, 4)]
        lines.append("pods: " + ", ".join(f"{p['status']['podIP']} on {p['spec'].get('nodeName')}" for p in pods))
        sides = {
            "direct": [f"http://{ip}/" for ip in pod_ips],
            DNAT_NODES: [f"http://{ip}:{BARE_NODE_PORT}/" for ip in node_ips],
            DNAT_VIP: [f"http://{BARE_VIP}/"] * WRK_PROCS,
            "NodePort": [f"http://{ip}:30008/" for ip in node_ips],
        }
        names = list(sides)
        client_n = 0
        subprocess.run(["nft", "-f", "-"], input=render_bench_table(pod_ips, node_ips, CLIENT_BASE), text=True,
                       check=True)
        for urls in sides.values():
            for url in set(urls):
                await asyncio.to_thread(_wait_http_url, url)
        for close in (False, True):
            rps: dict[str, list[float]] = {n: [] for n in names}
            waits: list[tuple[float, Counter]] = []
            first = len(lines)
            for r in range(runs):
                for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                    client_n += 1
                    client = str(ipaddress.ip_address(CLIENT_BASE) + client_n)
                    subprocess.run(["nft", "-f", "-"], input=render_client(pod_ips, client), text=True, check=True)
                    waits.append(await asyncio.to_thread(cooldown, pod_ips))
                    rps[name].append(await asyncio.to_thread(wrk_many, sides[name], duration, close,
                                                             WRK_CONNECTIONS_EACH))
            lines += summarize("new connection per request" if close else "keep-alive", rps)
            worst = max(waits, key=lambda w: sum(w[1].values()))[1]
            lines.append(f"  cooldown before each run: median {statistics.median(w for w, _ in waits):.1f} s, max "
                         f"{max(w for w, _ in waits):.1f} s; conntrack entries to the pods left at the start: at most "
                         f"{sum(worst.values())} {dict(worst)}")
            print("\n".join(lines[first:]), flush=True)
    finally:
        drop_bench_table()
        if k is not None:
            k.close()
        if cluster is not None:
            out = cluster.stop()
            if "stopped" not in out:
                print(f"cluster did not stop cleanly:\n{out}")
        shutil.rmtree(root, ignore_errors=True)
    return lines


async def main_containerd(args) -> None:
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("wrk"):
        sys.exit("bench/dataplane.py --runtime containerd needs root, containerd and wrk (apt-get install containerd "
                 "runc containernetworking-plugins busybox-static nginx-light wrk)")
    tuning = {} if args.no_tune else TUNING
    head = [f"bench/dataplane.py --runtime containerd --runs {args.runs} --duration {args.duration} "
            f"({datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores; medians)",
            f"client shape on every side: {WRK_PROCS} wrk processes x 1 thread x {WRK_CONNECTIONS_EACH} connections",
            f"host sysctls (the same for every side, restored afterwards): {tuning or 'unchanged'}; "
            "the pods' network namespaces keep their defaults"]
    print("\n".join(head), flush=True)
    with sysctls(tuning):
        lines = await container_throughput(args.runs, args.duration)
    text = "\n".join(head + lines) + "\n"
    if args.out:
        args.out.write_text(text)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plane", default="nftables", choices=["nftables", "userspace"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--no-tune", action="store_true", help="leave conntrack/TCP sysctls alone")
    ap.add_argument("--runtime", choices=("process", "containerd"), default="process",
                    help="containerd: throughput through bridge-attached pods of a container cluster (nftables)")
    ap.add_argument("--out", type=Path, default=None, help="with --runtime containerd: also write the report here")
    args = ap.parse_args()
    if args.runtime == "containerd":
        await main_containerd(args)
        return
    if not args.skip_throughput:
        # The same host tuning for both planes: the userspace proxy opens a backend connection
        # per client connection, so it needs the TIME_WAIT reuse and port range as much as DNAT.
        tuning = {} if args.no_tune else TUNING
        print(f"throughput ({args.runs} runs x {args.duration} s, median; sysctls: {tuning or 'unchanged'})")
        with sysctls(tuning), nginx_pods(PODS):
            await throughput(args.plane, args.runs, args.duration)
    if not args.skip_latency:
        print("network programming latency")
        await programming_latency(args.plane, args.services, args.endpoints, args.changes, args.nodes)


if __name__ == "__main__":
    try:
        import uvloop  # the agent runs on uvloop too (cli.main installs it)

        uvloop.install()
    except ImportError:
        pass
    # `timeout`/kill: unwind, so the finally blocks stop the cluster and restore the sysctls.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())
