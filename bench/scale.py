"""Scale benchmark (issue 13): hollow nodes under a ClusterLoader2-shaped load.

K `pocketkube agent --hollow N` processes (default 10 × 100 = 1,000 simulated nodes, each with
its own identity, Lease and pod watch) against one `pocketkube server` (SQLite). The load is
ClusterLoader2's "load" shape: one namespace per 100 nodes, Deployments of 250 (big), 30
(medium) and 5 (small) pods, about a quarter of the pods in big and a quarter in medium ones,
PODS_PER_NODE (30) pods per node in all, created at --qps pods/s. Reported, against SLOs:

  - API call latency p99 per verb (server's apiserver_request_duration_seconds, as CL2's
    APIResponsivenessPrometheus): mutating single-object ≤ 1 s, LIST ≤ 30 s;
  - pod startup p99 (creation → Running seen by the bench's own watch, ≤ 5 s);
  - API server RSS and datastore size per 1,000 pods, server CPU;

all next to a baseline run in the same invocation: --baseline-nodes (10) hollow nodes, one
process, the same pod rate and pods per node. Run:

    .venv/bin/python bench/scale.py [--procs 10 --nodes 100] [--qps 10] [--out bench/results-scale.txt]

(env POCKETKUBE_SCALE_PROCS / POCKETKUBE_SCALE_NODES set the defaults; `make bench` runs a small
size). Addresses: hollow node IPs and fake pod IPs in 10.236.0.0/16 (nothing is routed or bound),
Services 10.239.0.0/16, the API server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.testing.procs import ServerProcess, processes_under, read_until

NODES = BY_PLURAL[("", "nodes")]
PODS = BY_PLURAL[("", "pods")]
NAMESPACES = BY_PLURAL[("", "namespaces")]
DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
PODS_PER_NODE = 30
NODES_PER_NAMESPACE = 100
BIG, MEDIUM, SMALL = 250, 30, 5
MUTATING_P99_SLO_S = 1.0
LIST_P99_SLO_S = 30.0
STARTUP_P99_SLO_S = 5.0
SERVICE_CIDR = "10.239.0.0/16"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plan(total_pods: int) -> list[int]:
    """Deployment sizes, CL2 load's mix: ~1/4 of pods in big, ~1/4 in medium, the rest small."""
    big = total_pods // 4 // BIG
    medium = total_pods // 4 // MEDIUM
    small = math.ceil((total_pods - big * BIG - medium * MEDIUM) / SMALL)
    sizes = [BIG] * big + [MEDIUM] * medium + [SMALL] * small
    # Interleave sizes as CL2 does (it creates every kind in parallel), so that no phase is all big.
    out, queues = [], [list(q) for q in ([BIG] * big, [MEDIUM] * medium, [SMALL] * small)]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop())
    assert sorted(out) == sorted(sizes)
    return out


def histogram_p99(families, verbs: tuple[str, ...]) -> dict[str, float]:
    """p99 per verb from apiserver_request_duration_seconds (summed over resources), interpolated
    inside the bucket as Prometheus' histogram_quantile does."""
    buckets: dict[str, dict[float, float]] = {}
    for fam in families:
        if fam.name != "apiserver_request_duration_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_bucket") and s.labels["verb"] in verbs:
                le = float(s.labels["le"])
                per = buckets.setdefault(s.labels["verb"], {})
                per[le] = per.get(le, 0.0) + s.value
    out = {}
    for verb, per in buckets.items():
        bounds = sorted(per)
        total = per[bounds[-1]]
        if not total:
            continue
        rank, lower, below = 0.99 * total, 0.0, 0.0
        for b in bounds:
            if per[b] >= rank:
                out[verb] = b if math.isinf(b) else lower + (b - lower) * (rank - below) / max(per[b] - below, 1e-9)
                if math.isinf(b):
                    out[verb] = lower  # beyond the last bucket: at least that
                break
            lower, below = b, per[b]
    return out


@dataclass
class Result:
    label: str
    nodes: int
    pods: int
    nodes_ready_s: float = 0.0
    load_s: float = 0.0
    startup: list[float] = field(default_factory=list)
    p99: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    list_pods_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_mb: float = 0.0
    db_mb_before: float = 0.0
    db_mb: float = 0.0
    server_cpu_s: float = 0.0
    cm_cpu_s: float = 0.0
    agents_cpu_s: float = 0.0


class PodWatch:
    """The bench's own watch of every pod: when each was first seen and when seen Running."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.task: asyncio.Task | None = None

    async def run(self, rv: str) -> None:
        while True:
            try:
                async for _type, pod in self.client.watch(PODS, "", rv):
                    now = time.monotonic()
                    rv = pod["metadata"].get("resourceVersion", rv)
                    uid = pod["metadata"].get("uid")
                    if not uid:
                        continue
                    self.seen.setdefault(uid, now)
                    if (pod.get("status") or {}).get("phase") == "Running":
                        self.running.setdefault(uid, now)
            except errors.ApiError:
                await asyncio.sleep(0.2)


def node_names(procs: int, nodes: int) -> list[list[str]]:
    return [[f"hollow-{k}-{i}" for i in range(nodes)] for k in range(procs)]


async def run_size(label: str, procs: int, nodes: int, qps: float, pods_per_node: int) -> Result:
    total_nodes = procs * nodes
    if procs > 15 or nodes > 250:
        raise SystemExit("at most 15 processes of 250 nodes (10.236.0.0/16: a /24 of node IPs and a /20 of "
                         "pod IPs each)")
    res = Result(label, total_nodes, total_nodes * pods_per_node)
    root = Path(tempfile.mkdtemp(prefix="pk-scale-"))
    data = root / "data"
    names = node_names(procs, nodes)
    tokens = {n: secrets.token_urlsafe(24) for group in names for n in group}
    (data / "pki").mkdir(parents=True)
    (data / "pki").chmod(0o700)
    tok_file = data / "pki" / "tokens.yaml"
    tok_file.write_text(yaml.safe_dump({"admin": secrets.token_urlsafe(32), "nodes": tokens}))
    tok_file.chmod(0o600)
    # The control plane runs as its own process (as kube-controller-manager and kube-scheduler do):
    # the server's CPU and RSS are then the API server's alone.
    server = ServerProcess(data, extra_args=["--service-cidr", SERVICE_CIDR, "--no-control-plane"])
    agents: list[subprocess.Popen] = []
    logs = []
    try:
        server.start(timeout=60)
        assert server.proc is not None
        spid = server.proc.pid
        issued = yaml.safe_load(tok_file.read_text())
        (root / "cm-token").write_text(issued["controlplane"])
        (root / "sched-token").write_text(issued["scheduler"])
        log = open(root / "controller-manager.log", "wb")
        logs.append(log)
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "pocketkube", "controller-manager", "--server", server.url,
             "--token-file", str(root / "cm-token"), "--scheduler-token-file", str(root / "sched-token"),
             "--ca-file", str(server.ca_file), "--service-account-private-key-file", str(data / "pki" / "sa.key")],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))
        t0 = time.monotonic()
        for k, group in enumerate(names):
            tf = root / f"tokens-{k}.yaml"
            tf.write_text(yaml.safe_dump({n: tokens[n] for n in group}))
            log = open(root / f"agent-{k}.log", "wb")
            logs.append(log)
            agents.append(subprocess.Popen(
                [sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token-file", str(tf),
                 "--ca-file", str(server.ca_file), "--hollow", str(nodes), "--hollow-prefix", f"hollow-{k}-",
                 "--node-ip", f"10.236.{k}.1", "--pod-cidr", f"10.236.{16 * (k + 1)}.0/20",
                 "--data-dir", str(root / f"agent-{k}")],
                stdout=subprocess.PIPE, stderr=log, start_new_session=True))
        for a in agents[1:]:
            if not read_until(a, lambda line: line.startswith("Node ready"), 60 + nodes):
                raise RuntimeError(f"hollow agent did not start; see {root}/agent-*.log")
        res.nodes_ready_s = time.monotonic() - t0
        client = Client(server.url, server.token(), str(server.ca_file), timeout=120)
        try:
            await _load(client, res, spid, agents, qps, server, root)
        finally:
            await client.close()
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGTERM)
        for a in agents:
            try:
                a.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait()
            if a.stdout:
                a.stdout.close()
        for log in logs:
            log.close()
        server.stop(timeout=30)
        left = processes_under(root)
        if not os.environ.get("POCKETKUBE_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left behind: {left}"
    return res


def _db_mb(data: Path) -> float:
    return sum(p.stat().st_size for p in data.glob("state.db*")) / 2**20


async def _load(client: Client, res: Result, spid: int, procs: list[subprocess.Popen], qps: float,
                server: ServerProcess, root: Path) -> None:
    """procs: the controller-manager, then the hollow agents."""
    cm, agents = procs[0], procs[1:]
    nodes, _ = await client.list(NODES)
    assert len(nodes) == res.nodes, f"{len(nodes)} nodes registered of {res.nodes}"
    res.rss_idle_mb = rss_mb(spid)
    res.db_mb_before = _db_mb(server.data_dir)
    _, rv = await client.list(PODS)
    watch = PodWatch(client)
    watch.task = asyncio.create_task(watch.run(rv))
    namespaces = [f"load-{i}" for i in range(max(1, res.nodes // NODES_PER_NAMESPACE))]
    for ns in namespaces:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cpu0, cm_cpu0 = cpu_s(spid), cpu_s(cm.pid)
    agents_cpu0 = sum(cpu_s(a.pid) for a in agents)
    profiles = []
    if out := os.environ.get("POCKETKUBE_SCALE_PROFILE"):  # py-spy the API server and the control plane
        for pid, name in ((spid, "apiserver"), (cm.pid, "controlplane")):
            profiles.append(subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                                              "-f", "raw", "-o", f"{out}.{res.label}.{name}", "-r", "50"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    start = time.monotonic()
    created = 0
    for i, size in enumerate(plan(res.pods)):
        ns = namespaces[i % len(namespaces)]
        labels = {"app": f"load-{i}"}
        await client.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"load-{i}", "namespace": ns},
            "spec": {"replicas": size, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                                                           "resources": {"requests": {"cpu": "1m",
                                                                                      "memory": "1Mi"}}}]}}}})
        created += size
        # Pace by pods: the next Deployment waits until the rate allows its predecessor's pods.
        await asyncio.sleep(max(0.0, start + created / qps - time.monotonic()))
    deadline = time.monotonic() + 120 + res.pods / 50
    while len(watch.running) < created and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    res.load_s = time.monotonic() - start
    res.server_cpu_s = cpu_s(spid) - cpu0
    res.cm_cpu_s = cpu_s(cm.pid) - cm_cpu0
    for profile in profiles:
        profile.send_signal(signal.SIGINT)
        profile.wait(30)
    res.agents_cpu_s = sum(cpu_s(a.pid) for a in agents) - agents_cpu0
    watch.task.cancel()
    await asyncio.gather(watch.task, return_exceptions=True)
    res.startup = [watch.running[u] - watch.seen[u] for u in watch.running]
    missing = created - len(watch.running)
    if missing:
        res.startup += [float("inf")] * missing
    t = time.perf_counter()
    pods, _ = await client.list(PODS)
    res.list_pods_s = time.perf_counter() - t
    assert len(pods) >= len(watch.running)
    text = await client.request("GET", "/metrics")
    families = list(text_string_to_metric_families(text if isinstance(text, str) else text.decode()))
    res.p99 = histogram_p99(families, (*MUTATING, "LIST", "GET"))
    for fam in families:
        if fam.name == "apiserver_request":
            for s in fam.samples:
                if s.name == "apiserver_request_total" and s.labels["verb"] != "WATCH":  # counted at close
                    res.counts[s.labels["verb"]] = res.counts.get(s.labels["verb"], 0) + int(s.value)
    res.rss_mb = rss_mb(spid)
    res.db_mb = _db_mb(server.data_dir)


def report(runs: list[Result], qps: float, pods_per_node: int) -> str:
    base = runs[0]
    lines = [f"# bench/scale.py  {datetime.now().isoformat(timespec='seconds')}  host cores: {os.cpu_count()}",
             f"# pods created at {qps:g}/s, {pods_per_node} pods/node; ratios are to the baseline "
             f"({base.nodes} nodes, same run)", ""]
    for r in runs:
        per_k = 1000 / max(1, r.pods)
        mut = max((r.p99.get(v, 0.0) for v in MUTATING), default=0.0)
        lines += [
            f"## {r.label}: {r.nodes} hollow nodes, {r.pods} pods",
            f"nodes registered and Ready        {r.nodes_ready_s:8.1f} s",
            f"load phase (create → all Running) {r.load_s:8.1f} s   (pure pacing: {r.pods / qps:.1f} s)",
            f"pod startup p50 / p99             {pct(r.startup, 50):8.2f} / {pct(r.startup, 99):.2f} s"
            f"   (SLO p99 ≤ {STARTUP_P99_SLO_S:g} s)",
            "API p99 by verb (s)               " + "  ".join(f"{v} {r.p99[v]:.3f}" for v in sorted(r.p99)),
            f"  mutating max p99 {mut:.3f} s (SLO ≤ {MUTATING_P99_SLO_S:g} s); LIST p99 {r.p99.get('LIST', 0):.3f} s "
            f"(SLO ≤ {LIST_P99_SLO_S:g} s); one LIST of all pods {r.list_pods_s:.2f} s",
            "requests by verb                  " + "  ".join(f"{v} {n}" for v, n in sorted(r.counts.items())),
            f"server RSS idle / loaded          {r.rss_idle_mb:8.0f} / {r.rss_mb:.0f} MB   "
            f"(+{(r.rss_mb - r.rss_idle_mb) * per_k:.0f} MB per 1,000 pods)",
            f"datastore before / after          {r.db_mb_before:8.1f} / {r.db_mb:.1f} MB  "
            f"(+{(r.db_mb - r.db_mb_before) * per_k:.1f} MB per 1,000 pods)",
            f"CPU during load: API server {r.server_cpu_s:.1f} s, controller-manager+scheduler {r.cm_cpu_s:.1f} s, "
            f"hollow agents {r.agents_cpu_s:.1f} s",
            ""]
    for r in runs[1:]:
        lines += [f"## {r.label} vs baseline (ratios)",
                  f"pod startup p99 ×{pct(r.startup, 99) / max(pct(base.startup, 99), 1e-9):.2f}; "
                  + "; ".join(f"{v} p99 ×{r.p99[v] / base.p99[v]:.2f}" for v in sorted(r.p99) if base.p99.get(v))
                  + f"; server CPU per pod ×{(r.server_cpu_s / r.pods) / max(base.server_cpu_s / base.pods, 1e-9):.2f}"
                  f"; RSS per 1,000 pods ×{((r.rss_mb - r.rss_idle_mb) / r.pods) / max((base.rss_mb - base.rss_idle_mb) / base.pods, 1e-9):.2f}",
                  ""]
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=int(os.environ.get("POCKETKUBE_SCALE_PROCS", "10")))
    ap.add_argument("--nodes", type=int, default=int(os.environ.get("POCKETKUBE_SCALE_NODES", "100")),
                    help="hollow nodes per process")
    ap.add_argument("--qps", type=float, default=10.0, help="pods created per second")
    ap.add_argument("--pods-per-node", type=int, default=PODS_PER_NODE)
    ap.add_argument("--baseline-nodes", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = [await run_size("baseline", 1, args.baseline_nodes, args.qps, args.pods_per_node),
            await run_size("scale", args.procs, args.nodes, args.qps, args.pods_per_node)]
    text = report(runs, args.qps, args.pods_per_node)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
