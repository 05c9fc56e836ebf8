"""Cluster DNS benchmark (issue 11): queries/s and latency answered from the cluster zone, and
the time from a Service's create to its name resolving.

dnsperf-style closed loop: `--senders` concurrent UDP clients, each with one query outstanding,
cycling through questions built with dnspython (Services, a headless Service's endpoints, SRV,
PTR, NXDOMAIN). Answers are checked by ID and rcode. The baseline is the same client against a
trivial dnspython/asyncio responder on uvloop that answers every question with a fixed record
(pocketkube.testing.fakedns): the same shape with the lookup removed. Each figure is the median
of `--runs` runs; the cluster is `pocketkube up --runtime process --nodes 1` (its DNS in its own
process, as always). Run as root (port 53):

    .venv/bin/python bench/dns.py [--runs 5] [--seconds 3] [--senders 32]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path and `dns` would be this file:
# dnspython must win.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import yaml  # noqa: E402

from pocketkube.testing.procs import running_cluster  # noqa: E402

RANGES = {"node_ip_base": "127.171.0.0", "pod_cidr_base": "127.172.0.0/16", "service_cidr": "127.173.0.0/16",
          "lb_pool": "127.171.1.0/24"}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


class _Sender(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def load(address: tuple[str, int], questions: list[tuple[str, str]], seconds: float,
               senders: int) -> dict:
    """Closed-loop load; returns qps, p50/p99 (ms), errors (bad rcode or ID) and timeouts."""
    loop = asyncio.get_running_loop()
    wires = [bytearray(dns.message.make_query(n, t).to_wire()) for n, t in questions]
    latencies: list[float] = []
    counts = {"errors": 0, "timeouts": 0}
    deadline = time.perf_counter() + seconds

    async def sender(k: int) -> None:
        transport, proto = await loop.create_datagram_endpoint(_Sender, remote_addr=address)
        i, ident = k * len(wires) // senders, k * 997  # apart: no two senders ask the same in step
        try:
            while time.perf_counter() < deadline:
                wire = wires[i % len(wires)]
                i += 1
                ident = (ident + 1) & 0xFFFF
                struct.pack_into("!H", wire, 0, ident)
                proto.waiter = loop.create_future()
                t0 = time.perf_counter()
                transport.sendto(bytes(wire))
                try:
                    answer = await asyncio.wait_for(proto.waiter, 1.0)
                except TimeoutError:
                    counts["timeouts"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                got_id, flags = struct.unpack("!HH", answer[:4])
                if got_id != ident or (flags & 0xF) not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    counts["errors"] += 1
        finally:
            transport.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(senders)))
    elapsed = time.perf_counter() - t0
    return {"qps": len(latencies) / elapsed, "p50_ms": pct(latencies, 50) * 1e3, "p99_ms": pct(latencies, 99) * 1e3,
            **counts}


def run_load(address: tuple[str, int], questions, seconds: float, senders: int) -> dict:
    """In a child process: the client gets its own core, as dnsperf would."""
    out = subprocess.run([sys.executable, __file__, "--client"], input=json.dumps([list(address), questions, seconds,
                                                                                   senders]),
                         capture_output=True, text=True, check=True, timeout=seconds + 60)
    return json.loads(out.stdout)


def unique_questions(n: int) -> list[tuple[str, str]]:
    """n different pod names (`127-172-x-y.default.pod.cluster.local`): no answer cache can
    serve them, each is a lookup and a render."""
    return [(f"127-172-{i // 250}-{i % 250}.default.pod.cluster.local", "A") for i in range(n)]


def median_of(results: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def kubectl(cluster, *args: str, input: str | None = None) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], input=input,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done.stdout


def dns_endpoint(cluster) -> tuple[str, int]:
    slc = json.loads(kubectl(cluster, "get", "endpointslice", "-n", "kube-system", "kube-dns", "-o", "json"))
    return slc["endpoints"][0]["addresses"][0], slc["ports"][0]["port"]


def resolves(address: tuple[str, int], name: str) -> bool:
    q = dns.message.make_query(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(q.to_wire(), address)
        try:
            data, _ = s.recvfrom(4096)
        except TimeoutError:
            return False
    return dns.message.from_wire(data).rcode() == dns.rcode.NOERROR and bool(dns.message.from_wire(data).answer)


async def create_to_resolve(cluster, address: tuple[str, int], n: int) -> tuple[list[float], list[float]]:
    """(create → resolving, create round trip) in seconds, for n Services."""
    from pocketkube.api.resources import BY_PLURAL
    from pocketkube.client.rest import Client

    services = BY_PLURAL[("", "services")]
    token = yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]["token"]
    client = Client(cluster.url, token, str(cluster.data_dir / "pki" / "ca.crt"))
    to_resolve, round_trip = [], []
    try:
        for i in range(n):
            name = f"late-{i}"
            body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"ports": [{"port": 80}]}}
            t0 = time.perf_counter()
            await client.create(services, body, "default")
            round_trip.append(time.perf_counter() - t0)
            while not resolves(address, f"{name}.default.svc.cluster.local"):
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"{name} did not resolve within 10 s")
                await asyncio.sleep(0.002)
            to_resolve.append(time.perf_counter() - t0)
    finally:
        await client.close()
    return to_resolve, round_trip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--senders", type=int, default=32)
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the load, from stdin
    args = p.parse_args()
    if args.client:
        import uvloop

        address, questions, seconds, senders = json.loads(sys.stdin.read())
        print(json.dumps(uvloop.run(load(tuple(address), [tuple(q) for q in questions], seconds, senders))))
        return
    if os.geteuid() != 0:
        sys.exit("bench/dns.py: run as root (the cluster DNS listens on port 53)")
    with running_cluster("pk-dnsbench-", nodes=1, runtime="process", **RANGES) as cluster:
        address = dns_endpoint(cluster)
        manifest = []
        for i in range(args.services):
            manifest.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                             "spec": {"ports": [{"name": "http", "port": 80}]}})
        manifest.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless"},
                         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
        manifest.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"name": "headless-1", "labels": {"kubernetes.io/service-name": "headless"}},
                         "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                         "endpoints": [{"addresses": [f"127.172.1.{i}"], "conditions": {"ready": True}}
                                       for i in range(1, 6)]})
        kubectl(cluster, "create", "--validate=false", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))
        questions = [(f"svc-{i}.default.svc.cluster.local", "A") for i in range(args.services)]
        questions += [("headless.default.svc.cluster.local", "A"), ("_http._tcp.svc-0.default.svc.cluster.local", "SRV"),
                      ("kubernetes.default.svc.cluster.local", "AAAA"), ("missing.default.svc.cluster.local", "A"),
                      ("1.0.173.127.in-addr.arpa", "PTR")]
        deadline = time.monotonic() + 10
        while not resolves(address, "headless.default.svc.cluster.local"):
            if time.monotonic() > deadline:
                sys.exit("the bench's Services did not resolve")
            time.sleep(0.01)
        baseline = subprocess.Popen([sys.executable, "-m", "pocketkube.testing.fakedns", "--listen", "127.171.0.250:0",
                                     "--fixed", "192.0.2.1"], stdout=subprocess.PIPE, text=True)
        try:
            line = baseline.stdout.readline().split()[1]
            base_address = (line.rsplit(":", 1)[0], int(line.rsplit(":", 1)[1]))
            zone_runs, base_runs, cold_runs = [], [], []
            unique = unique_questions(60_000)
            for _ in range(args.runs):  # interleaved: both see the same machine
                zone_runs.append(run_load(address, questions, args.seconds, args.senders))
                base_runs.append(run_load(base_address, questions, args.seconds, args.senders))
                cold_runs.append(run_load(address, unique, args.seconds, args.senders))
        finally:
            baseline.terminate()
            baseline.wait()
        to_resolve, round_trip = asyncio.run(create_to_resolve(cluster, address, 10))
    zone, base, cold = median_of(zone_runs), median_of(base_runs), median_of(cold_runs)
    print(f"cluster DNS  : {zone['qps']:8.0f} q/s  p50 {zone['p50_ms']:.2f} ms  p99 {zone['p99_ms']:.2f} ms  "
          f"errors {zone['errors']:.0f} timeouts {zone['timeouts']:.0f}")
    print(f"baseline     : {base['qps']:8.0f} q/s  p50 {base['p50_ms']:.2f} ms  p99 {base['p99_ms']:.2f} ms  "
          f"errors {base['errors']:.0f} timeouts {base['timeouts']:.0f}")
    print(f"uncached     : {cold['qps']:8.0f} q/s  p50 {cold['p50_ms']:.2f} ms  p99 {cold['p99_ms']:.2f} ms  "
          f"errors {cold['errors']:.0f} timeouts {cold['timeouts']:.0f}  (every query a different name)")
    print(f"ratio        : q/s {zone['qps'] / base['qps']:.2f}x baseline, p99 {zone['p99_ms'] / base['p99_ms']:.2f}x")
    print(f"create→resolve: median {statistics.median(to_resolve) * 1e3:.0f} ms, max {max(to_resolve) * 1e3:.0f} ms "
          f"(create round trip median {statistics.median(round_trip) * 1e3:.0f} ms: "
          f"{statistics.median(to_resolve) / statistics.median(round_trip):.1f}x)")
    print(f"targets      : >= 10000 q/s {'met' if zone['qps'] >= 10000 else 'MISSED'}, p99 <= 5 ms "
          f"{'met' if zone['p99_ms'] <= 5 else 'MISSED'}, create→resolve <= 1 s "
          f"{'met' if max(to_resolve) <= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
