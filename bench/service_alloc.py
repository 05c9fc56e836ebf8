"""Service creates/s through the registry (no HTTP) on one SQLite store: the cost of committing
ClusterIP/NodePort allocations through the store's range records (issue 13). Run the same script
against two source trees to compare (PYTHONPATH=<tree>/src):

    .venv/bin/python bench/service_alloc.py [--creates 2000] [--concurrency 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.storage.sqlite import SQLiteBackend


def service(i: int, kind: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
            "spec": {"type": kind, "selector": {"app": "a"}, "ports": [{"port": 80}]}}


async def run(creates: int, concurrency: int, kind: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        backend = SQLiteBackend(f"{d}/state.db")
        registry = Registry(backend, RegistryConfig(node_port_range=(30000, 39999)))
        await registry.start()
        counter = iter(range(creates))

        async def client() -> None:
            for i in counter:
                await registry.services.create(service(i, kind), "default")
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        rate = creates / (time.perf_counter() - t0)
        await registry.close()
        return rate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--creates", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    for kind in ("ClusterIP", "NodePort"):
        for conc in (1, args.concurrency):
            rates = [asyncio.run(run(args.creates, conc, kind)) for _ in range(args.runs)]
            print(f"{kind:9} concurrency {conc:3}: {statistics.median(rates):8.0f} creates/s")


if __name__ == "__main__":
    main()
