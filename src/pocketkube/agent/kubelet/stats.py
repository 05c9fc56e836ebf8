"""The node's resource usage, as the kubelet's Summary API (/stats/summary) reports it: per
container and pod, cumulative CPU time, the CPU rate over the last window (usageNanoCores) and
the memory working set; the node's usage is its pods' plus the agent's own (the nodes of one
machine share a kernel, so the machine's totals would not be this node's).

The rate needs two samples: each request is measured against the sample the previous request
kept (when it is between MIN_WINDOW and MAX_WINDOW old), else against one taken MIN_WINDOW
before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pocketkube.agent.runtime.interface import ContainerUsage, Runtime
from pocketkube.api.timestamps import now_rfc3339

MIN_WINDOW = 0.5
MAX_WINDOW = 60.0
Sample = dict[tuple[str, str], ContainerUsage]


def _cpu(now_text: str, cumulative: int, rate: int) -> dict:
    return {"time": now_text, "usageNanoCores": rate, "usageCoreNanoSeconds": cumulative}


def _memory(now_text: str, working_set: int) -> dict:
    return {"time": now_text, "workingSetBytes": working_set, "usageBytes": working_set}


def rate(before: int | None, after: int, seconds: float) -> int:
    """CPU nanoseconds per second between two cumulative readings (0 when unknown or reset)."""
    if before is None or seconds <= 0 or after < before:
        return 0
    return int((after - before) / seconds)


def summary(node_name: str, pods: dict[str, dict], before: Sample, after: Sample, seconds: float,
            agent: tuple[int, int, int | None], now_text: str) -> dict:
    """The Summary document. `pods` maps uids to pod objects; `agent` is the agent's own
    (cpu ns now, rss bytes, cpu ns at the start of the window)."""
    by_pod: dict[str, list[tuple[ContainerUsage, int]]] = {}
    for key, u in after.items():
        prev = before.get(key)
        by_pod.setdefault(u.pod_uid, []).append((u, rate(prev.cpu_ns if prev else None, u.cpu_ns, seconds)))
    pod_docs = []
    node_cpu, node_rate, node_mem = agent[0], rate(agent[2], agent[0], seconds), agent[1]
    for uid, usages in sorted(by_pod.items()):
        pod = pods.get(uid)
        if pod is None:
            continue
        cpu = sum(u.cpu_ns for u, _ in usages)
        cores = sum(r for _, r in usages)
        mem = sum(u.memory_bytes for u, _ in usages)
        node_cpu, node_rate, node_mem = node_cpu + cpu, node_rate + cores, node_mem + mem
        m = pod["metadata"]
        pod_docs.append({
            "podRef": {"name": m["name"], "namespace": m["namespace"], "uid": uid},
            "cpu": _cpu(now_text, cpu, cores), "memory": _memory(now_text, mem),
            "containers": [{"name": u.name, "cpu": _cpu(now_text, u.cpu_ns, r),
                            "memory": _memory(now_text, u.memory_bytes)} for u, r in sorted(usages, key=lambda x: x[0].name)],
        })
    return {"node": {"nodeName": node_name, "cpu": _cpu(now_text, node_cpu, node_rate),
                     "memory": _memory(now_text, node_mem)},
            "pods": pod_docs,
            # Not in upstream's Summary: the span the rates cover (metrics.k8s.io's `window`).
            "window": f"{round(seconds, 3):g}s"}


class UsageSampler:
    def __init__(self, runtime: Runtime, self_usage: Callable[[], tuple[int, int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.self_usage = self_usage
        self.clock = clock
        self._last: tuple[float, Sample, int] | None = None  # (when, sample, agent cpu ns)
        self._lock = asyncio.Lock()

    async def _sample(self) -> tuple[float, Sample, int]:
        usages = await self.runtime.usage()
        return self.clock(), {(u.pod_uid, u.name): u for u in usages}, self.self_usage()[0]

    async def summary(self, node_name: str, pods: dict[str, dict]) -> dict:
        async with self._lock:
            last = self._last
            now = self.clock()
            if last is None or not MIN_WINDOW <= now - last[0] <= MAX_WINDOW:
                last = await self._sample()
                await asyncio.sleep(MIN_WINDOW)
            current = await self._sample()
            self._last = current
        cpu_now, rss = self.self_usage()
        return summary(node_name, pods, last[1], current[1], current[0] - last[0], (cpu_now, rss, last[2]),
                       now_rfc3339())
