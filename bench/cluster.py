"""Cluster benchmark (issues 3 and 9): `up` → 3 nodes Ready, pod start-up of a 100-replica Deployment, RSS.

Every time is reported next to a baseline measured in the same run on the same machine (a bare
Python start and a Python start that imports aiohttp, what each of our processes pays before doing
anything; a single pod's start-up for the 100-pod figure), so results compare across machines.
Medians over --runs. Run:

    .venv/bin/python bench/cluster.py [--runs 3] [--replicas 100] [--runtime process|containerd]

The process-runtime cluster uses address ranges of its own (nodes 127.0.11.x, pods
127.249.0.0/16, Services 127.99.0.0/16, load balancers 127.203.0.0/24) and everything is stopped
and removed afterwards.

`--runtime containerd` (issue 9, root): the same cluster in container mode (each node its own
containerd; nodes 10.241.0.x, pods 10.243.0.0/16, Services 10.104.0.0/16, load balancers
10.241.1.0/24, no pod egress). `up` is timed for a new data dir (PKI, containerd's first start,
the pause image imported into every node) and for a resumed one (image present), each against
`up` of the process runtime measured in the same run (the baseline: the same client, API server
and agents with the container stack removed). Pods are busybox `sleep` from an image loaded with
`pocketkube image load` (IfNotPresent, so no pull is tried); RSS is the agent process alone, then
its containerd and the shims (one per pod) stated separately.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
# Container mode (issue 9): its own targets, ranges and pod.
CTR_UP_TARGET_S = 3.0
CTR_POD_P99_TARGET_S = 3.0
CTR_AGENT_RSS_TARGET_MB = 60
CTR_RANGES = {"node_ip_base": "10.241.0.0", "pod_cidr_base": "10.243.0.0/16", "service_cidr": "10.104.0.0/16",
              "lb_pool": "10.241.1.0/24"}
BUSYBOX_REF = "docker.io/library/busybox:bench"
# `sleep` as PID 1 ignores SIGTERM: a short grace so deleted pods' containers go within a second.
SLEEP_POD = {"image": "busybox:bench", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
             "terminationGracePeriodSeconds": 1}
NGINX_POD = {"image": "nginx", "ports": [{"containerPort": 80}]}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _proc_kb(path: str, key: str) -> float:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    return _proc_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (the shims' one binary) counted once across processes."""
    return _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def busy_cpu_s() -> float:
    """Seconds of CPU time the whole host has been busy (all cores; idle and iowait excluded):
    the difference over a phase says whether the phase was CPU-bound on this machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every live process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue


def runtime_pids(data_dir: Path) -> tuple[list[int], list[int]]:
    """(containerd pids, shim pids) of this data dir's nodes, found by their command lines."""
    daemons, shims = [], []
    for pid, argv in processes():
        if str(data_dir).encode() not in b" ".join(argv):
            continue
        exe = Path(argv[0].decode(errors="replace")).name
        if exe.startswith("containerd-shim"):
            shims.append(pid)
        elif exe == "containerd":
            daemons.append(pid)
    return daemons, shims


def server_pid(data_dir: Path) -> int:
    """The `pocketkube server` process of this data dir, found by its command line."""
    for pid, argv in processes():
        if b"server" in argv and str(data_dir).encode() in argv:
            return pid
    raise RuntimeError(f"no server process for {data_dir}")


def process_start_s(code: str, repeat: int = 3) -> float:
    """Median wall time of `python -c code`: the floor under every process `up` starts."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def new_cluster(data_dir: Path, runtime: str = "process") -> ClusterProcess:
    if runtime == "containerd":
        return ClusterProcess(data_dir, nodes=NODE_COUNT, runtime="containerd", extra_args=["--no-pod-egress"],
                              **CTR_RANGES)
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


def deployment(name: str, replicas: int, container: dict | None = None) -> dict:
    """`container` may carry terminationGracePeriodSeconds, which goes to the pod spec."""
    labels = {"app": name}
    container = dict(container or NGINX_POD)
    grace = {"terminationGracePeriodSeconds": container.pop("terminationGracePeriodSeconds")} \
        if "terminationGracePeriodSeconds" in container else {}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {**grace, "containers": [{"name": "web", **container}]}}}}


async def pods_ready_latencies(client: Client, name: str, replicas: int, timeout: float = 120,
                               container: dict | None = None) -> list[float]:
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
    await client.create(DEPLOYMENTS, deployment(name, replicas, container), "default")
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


async def pods_and_memory(cluster: ClusterProcess, replicas: int, container: dict | None = None,
                          timeout: float = 120) -> dict:
    client = client_for(cluster.kubeconfig)
    try:
        single = await pods_ready_latencies(client, "bench-one", 1, timeout, container)
        await delete_and_wait(client, "bench-one", timeout)
        groups = {"agents": list(cluster.agent_pids().values()), "server": [server_pid(cluster.data_dir)],
                  "containerds": runtime_pids(cluster.data_dir)[0]}
        before = {g: cpu_s(pids) for g, pids in groups.items()}
        cpu0, t0 = busy_cpu_s(), time.perf_counter()
        many = await pods_ready_latencies(client, "bench-many", replicas, timeout, container)
        cpu = {"cpu_busy": (busy_cpu_s() - cpu0) / (time.perf_counter() - t0) / (os.cpu_count() or 1),
               "cpu_all_s": busy_cpu_s() - cpu0, **{f"cpu_{g}_s": cpu_s(pids) - before[g] for g, pids in groups.items()}}
        await asyncio.sleep(1)  # let status writes and probes settle before reading RSS
        agents = {name: rss_mb(pid) for name, pid in cluster.agent_pids().items()}
        server = rss_mb(server_pid(cluster.data_dir))
        daemons, shims = runtime_pids(cluster.data_dir)
        deadline = time.monotonic() + 15
        while len(shims) > replicas and time.monotonic() < deadline:  # the single pod's shim exits late
            await asyncio.sleep(0.5)
            daemons, shims = runtime_pids(cluster.data_dir)
        memory = {"containerd_rss_max": max((rss_mb(p) for p in daemons), default=0.0),
                  "shims": float(len(shims)), "shims_rss_sum": sum(rss_mb(p) for p in shims),
                  "shims_pss_sum": sum(pss_mb(p) for p in shims)} if daemons else {}
        await delete_and_wait(client, "bench-many", timeout)
    finally:
        await client.close()
    return {"single": single[0], "p50": statistics.median(many), "p99": pct(many, 99), "max": max(many),
            "agent_rss_max": max(agents.values()), "server_rss": server, **memory, **cpu}


def stop(cluster: ClusterProcess, root: Path) -> None:
    out = cluster.stop()
    leftovers = processes_under(root)
    if cluster.runtime == "containerd":  # and no mount, bridge or table of the cluster
        from pocketkube.net import hostnet

        cid = hostnet.cluster_id_of(cluster.data_dir)
        leftovers += [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                      if line.split()[4].startswith(str(root))]
        leftovers += hostnet.cluster_links(cid) + ([hostnet.cluster_table(cid)] if hostnet.cluster_table_exists(cid)
                                                   else [])
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


def load_busybox(cluster: ClusterProcess, root: Path) -> float:
    """`pocketkube image load` of the busybox archive into every node; its wall time."""
    from pocketkube.testing import images
    from pocketkube.testing.archives import oci_archive

    archive = oci_archive(images.busybox_image().layout, root / "busybox.tar", name=BUSYBOX_REF)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pocketkube", "image", "load", "--data-dir", str(cluster.data_dir),
                    str(archive)], check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


async def wait_no_shims(data_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while runtime_pids(data_dir)[1] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


async def cri_floor(cluster: ClusterProcess, root: Path, replicas: int) -> list[float]:
    """The same pods started by the agents' CRI runtime layer alone, straight against the
    cluster's containerds (round-robin over the nodes, all at once as the kubelet's pod workers
    run): RunPodSandbox, ImageStatus, CreateContainer, StartContainer with the configs the agent
    builds, and no API server, scheduler, controllers, kubelet sync or status writes. Per pod,
    seconds from the start to its container running. The agents do not see these pods (they
    only know the sandboxes they made or adopted at start) and they are removed afterwards."""
    import uuid

    from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime
    from pocketkube.agent.runtime.interface import ContainerConfig

    await wait_no_shims(cluster.data_dir)
    runtimes = [ContainerdRuntime(f"unix://{cluster.data_dir}/nodes/node-{i}/containerd/containerd.sock",
                                  data_dir=root / f"floor-{i}", node_name=f"bench-floor-{i}", node_ip=cluster.node_ip(i))
                for i in range(1, NODE_COUNT + 1)]
    container = {"name": "web", **{k: v for k, v in SLEEP_POD.items() if k != "terminationGracePeriodSeconds"}}
    pods = [{"metadata": {"name": f"bench-floor-{n}", "namespace": "default", "uid": str(uuid.uuid4()),
                          "labels": {"app": "bench-floor"}},
             "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}} for n in range(replicas)]

    async def one(n: int) -> float:
        rt, pod = runtimes[n % NODE_COUNT], pods[n]
        ip = await rt.run_pod_sandbox(pod)
        await rt.start(ContainerConfig(pod_uid=pod["metadata"]["uid"], name="web", command=container["command"],
                                       args=[], env={}, restart_count=0, image=BUSYBOX_REF, pod_ip=ip, pod=pod,
                                       spec=container))
        return time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        return list(await asyncio.gather(*(one(n) for n in range(replicas))))
    finally:
        await asyncio.gather(*(runtimes[n % NODE_COUNT].remove_pod(pod["metadata"]["uid"])
                               for n, pod in enumerate(pods)), return_exceptions=True)
        for rt in runtimes:
            await rt.close()


async def up_twice(runtime: str, root: Path, cache: Path, prefix: str) -> dict:
    """`up` on a new data dir, Ctrl-C, `up` again on the same one: prefix_cold_*, prefix_warm_*."""
    cluster = new_cluster(root / f"data-{runtime}", runtime)
    result = {}
    try:
        for phase in ("cold", "warm"):
            times = await measure_up(cluster, cache)
            result.update({f"{prefix}_{phase}_{k}": v for k, v in times.items()})
            stop(cluster, root)
    finally:
        cluster.stop()
    return result


async def run_once_containerd(replicas: int, index: int) -> dict:
    """Process-runtime `up` (baseline) and containerd `up`, cold and warm, in alternating order;
    then pods and RSS in the containerd cluster."""
    root = Path(tempfile.mkdtemp(prefix="pk-bench-ctr-"))
    cache = root / "home"
    cache.mkdir()
    result: dict = {}
    try:
        order = [("process", "proc"), ("containerd", "ctr")]
        for runtime, prefix in order if index % 2 == 0 else order[::-1]:
            result.update(await up_twice(runtime, root, cache, prefix))
        cluster = new_cluster(root / "data-containerd", "containerd")
        try:
            await measure_up(cluster, cache)  # a third start of the same data dir; not counted
            result["agent_rss_idle"] = max(rss_mb(pid) for pid in cluster.agent_pids().values())
            result["image_load"] = await asyncio.to_thread(load_busybox, cluster, root)
            result.update(await pods_and_memory(cluster, replicas, SLEEP_POD, timeout=600))
            result["floor_single"] = (await cri_floor(cluster, root, 1))[0]
            cpu0, t0 = busy_cpu_s(), time.perf_counter()
            floor = await cri_floor(cluster, root, replicas)
            result.update({"floor_p50": statistics.median(floor), "floor_p99": pct(floor, 99),
                           "floor_cpu_busy": (busy_cpu_s() - cpu0) / (time.perf_counter() - t0) / (os.cpu_count() or 1)})
            stop(cluster, root)
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def report_containerd(results: list[dict], replicas: int) -> str:
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    lines = [f"bench/cluster.py --runtime containerd --runs {len(results)} --replicas {replicas} "
             f"({datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores; medians)",
             "baseline: `up` with the process runtime, measured in the same run (alternating order)"]
    for phase, label in (("cold", "first start (new data dir: PKI, containerd, pause image import)"),
                         ("warm", "resume same data dir (images present)")):
        for what, name in (("api", "3 Ready in API"), ("kubectl", "in kubectl"), ("press", "'Press Ctrl-C'")):
            c, p = med[f"ctr_{phase}_{what}"], med[f"proc_{phase}_{what}"]
            target = f"   target <= {CTR_UP_TARGET_S:.0f} s: {'met' if c <= CTR_UP_TARGET_S else 'NOT met'}" \
                if what == "api" else ""
            lines.append(f"up, {label}: {name}: containerd {c:.2f} s, process {p:.2f} s, ratio {c / p:.2f}x{target}")
    single = med["single"]
    lines.append(f"`pocketkube image load` busybox into {NODE_COUNT} nodes: {med['image_load']:.2f} s")
    lines.append(f"baseline pod start-up (1-replica Deployment of busybox sleep, create -> Ready in a watch): "
                 f"{single * 1e3:.0f} ms")
    lines.append(f"{replicas}-replica Deployment, create -> each pod Ready: p50 {med['p50'] * 1e3:.0f} ms "
                 f"({med['p50'] / single:.1f}x single), p99 {med['p99'] * 1e3:.0f} ms ({med['p99'] / single:.1f}x), "
                 f"max {med['max'] * 1e3:.0f} ms   target p99 <= {CTR_POD_P99_TARGET_S * 1e3:.0f} ms: "
                 f"{'met' if med['p99'] <= CTR_POD_P99_TARGET_S else 'NOT met'}")
    lines.append(f"  the same {replicas} pods by the agents' CRI runtime layer alone, straight at the cluster's "
                 f"containerds (no API server, scheduler, controllers, kubelet): p50 {med['floor_p50'] * 1e3:.0f} ms, "
                 f"p99 {med['floor_p99'] * 1e3:.0f} ms; the Deployment's p99 is {med['p99'] / med['floor_p99']:.2f}x that "
                 f"(one pod alone that way: {med['floor_single'] * 1e3:.0f} ms; the 1-replica Deployment is "
                 f"{single / med['floor_single']:.2f}x that)")
    lines.append(f"  host CPU busy while the {replicas} pods started (all cores, whoever used them): Deployment "
                 f"{med['cpu_busy']:.0%}, CRI layer alone {med['floor_cpu_busy']:.0%}; CPU used during the Deployment's "
                 f"start-up: {med['cpu_all_s']:.1f} s in all, agents {med['cpu_agents_s']:.1f} s, server "
                 f"{med['cpu_server_s']:.1f} s, containerds {med['cpu_containerds_s']:.1f} s, the rest (shims, runc, "
                 f"CNI plugins, kernel, other users) {med['cpu_all_s'] - med['cpu_agents_s'] - med['cpu_server_s'] - med['cpu_containerds_s']:.1f} s")
    lines.append(f"RSS with {replicas} pods: largest agent {med['agent_rss_max']:.0f} MB (agent process only; target "
                 f"<= {CTR_AGENT_RSS_TARGET_MB}: {'met' if med['agent_rss_max'] <= CTR_AGENT_RSS_TARGET_MB else 'NOT met'})"
                 f"; the same agents with no pod: {med['agent_rss_idle']:.0f} MB; server {med['server_rss']:.0f} MB")
    lines.append(f"  not the agent's: largest containerd {med['containerd_rss_max']:.0f} MB; "
                 f"{med['shims']:.0f} shims: RSS sum {med['shims_rss_sum']:.0f} MB, PSS sum {med['shims_pss_sum']:.0f} MB")
    for i, r in enumerate(results):
        lines.append(f"  run {i + 1}: " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))
    return "\n".join(lines) + "\n"


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
    p.add_argument("--runtime", choices=("process", "containerd"), default="process")
    p.add_argument("--out", type=Path, default=None, help="also write the containerd report to this file")
    args = p.parse_args()
    if args.runtime == "containerd":
        if os.geteuid() != 0 or not shutil.which("containerd"):
            sys.exit("bench/cluster.py --runtime containerd needs root and containerd (apt-get install containerd runc "
                     "containernetworking-plugins busybox-static)")
        results = [asyncio.run(run_once_containerd(args.replicas, i)) for i in range(args.runs)]
        text = report_containerd(results, args.replicas)
        print(text, end="")
        if args.out:
            args.out.write_text(text)
        return
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        sys.exit("bench/cluster.py needs nginx (nginx-light) for the pods")
    results = [asyncio.run(run_once(args.replicas)) for _ in range(args.runs)]
    report(results, args.replicas)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the finally blocks stop the clusters
    main()
