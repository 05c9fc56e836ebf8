"""Admission cost benchmark (issue 10, resources): pod creates in a namespace with a LimitRange
and a ResourceQuota (LimitRanger defaults and checks, a quota charge per create, the quota
controller running) against creates in a plain namespace of the same server, as ratios.

    .venv/bin/python bench/resources.py [--pods 300] [--concurrency 16] [--runs 3]
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

from pocketkube.testing.procs import ServerProcess


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx",
                                     "resources": {"limits": {"cpu": "10m", "memory": "16Mi"}}}]}}


async def creates(session: aiohttp.ClientSession, ns: str, prefix: str, n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    names = iter(range(n))

    async def client() -> None:
        for i in names:
            t0 = time.perf_counter()
            async with session.post(f"/api/v1/namespaces/{ns}/pods", json=pod(f"{prefix}-{i}")) as r:
                assert r.status == 201, await r.text()
            latencies.append(time.perf_counter() - t0)
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-res-"))
    server = ServerProcess(root / "data")
    server.data_dir.mkdir()
    server.start()
    try:
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        async with aiohttp.ClientSession(base_url=server.url, headers={"Authorization": f"Bearer {server.token()}"},
                                         connector=aiohttp.TCPConnector(ssl=ctx, limit=200)) as s:
            for ns in ("plain", "bounded"):
                async with s.post("/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                    assert r.status == 201
            async with s.post("/api/v1/namespaces/bounded/limitranges", json={
                    "metadata": {"name": "lr"}, "spec": {"limits": [
                        {"type": "Container", "max": {"cpu": "1"}, "defaultRequest": {"cpu": "10m"}}]}}) as r:
                assert r.status == 201
            async with s.post("/api/v1/namespaces/bounded/resourcequotas", json={
                    "metadata": {"name": "q"},
                    "spec": {"hard": {"pods": "100000", "requests.cpu": "10k", "limits.memory": "10Ti"}}}) as r:
                assert r.status == 201
            results: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for run in range(args.runs):
                for concurrency in (1, args.concurrency):
                    for ns in ("plain", "bounded"):
                        lat = await creates(s, ns, f"r{run}c{concurrency}", args.pods, concurrency)
                        results.setdefault((ns, concurrency), []).append((pct(lat, 50), pct(lat, 99)))
            for concurrency in (1, args.concurrency):
                base = [statistics.median(x[i] for x in results[("plain", concurrency)]) for i in (0, 1)]
                bounded = [statistics.median(x[i] for x in results[("bounded", concurrency)]) for i in (0, 1)]
                print(f"{concurrency:>3} client(s): create p50 {bounded[0] * 1000:.2f} ms = "
                      f"{bounded[0] / base[0]:.2f}x plain ({base[0] * 1000:.2f} ms), p99 {bounded[1] * 1000:.2f} ms "
                      f"= {bounded[1] / base[1]:.2f}x plain ({base[1] * 1000:.2f} ms)")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--runs", type=int, default=3)
    asyncio.run(main(p.parse_args()))
