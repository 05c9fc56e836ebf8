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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://{ip}:{port}/"], check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {ip}:{port}")


def wrk(url: str, duration: int, close: bool, connections: int) -> float:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"    ({url} close={close}: socket errors {errors.group(1)})")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


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
    args = ap.parse_args()
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
    asyncio.run(main())
