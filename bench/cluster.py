"""Cluster benchmark (issue 3): `up` → 3 nodes Ready, pod start-up of a 100-replica Deployment, RSS.

Every time is reported next to a baseline measured in the same run on the same machine (a bare
Python start and a Python start that imports aiohttp, what each of our processes pays before doing
anything; a single pod's start-up for the 100-pod figure), so results compare across machines.
Medians over --runs. Run:

    .venv/bin/python bench/cluster.py [--runs 3] [--replicas 100]

The cluster uses address ranges of its own (nodes 127.0.11.x, pods 127.249.0.0/16, Services
127.99.0.0/16, load balancers 127.203.0.0/24) and everything is stopped and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.testing.procs import ClusterProcess, kubectl_binaries, processes_under

NODES = BY_PLURAL[("", "nodes")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
PODS = BY_PLURAL[("", "pods")]
DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
NODE_COUNT = 3
UP_TARGET_S = 2.0
POD_P99_TARGET_S = 1.0
AGENT_RSS_TARGET_MB = 50
SERVER_RSS_TARGET_MB = 150


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_pid(data_dir: Path) -> int:
    """The `pocketkube server` process of this data dir, found by its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server" in argv and str(data_dir).encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no server process for {data_dir}")


def process_start_s(code: str, repeat: int = 3) -> float:
    """Median wall time of `python -c code`: the floor under every process `up` starts."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def new_cluster(data_dir: Path) -> ClusterProcess:
    return ClusterProcess(data_dir, nodes=NODE_COUNT, node_ip_base="127.0.11.0", pod_cidr_base="127.249.0.0/16",
                          service_cidr="127.99.0.0/16", lb_pool="127.203.0.0/24")


def client_for(kubeconfig: Path) -> Client:
    cfg = yaml.safe_load(kubeconfig.read_text())
    ca_file = kubeconfig.parent / "pki" / "ca.crt"
    return Client(cfg["clusters"][0]["cluster"]["server"], cfg["users"][0]["user"]["token"], str(ca_file))


def ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def renewed_since(lease: dict, wall_start: float) -> bool:
    renew = (lease.get("spec") or {}).get("renewTime")
    return bool(renew) and datetime.fromisoformat(renew).timestamp() >= wall_start


async def wait_nodes_ready_via_api(kubeconfig: Path, t0: float, wall_start: float) -> float:
    """Seconds from t0 until the API lists NODE_COUNT Ready nodes whose agents renewed their
    Lease after wall_start (a resumed cluster's Nodes are still Ready from the last run)."""
    while not kubeconfig.exists():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.02)  # the server writes the file in one go; let it finish
    client = client_for(kubeconfig)
    try:
        while True:
            try:
                nodes, _ = await client.list(NODES)
                leases, _ = await client.list(LEASES, "kube-node-lease")
                fresh = {lease["metadata"]["name"] for lease in leases if renewed_since(lease, wall_start)}
                if sum(ready(n) and n["metadata"]["name"] in fresh for n in nodes) >= NODE_COUNT:
                    return time.perf_counter() - t0
            except errors.ApiError:
                pass
            await asyncio.sleep(0.02)
    finally:
        await client.close()


def kubectl_sees_ready_nodes(kubeconfig: Path, cache: Path) -> bool:
    binary = next(iter(kubectl_binaries().values()))
    out = subprocess.run([binary, "get", "nodes", "--no-headers"], capture_output=True, text=True, check=False,
                         env={"KUBECONFIG": str(kubeconfig), "HOME": str(cache), "PATH": "/usr/bin:/bin"})
    rows = [line.split() for line in out.stdout.splitlines()]
    return sum(1 for r in rows if len(r) > 1 and r[1] == "Ready") >= NODE_COUNT


async def measure_up(cluster: ClusterProcess, cache: Path) -> dict:
    """Launch `up`; times to its "Press Ctrl-C" line, to 3 Ready nodes in the API, and in kubectl."""
    cluster.output.clear()
    cluster.kubeconfig.unlink(missing_ok=True)  # a resumed cluster's old file names an old port
    wall_start, t0 = time.time(), time.perf_counter()
    api_ready = asyncio.create_task(wait_nodes_ready_via_api(cluster.kubeconfig, t0, wall_start))
    await asyncio.to_thread(cluster.start)
    t_press = time.perf_counter() - t0
    t_api = await asyncio.wait_for(api_ready, 30)
    while not await asyncio.to_thread(kubectl_sees_ready_nodes, cluster.kubeconfig, cache):
        await asyncio.sleep(0.02)
    return {"press": t_press, "api": t_api, "kubectl": time.perf_counter() - t0}


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": "nginx",
                                                           "ports": [{"containerPort": 80}]}]}}}}


async def pods_ready_latencies(client: Client, name: str, replicas: int, timeout: float = 120) -> list[float]:
    """Create a Deployment; per pod, seconds from the create call to its Ready seen by a watch."""
    _, rv = await client.list(PODS, "default", label_selector=f"app={name}")
    seen: dict[str, float] = {}

    async def watch() -> None:
        async for kind, pod in client.watch(PODS, "default", rv, label_selector=f"app={name}"):
            if kind in ("ADDED", "MODIFIED") and ready(pod):
                seen.setdefault(pod["metadata"]["name"], time.perf_counter())
                if len(seen) == replicas:
                    return
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)  # the watch is open before the create
    t0 = time.perf_counter()
    await client.create(DEPLOYMENTS, deployment(name, replicas), "default")
    await asyncio.wait_for(watcher, timeout)
    return [t - t0 for t in seen.values()]


async def delete_and_wait(client: Client, name: str, timeout: float = 120) -> None:
    await client.delete(DEPLOYMENTS, "default", name, propagation="Foreground")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods, _ = await client.list(PODS, "default", label_selector=f"app={name}")
        if not pods:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"pods of {name} still present after {timeout}s")


async def pods_and_memory(cluster: ClusterProcess, replicas: int) -> dict:
    client = client_for(cluster.kubeconfig)
    try:
        single = await pods_ready_latencies(client, "bench-one", 1)
        await delete_and_wait(client, "bench-one")
        many = await pods_ready_latencies(client, "bench-many", replicas)
        await asyncio.sleep(1)  # let status writes and probes settle before reading RSS
        agents = {name: rss_mb(pid) for name, pid in cluster.agent_pids().items()}
        server = rss_mb(server_pid(cluster.data_dir))
        await delete_and_wait(client, "bench-many")
    finally:
        await client.close()
    return {"single": single[0], "p50": statistics.median(many), "p99": pct(many, 99), "max": max(many),
            "agent_rss_max": max(agents.values()), "server_rss": server}


def stop(cluster: ClusterProcess, root: Path) -> None:
    out = cluster.stop()
    leftovers = processes_under(root)
    if "stopped" not in out or leftovers:
        raise RuntimeError(f"cluster did not stop cleanly: {leftovers}\n{out}")


async def run_once(replicas: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-cluster-"))
    cache = root / "home"
    cache.mkdir()
    result = {"py_bare": process_start_s("pass"), "py_aiohttp": process_start_s("import aiohttp")}
    cluster = new_cluster(root / "data")
    try:
        cold = await measure_up(cluster, cache)
        result.update({f"cold_{k}": v for k, v in cold.items()})
        result.update(await pods_and_memory(cluster, replicas))
        stop(cluster, root)
        warm = await measure_up(cluster, cache)  # resume the same data dir
        result.update({f"warm_{k}": v for k, v in warm.items()})
        stop(cluster, root)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return result


def report(results: list[dict], replicas: int) -> None:
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    base = med["py_aiohttp"]

    def up_line(label: str, key: str) -> str:
        return (f"{label}: 'Press Ctrl-C' {med[key + '_press']:.2f} s ({med[key + '_press'] / base:.1f}x), "
                f"3 Ready in API {med[key + '_api']:.2f} s ({med[key + '_api'] / base:.1f}x), "
                f"in kubectl {med[key + '_kubectl']:.2f} s   target <= {UP_TARGET_S:.0f} s")
    print(f"runs={len(results)} (medians), {NODE_COUNT} nodes, {replicas} replicas")
    print(f"baseline process start: python -c pass {med['py_bare'] * 1e3:.0f} ms, "
          f"python -c 'import aiohttp' {base * 1e3:.0f} ms (= 1x below)")
    print(up_line("up, first start (new PKI)", "cold"))
    print(up_line("up, resume same data dir", "warm"))
    single = med["single"]
    print(f"baseline pod start-up (1-replica Deployment, create -> Ready in a watch): {single * 1e3:.0f} ms")
    print(f"{replicas}-replica Deployment, create -> each pod Ready: p50 {med['p50'] * 1e3:.0f} ms "
          f"({med['p50'] / single:.1f}x single), p99 {med['p99'] * 1e3:.0f} ms ({med['p99'] / single:.1f}x), "
          f"max {med['max'] * 1e3:.0f} ms   target p99 <= {POD_P99_TARGET_S * 1e3:.0f} ms")
    print(f"RSS with {replicas} pods: largest agent {med['agent_rss_max']:.0f} MB (target <= {AGENT_RSS_TARGET_MB}), "
          f"server {med['server_rss']:.0f} MB (target <= {SERVER_RSS_TARGET_MB})")
    for i, r in enumerate(results):
        print(f"  run {i + 1}: " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--replicas", type=int, default=100)
    args = p.parse_args()
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        sys.exit("bench/cluster.py needs nginx (nginx-light) for the pods")
    results = [asyncio.run(run_once(args.replicas)) for _ in range(args.runs)]
    report(results, args.replicas)


if __name__ == "__main__":
    main()
