"""API server benchmark (issue 2): creates/s and latency, LIST of 10k pods, watch fan-out, RSS.

The server runs without its control plane (`--no-control-plane`). Every figure is reported next to a baseline measured in the same run against the same server
(an authenticated GET of one object), so results compare across machines. Run:

    .venv/bin/python bench/apiserver.py [--pods 10000] [--creates 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from pocketkube.testing.procs import ServerProcess


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        self.session = aiohttp.ClientSession(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token()}"},
            connector=aiohttp.TCPConnector(ssl=ctx, limit=200))

    async def close(self) -> None:
        await self.session.close()

    async def closed_loop(self, n: int, concurrency: int, request) -> tuple[float, list[float]]:
        """n requests from `concurrency` clients; returns (requests/s, latencies in s)."""
        latencies: list[float] = []
        counter = iter(range(n))

        async def client():
            for i in counter:
                t0 = time.perf_counter()
                await request(i)
                latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0), latencies

    async def open_loop(self, n: int, rate: float, request) -> list[float]:
        """n requests sent at a fixed `rate`/s whatever the answers do (an open loop, as real clients
        arrive); each latency counts from when its request was due, so a stall is not hidden by
        the requests it delayed (no coordinated omission)."""
        latencies: list[float] = []
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await request(i)
            latencies.append(time.perf_counter() - due)
        await asyncio.gather(*(one(i) for i in range(n)))
        return latencies

    async def get_one(self, _: int) -> None:
        async with self.session.get("/api/v1/namespaces/default/services/kubernetes") as r:
            assert r.status == 200, r.status
            await r.read()

    async def create_service(self, i: int, prefix: str) -> None:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{prefix}-{i}"},
                "spec": {"ports": [{"port": 80}], "selector": {"app": f"a{i}"}}}
        async with self.session.post("/api/v1/namespaces/default/services", data=orjson.dumps(body),
                                     headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201, (r.status, await r.text())
            await r.read()

    async def create_pod(self, i: int) -> None:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"pod-{i}", "labels": {"app": "bench", "n": str(i % 10)}},
                "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
        async with self.session.post("/api/v1/namespaces/default/pods", data=orjson.dumps(body),
                                     headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201, (r.status, await r.text())
            await r.read()

    async def list_pods(self) -> float:
        t0 = time.perf_counter()
        async with self.session.get("/api/v1/namespaces/default/pods") as r:
            data = await r.read()
        dt = time.perf_counter() - t0
        assert len(orjson.loads(data)["items"]) >= 1
        return dt

    async def watch_fanout(self, watchers: int, events: int) -> list[float]:
        """Latency from a write's acknowledgement... to its arrival at each of `watchers` streams."""
        sent: dict[str, float] = {}
        latencies: list[float] = []
        rv = (await (await self.session.get("/api/v1/namespaces/default/services?limit=1")).json())[
            "metadata"]["resourceVersion"]
        ready = asyncio.Event()
        opened = 0

        async def watcher():
            nonlocal opened
            async with self.session.get(f"/api/v1/namespaces/default/services?watch=true&resourceVersion={rv}",
                                        timeout=aiohttp.ClientTimeout(total=None)) as r:
                opened += 1
                if opened == watchers:
                    ready.set()
                seen = 0
                async for line in r.content:
                    ev = orjson.loads(line)
                    name = ev["object"]["metadata"]["name"]
                    if name in sent and ev["type"] == "ADDED":
                        latencies.append(time.perf_counter() - sent[name])
                        seen += 1
                        if seen == events:
                            return
        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)
        for i in range(events):
            name = f"watched-{i}"
            sent[name] = time.perf_counter()
            await self.create_service(i, "watched")
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return latencies


async def run_once(args, run: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-"))
    # The API server alone, as kube-apiserver is measured; the control plane's own caches are
    # the controllers' cost, not the server's (and with no nodes, the scheduler would spend the
    # run reporting 10,000 unschedulable pods).
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir()
    server.start()
    bench = Bench(server)
    try:
        await bench.closed_loop(200, 8, bench.get_one)  # warm-up
        base_rps, base_lat = await bench.closed_loop(args.creates, 32, bench.get_one)
        create_rps, create_lat = await bench.closed_loop(
            args.creates, 32, lambda i: bench.create_service(i, f"svc{run}"))
        await bench.closed_loop(args.pods, 32, bench.create_pod)
        list_times = [await bench.list_pods() for _ in range(5)]
        base_get = statistics.median(base_lat)
        fanout = await bench.watch_fanout(100, 20)
        rss = rss_mb(server.proc.pid)
        return {"base_rps": base_rps, "base_p50_ms": base_get * 1e3, "base_p99_ms": pct(base_lat, 99) * 1e3,
                "create_rps": create_rps, "create_p50_ms": statistics.median(create_lat) * 1e3,
                "create_p99_ms": pct(create_lat, 99) * 1e3,
                "list_10k_s": statistics.median(list_times),
                "watch_p50_ms": statistics.median(fanout) * 1e3, "watch_p99_ms": pct(fanout, 99) * 1e3,
                "rss_mb": rss}
    finally:
        await bench.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--creates", type=int, default=5_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    results = [asyncio.run(run_once(args, i)) for i in range(args.runs)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"runs={args.runs} (medians) pods={args.pods} creates={args.creates}")
    print(f"baseline GET one object, 32 clients: {med['base_rps']:.0f}/s p50 {med['base_p50_ms']:.1f} ms "
          f"p99 {med['base_p99_ms']:.1f} ms")
    print(f"Service create, 32 clients: {med['create_rps']:.0f}/s ({med['create_rps'] / med['base_rps']:.2f}x "
          f"baseline rps) p99 {med['create_p99_ms']:.1f} ms ({med['create_p99_ms'] / med['base_p99_ms']:.1f}x "
          f"baseline p99)   target >= 1000/s, p99 <= 50 ms")
    print(f"LIST {args.pods} pods: {med['list_10k_s'] * 1e3:.0f} ms "
          f"({med['list_10k_s'] * 1e3 / med['base_p50_ms']:.0f}x a single GET)   target <= 500 ms")
    print(f"watch event to 100 watchers: p50 {med['watch_p50_ms']:.1f} ms p99 {med['watch_p99_ms']:.1f} ms "
          f"({med['watch_p99_ms'] / med['base_p50_ms']:.1f}x a single GET)   target p99 <= 50 ms")
    print(f"server RSS with {args.pods} pods: {med['rss_mb']:.0f} MB   target <= 150 MB")


if __name__ == "__main__":
    main()
