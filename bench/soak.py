"""Soak runs (issue 5): connections through a NodePort, and pod churn against a compacting store.

connections: a one-node cluster on the userspace plane; N concurrent TCP connections through a
NodePort to a backend outside the cluster (a Service without selector, its EndpointSlice
written by hand), each proven to pass data, then all closed. The node agent's open file
descriptors and RSS are sampled before (after a warm-up), at the peak and after; they should
come back to within 5 % of the baseline.

churn: an API server compacting every second; pods created and deleted at a steady rate, with
Lease renewals beside them (kine's top writers); the database (file + WAL) and server RSS are
sampled every second. Every pod leaves an Event (FailedScheduling: there are no nodes), so the
store only levels off once Events expire (--event-ttl). Bounded means the last third's peak is
no higher than the middle third's by more than the tolerance.

    .venv/bin/python bench/soak.py connections [--count 10000]
    .venv/bin/python bench/soak.py churn [--seconds 3600] [--rate 5] [--event-ttl 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.testing.procs import ClusterProcess, ServerProcess

PODS = BY_PLURAL[("", "pods")]
SERVICES = BY_PLURAL[("", "services")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
EVENTS = BY_PLURAL[("", "events")]

# A cluster of its own, clear of the defaults and of the other test clusters.
RANGES = {"node_ip_base": "127.0.14.0", "pod_cidr_base": "127.252.0.0/16", "service_cidr": "127.102.0.0/16",
          "lb_pool": "127.206.0.0/24"}
BACKEND_IP, BACKEND_PORT = "127.252.200.1", 8080

# An echo server holding every connection it accepts until the client closes it.
BACKEND = """
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def echo(reader, writer):
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]), backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def raise_nofile(wanted: int) -> None:
    """Allow `wanted` descriptors here and in the children started from now on (root may raise
    the hard limit; others get what the hard limit allows)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
        except (ValueError, OSError):  # no CAP_SYS_RESOURCE, or above fs.nr_open
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connection_capacity() -> int:
    """Connections the agent can proxy at once under the current hard limit (two descriptors each)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return sys.maxsize if hard == resource.RLIM_INFINITY else (hard - 200) // 2


def client_for(kubeconfig: Path) -> Client:
    cfg = yaml.safe_load(kubeconfig.read_text())
    ca = kubeconfig.parent / "pki" / "ca.crt"
    return Client(cfg["clusters"][0]["cluster"]["server"], cfg["users"][0]["user"]["token"], str(ca))


# ---- connections ----
@dataclass
class Sample:
    fds: int
    rss: int


@dataclass
class ConnectionSoak:
    connections: int  # per round, all open at once
    baseline: Sample
    peak: Sample
    rounds: list[Sample]  # after each round, once the descriptors are released
    open_seconds: float  # the last round's

    def fd_drift(self) -> float:
        return max(abs(r.fds - self.baseline.fds) for r in self.rounds) / self.baseline.fds

    def rss_drift(self) -> float:
        """After the last round against the baseline."""
        return self.rounds[-1].rss / self.baseline.rss - 1

    def rss_growth_last(self, rounds: int = 3) -> float:
        """How much RSS still grew over the last `rounds` rounds: ~0 once it has plateaued."""
        return self.rounds[-1].rss / self.rounds[-rounds].rss - 1


async def expose_backend(client: Client) -> int:
    """A NodePort Service without selector, whose one endpoint is the backend; returns its nodePort."""
    svc = await client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "soak"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": BACKEND_PORT}]}}, "default")
    await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "soak-1", "labels": {"kubernetes.io/service-name": "soak"}},
        "addressType": "IPv4", "endpoints": [{"addresses": [BACKEND_IP], "conditions": {"ready": True}}],
        "ports": [{"port": BACKEND_PORT, "protocol": "TCP", "name": ""}]}, "default")
    return svc["spec"]["ports"][0]["nodePort"]


async def round_trip(ip: str, port: int, timeout: float = 10) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    writer.write(b"ping")
    await writer.drain()
    if await asyncio.wait_for(reader.readexactly(4), timeout) != b"ping":
        raise AssertionError("the connection did not pass data")
    return reader, writer


async def wait_serving(ip: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await round_trip(ip, port, 2)
            writer.close()
            return
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def open_many(ip: str, port: int, count: int, batch: int = 500) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, batch):
        pairs = await asyncio.gather(*(round_trip(ip, port) for _ in range(min(batch, count - start))))
        writers += [w for _, w in pairs]
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def settle(pid: int, target: int, timeout: float) -> None:
    """Wait until the process's descriptor count is back to `target` or below (or timeout)."""
    started = time.monotonic()
    while open_fds(pid) > target and time.monotonic() - started < timeout:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # let freed buffers go back before RSS is read


async def connection_soak(cluster: ClusterProcess, count: int, rounds: int) -> ConnectionSoak:
    agent = next(iter(cluster.agent_pids().values()))
    node_ip = cluster.node_ip(1)
    client = client_for(cluster.kubeconfig)
    try:
        node_port = await expose_backend(client)
    finally:
        await client.close()
    await wait_serving(node_ip, node_port)
    await asyncio.sleep(1)
    baseline = Sample(open_fds(agent), rss_bytes(agent))
    peak, after, open_seconds = baseline, [], 0.0
    for _ in range(rounds):
        started = time.monotonic()
        writers = await open_many(node_ip, node_port, count)
        open_seconds = time.monotonic() - started
        peak = Sample(max(peak.fds, open_fds(agent)), max(peak.rss, rss_bytes(agent)))
        await close_all(writers)
        await settle(agent, baseline.fds, 30)
        after.append(Sample(open_fds(agent), rss_bytes(agent)))
    return ConnectionSoak(count, baseline, peak, after, open_seconds)


def start_backend() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, BACKEND_IP, str(BACKEND_PORT)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the soak backend did not start")
    return proc


def userspace_cluster(root: Path) -> ClusterProcess:
    return ClusterProcess(root / "data", nodes=1, extra_args=["--dataplane", "userspace"], **RANGES)


def run_connections(count: int, rounds: int = 1) -> ConnectionSoak:
    raise_nofile(2 * count + 1024)  # before the cluster starts: its agent inherits the hard limit
    if count > connection_capacity():
        raise SystemExit(f"{count} connections need {2 * count + 200} descriptors in the agent; the hard "
                         f"limit allows {connection_capacity()} (raise it: ulimit -Hn, as root)")
    root = Path(tempfile.mkdtemp(prefix="pk-soak-"))
    backend = start_backend()
    cluster = userspace_cluster(root)
    try:
        cluster.start()
        return asyncio.run(connection_soak(cluster, count, rounds))
    finally:
        cluster.stop()
        backend.kill()
        backend.wait()
        shutil.rmtree(root, ignore_errors=True)


# ---- churn ----
@dataclass
class ChurnSoak:
    seconds: float
    pods_created: int
    writes: int
    db_bytes: list[int] = field(default_factory=list)  # one sample a second: pages in use, as SQLite sees them
    wal_bytes: list[int] = field(default_factory=list)  # and its WAL (grows to the checkpoint size, ~4 MB)
    rss: list[int] = field(default_factory=list)
    events_left: int = 0  # Events stored at the end (they expire after the event TTL)

    @staticmethod
    def growth(series: list[int]) -> float:
        """Peak of the last third over the peak of the middle third, minus 1."""
        third = max(1, len(series) // 3)
        middle = max(series[third:2 * third] or series)
        return max(series[-third:]) / middle - 1


def database_bytes(path: Path) -> int:
    """The database's size including what is still only in the WAL (the file catches up at checkpoints),
    less its free pages: what it would take once vacuumed."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages, free, size = (db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
    finally:
        db.close()
    return (pages - free) * size


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"soak": "churn"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def lease(name: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}


async def churn(server: ServerProcess, seconds: float, rate: float, leases: int = 3) -> ChurnSoak:
    client = client_for(server.kubeconfig)
    result = ChurnSoak(seconds, 0, 0)
    pid = server.proc.pid  # type: ignore[union-attr]
    try:
        for i in range(leases):
            await client.create(LEASES, lease(f"node-{i}"), "default")
        started = time.monotonic()
        next_sample = started
        live: list[str] = []
        while (now := time.monotonic()) - started < seconds:
            name = f"churn-{result.pods_created}"
            await client.create(PODS, pod(name), "default")
            live.append(name)
            result.pods_created += 1
            if len(live) > 5:
                await client.delete(PODS, "default", live.pop(0), grace_period=0)
            renewed = {"spec": {"renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}}
            for i in range(leases):  # heartbeats: here one per node per pod created, far more than real
                await client.patch(LEASES, "default", f"node-{i}", renewed)
            result.writes += 2 + leases
            if now >= next_sample:
                result.db_bytes.append(database_bytes(server.data_dir / "state.db"))
                result.wal_bytes.append(file_size(server.data_dir / "state.db-wal"))
                result.rss.append(rss_bytes(pid))
                next_sample += 1
            await asyncio.sleep(max(0.0, started + result.pods_created / rate - time.monotonic()))
        result.events_left = len((await client.list(EVENTS, "default"))[0])
    finally:
        await client.close()
    return result


def run_churn(seconds: float, rate: float, event_ttl: float, compact_interval: float = 1,
              compact_keep: int = 200) -> ChurnSoak:
    root = Path(tempfile.mkdtemp(prefix="pk-churn-"))
    server = ServerProcess(root / "data")
    server.data_dir.mkdir()
    env = {"POCKETKUBE_COMPACT_INTERVAL": str(compact_interval), "POCKETKUBE_COMPACT_KEEP": str(compact_keep),
           "POCKETKUBE_EVENT_TTL": str(event_ttl)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the server process reads them at start
    try:
        server.start(port=0)
        return asyncio.run(churn(server, seconds, rate))
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    conns = sub.add_parser("connections")
    conns.add_argument("--count", type=int, default=10_000)
    conns.add_argument("--rounds", type=int, default=3, help="times all connections are opened and closed")
    ch = sub.add_parser("churn")
    ch.add_argument("--seconds", type=float, default=3600)
    ch.add_argument("--rate", type=float, default=5)
    ch.add_argument("--event-ttl", type=float, default=600, help="seconds (Kubernetes: 3600); the store "
                    "levels off once the first Events expire")
    args = parser.parse_args()
    if args.what == "connections":
        r = run_connections(args.count, args.rounds)
        print(json.dumps(asdict(r), indent=1))
        print(f"fd drift {r.fd_drift():.1%}, RSS drift {r.rss_drift():.1%}, "
              f"RSS growth over the last rounds {r.rss_growth_last(min(3, args.rounds)):.1%}")
    else:
        c = run_churn(args.seconds, args.rate, args.event_ttl)
        print(json.dumps({"seconds": c.seconds, "pods": c.pods_created, "writes": c.writes,
                          "events_left": c.events_left,
                          "db_bytes_first_last_max": [c.db_bytes[0], c.db_bytes[-1], max(c.db_bytes)],
                          "wal_bytes_last_max": [c.wal_bytes[-1], max(c.wal_bytes)],
                          "rss_first_last_max": [c.rss[0], c.rss[-1], max(c.rss)]}, indent=1))
        print(f"db growth {ChurnSoak.growth(c.db_bytes):.1%}, RSS growth {ChurnSoak.growth(c.rss):.1%}")


if __name__ == "__main__":
    main()
