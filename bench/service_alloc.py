"""Service creates/s through the registry (no HTTP): the cost of committing ClusterIP/NodePort
allocations through the store's range records (issue 13).

    .venv/bin/python bench/service_alloc.py [--store sqlite|etcd] [--creates 2000] [--concurrency 50] [--runs 3]

sqlite: one API server owns the file, so no records are written; run the script against two
source trees (PYTHONPATH=<tree>/src) to compare before/after. etcd (a 1-member etcd of its own,
Debian's etcd-server): the same run with the records (the backend says it is shared, as it is)
and without them (one server deciding alone, the cost baseline), interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from pocketkube.registry.registry import Registry, RegistryConfig


def service(i: int, kind: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
            "spec": {"type": kind, "selector": {"app": "a"}, "ports": [{"port": 80}]}}


async def run(make_backend: Callable, creates: int, concurrency: int, kind: str) -> tuple[float, float]:
    """(creates per second, creates per CPU second of this process: the steadier figure on a
    loaded machine)."""
    backend = make_backend()
    registry = Registry(backend, RegistryConfig(node_port_range=(30000, 39999)))
    await registry.start()
    counter = iter(range(creates))

    async def client() -> None:
        for i in counter:
            await registry.services.create(service(i, kind), "default")
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    rate, cpu_rate = creates / (time.perf_counter() - t0), creates / (time.process_time() - c0)
    await registry.close()
    return rate, cpu_rate


def sqlite(args: argparse.Namespace) -> None:
    from pocketkube.storage.sqlite import SQLiteBackend

    for kind in ("ClusterIP", "NodePort"):
        for conc in (1, args.concurrency):
            rates = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as d:
                    rates.append(asyncio.run(run(lambda d=d: SQLiteBackend(f"{d}/state.db"), args.creates, conc, kind)))
            wall, cpu = (statistics.median(r[i] for r in rates) for i in (0, 1))
            print(f"{kind:9} concurrency {conc:3}: {wall:8.0f} creates/s {cpu:8.0f} creates/CPU-s")


def etcd(args: argparse.Namespace) -> None:
    from pocketkube.testing.etcd import etcd_cluster

    with etcd_cluster(1) as cluster:
        asyncio.run(_etcd_runs(args, cluster))  # one event loop: grpc.aio does not outlive its loop


async def _etcd_runs(args: argparse.Namespace, cluster) -> None:
    from pocketkube.storage.etcd.backend import EtcdBackend

    def backend(shared: bool) -> EtcdBackend:
        cluster.wipe()  # and the history: a new mirror must not replay the runs before
        cluster.etcdctl("compact", str(json.loads(cluster.etcdctl("get", "x", "-w", "json"))["header"]["revision"]))
        b = EtcdBackend(cluster.spec("/"))
        b.shared = shared  # False: no records (one server deciding alone: the cost baseline)
        return b

    for kind in ("ClusterIP", "NodePort"):
        for conc in (1, args.concurrency):
            rates: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for _ in range(args.runs):  # interleaved: both see the same load
                for shared in (False, True):
                    rates[shared].append(await run(lambda s=shared: backend(s), args.creates, conc, kind))
            for i, unit in ((0, "creates/s"), (1, "creates/CPU-s")):
                with_ = statistics.median(r[i] for r in rates[True])
                without = statistics.median(r[i] for r in rates[False])
                print(f"{kind:9} concurrency {conc:3}: records {with_:7.0f} {unit}, without {without:7.0f}"
                      f" {unit}, ratio {with_ / without:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    p.add_argument("--creates", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    (sqlite if args.store == "sqlite" else etcd)(args)


if __name__ == "__main__":
    main()
