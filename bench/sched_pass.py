"""Micro-benchmark (issue 13): one scheduling pass at 1,000 nodes × 5,000 pods.

The scheduler's informers are fed directly (no API server): N nodes with 4 cpu / 16Gi / 110 pods,
5 bound pods per node from Deployment-like owners, then a batch of pending pods; reported is the
wall time of `_schedule_pending` (decide every pending pod; the bindings it starts are cancelled
unrun) for a pass of 1 pod and a pass of 100 pods, best of --repeat. Run:

    .venv/bin/python bench/sched_pass.py [--nodes 1000 --pods 5000 --repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from pocketkube.scheduler.scheduler import Scheduler, SchedulerSettings
from pocketkube.testing.fakeclient import FakeClient


def _node(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"hollow-{i:05d}", "resourceVersion": str(i + 1), "labels": {}},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                       "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(name: str, owner: int, node: str = "") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": f"ns-{owner % 10}", "resourceVersion": "1",
                         "uid": f"uid-{name}",
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"rs-{owner}", "uid": f"rs-{owner}",
                                              "controller": True}]},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "pause", "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]},
            "status": {"phase": "Running" if node else "Pending"}}


async def one_pass(nodes: int, pods: int, batch: int, seq: int) -> float:
    s = Scheduler(FakeClient(), SchedulerSettings(seed=1))
    for informer in (s.pods, s.nodes, s.claims, s.volumes, s.classes):
        informer.synced.set()
    for i in range(nodes):
        s.nodes._apply("ADDED", _node(i))
    for j in range(pods):
        s.pods._apply("ADDED", _pod(f"bound-{j}", j // 50, f"hollow-{j % nodes:05d}"))
    for k in range(batch):
        s.pods._apply("ADDED", _pod(f"pending-{seq}-{k}", k // 25))
    start = time.perf_counter()
    s._schedule_pending()
    elapsed = time.perf_counter() - start
    for t in s._tasks:
        t.cancel()
    await asyncio.gather(*s._tasks, return_exceptions=True)
    assert len(s._assumed) == batch, "every pending pod got a node"
    return elapsed


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    for batch in (1, 100):
        best = min([await one_pass(a.nodes, a.pods, batch, r) for r in range(a.repeat)])
        print(f"{a.nodes} nodes x {a.pods} pods: pass of {batch:3d} pending pod(s) {best * 1000:8.1f} ms"
              f"  ({best * 1000 / batch:.2f} ms/pod)")


if __name__ == "__main__":
    asyncio.run(main())
