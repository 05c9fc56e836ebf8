"""Datastore benchmark (issue 13): the API server on SQLite vs on a 3-member etcd, same run.

For each datastore a fresh `pocketkube server --no-control-plane` (etcd: a fresh 3-member
Debian etcd on loopback); the figures: pod creates/s and create p99 with 32 concurrent clients
through the API server, and the latency of a LIST of all pods once there are `--pods` of them.
etcd's are reported as ratios to SQLite's from the same run (target: creates >= 50 %, p99 <= 100 ms).
The create p99 is measured twice: in the closed loop (32 clients flat out: mostly queueing, about
32 / throughput) and at a steady open-loop rate below saturation (--steady-rate), which is the
latency a request sees in a busy but not overloaded cluster.

    .venv/bin/python bench/etcd_store.py [--pods 10000] [--creates 3000] [--runs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from apiserver import Bench, pct  # bench/apiserver.py: the same clients and measures

from pocketkube.testing.etcd import etcd_cluster
from pocketkube.testing.procs import ServerProcess


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(datastore: str, args, store_pids: tuple[int, ...] = ()) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-etcd-"))
    extra = ["--no-control-plane"] + (["--datastore", datastore] if datastore else [])
    server = ServerProcess(root / "data", extra_args=extra)
    server.data_dir.mkdir()
    server.start(timeout=60)
    bench = Bench(server)
    try:
        await bench.closed_loop(200, 8, bench.get_one)  # warm-up
        pids = (server.proc.pid, *store_pids)
        before = [cpu_seconds(p) for p in pids]
        rps, lat = await bench.closed_loop(args.creates, 32, bench.create_pod)
        used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        done = args.creates
        # Latency at a steady rate below saturation (the closed loop above measures queueing: 32
        # clients at full speed wait for each other, p99 ≈ 32 / throughput whatever the store).
        steady = await bench.open_loop(args.steady_creates, args.steady_rate,
                                       lambda i: bench.create_pod(i + done))
        done += args.steady_creates
        if args.pods > done:
            await bench.closed_loop(args.pods - done, 32, lambda i: bench.create_pod(i + done))
        lists = [await bench.list_pods() for _ in range(5)]
        return {"create_rps": rps, "create_p50_ms": statistics.median(lat) * 1e3,
                "create_p99_ms": pct(lat, 99) * 1e3, "list_ms": statistics.median(lists) * 1e3,
                "steady_p50_ms": statistics.median(steady) * 1e3, "steady_p99_ms": pct(steady, 99) * 1e3,
                "server_cpu_ms": used[0] / args.creates * 1e3, "store_cpu_ms": sum(used[1:]) / args.creates * 1e3}
    finally:
        await bench.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def one_run(args) -> dict[str, dict]:
    out = {"sqlite": await measure("", args)}
    with etcd_cluster(3) as etcd:
        out["etcd"] = await measure(etcd.url, args, tuple(p.pid for p in etcd.procs if p is not None))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--creates", type=int, default=3_000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--steady-rate", type=float, default=100.0, help="pod creates/s of the open-loop phase")
    p.add_argument("--steady-creates", type=int, default=1_500)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    runs = [asyncio.run(one_run(args)) for _ in range(args.runs)]
    med = {store: {k: statistics.median(r[store][k] for r in runs) for k in runs[0][store]}
           for store in ("sqlite", "etcd")}
    s, e = med["sqlite"], med["etcd"]
    load = os.getloadavg()[1]
    lines = [
        f"host: {os.cpu_count()} CPUs, load average over the run's last 5 min {load:.1f} "
        "(absolute latencies follow the load; compare the same-run ratios)",
        f"runs={args.runs} (medians) pods={args.pods} creates={args.creates}, 32 clients, etcd = 3 members (Debian 3.4)",
        f"SQLite: pod create {s['create_rps']:.0f}/s p50 {s['create_p50_ms']:.1f} ms p99 {s['create_p99_ms']:.1f} ms; "
        f"LIST {args.pods} pods {s['list_ms']:.0f} ms",
        f"etcd:   pod create {e['create_rps']:.0f}/s p50 {e['create_p50_ms']:.1f} ms p99 {e['create_p99_ms']:.1f} ms; "
        f"LIST {args.pods} pods {e['list_ms']:.0f} ms",
        f"etcd/SQLite: creates/s {e['create_rps'] / s['create_rps']:.2f}x (target >= 0.50), "
        f"create p99 {e['create_p99_ms'] / s['create_p99_ms']:.2f}x ({e['create_p99_ms']:.0f} ms, target <= 100 ms), "
        f"LIST {e['list_ms'] / s['list_ms']:.2f}x",
        f"steady {args.steady_rate:.0f} creates/s (open loop, {args.steady_creates} creates): "
        f"SQLite p50 {s['steady_p50_ms']:.1f} ms p99 {s['steady_p99_ms']:.1f} ms; "
        f"etcd p50 {e['steady_p50_ms']:.1f} ms p99 {e['steady_p99_ms']:.1f} ms "
        f"({e['steady_p99_ms'] / s['steady_p99_ms']:.2f}x, target <= 100 ms)",
        f"CPU per create (closed loop): API server {s['server_cpu_ms']:.2f} ms on SQLite, {e['server_cpu_ms']:.2f} ms "
        f"on etcd ({e['server_cpu_ms'] / s['server_cpu_ms']:.2f}x); the etcd members {e['store_cpu_ms']:.2f} ms "
        f"(on the same {os.cpu_count()} cores: API server + members bound the rate at "
        f"{(os.cpu_count() or 1) * 1e3 / (e['server_cpu_ms'] + e['store_cpu_ms']):.0f}/s before the clients' share)",
    ]
    print("\n".join(lines))
    if args.out:
        with contextlib.suppress(OSError):
            args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
