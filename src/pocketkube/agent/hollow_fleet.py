"""`pocketkube agent --hollow N`: one process simulating N nodes (kubemark's hollow nodes).

Each simulated node has what a real agent has towards the API server: its own client (its own
connections, as each kubemark hollow node has), its Node with capacity and conditions, its Lease
renewed every lease interval, and its own pod watch (agent.hollow.HollowKubelet). Registration is
bounded (REGISTER_IN_FLIGHT at a time) and heartbeats are spread over one interval, so N nodes
started together do not renew their leases in step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from pocketkube.agent.hollow import HOLLOW_LABEL, RUNTIME_VERSION, HollowKubelet
from pocketkube.agent.node import NodeAgent
from pocketkube.api import errors
from pocketkube.client.interface import Client
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

REGISTER_IN_FLIGHT = 20
REGISTER_TIMEOUT = 60.0
# The kubelet's nodeStatusReportFrequency: with leases, an unchanged status is posted every 5 min.
HOLLOW_STATUS_INTERVAL = 300.0
NODE_POD_PREFIX = 24  # a node's podCIDR is at most a /24 (the nodeipam default), smaller if the pool is


@dataclass(frozen=True)
class HollowSpec:
    name: str
    ip: str
    pod_cidr: str


def hollow_specs(prefix: str, count: int, first_ip: str, pod_pool: str) -> list[HollowSpec]:
    """Names <prefix>0..N-1, node IPs first_ip+i, and podCIDRs carved evenly from pod_pool."""
    if count < 1:
        raise ValueError("--hollow must be at least 1")
    pool = ipaddress.ip_network(pod_pool, strict=False)
    bits = max(pool.prefixlen + math.ceil(math.log2(count)), min(NODE_POD_PREFIX, pool.max_prefixlen))
    if bits > pool.max_prefixlen - 2:
        raise ValueError(f"--pod-cidr {pod_pool} is too small for {count} hollow nodes")
    subnets = pool.subnets(new_prefix=bits)
    first = ipaddress.ip_address(first_ip)
    out = []
    for i in range(count):
        try:
            ip = first + i
        except ipaddress.AddressValueError:
            raise ValueError(f"--node-ip {first_ip} leaves no room for {count} hollow nodes") from None
        out.append(HollowSpec(f"{prefix}{i}", str(ip), str(next(subnets))))
    return out


def hollow_tokens(text: str, names: list[str]) -> dict[str, str]:
    """node name → token, from a token file holding one token for all or a YAML mapping."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict):
        return dict.fromkeys(names, text.strip())
    missing = [n for n in names if not isinstance(parsed.get(n), str)]
    if missing:
        raise ValueError(f"the token file has no token for {len(missing)} node(s), e.g. {missing[0]}")
    return {n: parsed[n] for n in names}


class HollowNodeAgent(NodeAgent):
    """The Node of a simulated node: labelled as such, reporting the simulated runtime."""

    def node_object(self) -> dict:
        node = super().node_object()
        node["metadata"]["labels"][HOLLOW_LABEL] = "true"
        return node


class HollowNode:
    def __init__(self, client: Client, spec: HollowSpec, data_dir: Path, lease_interval: float,
                 cpu: str = "", memory: str = "") -> None:
        self.client = client
        self.spec = spec
        self.node = HollowNodeAgent(client, spec.name, spec.ip, spec.pod_cidr, data_dir, 0, lease_interval,
                                    runtime_version=RUNTIME_VERSION, cpu=cpu, memory=memory)
        self.node.status_interval = HOLLOW_STATUS_INTERVAL
        self.kubelet = HollowKubelet(client, spec.name, spec.ip, spec.pod_cidr)
        self._heartbeat: asyncio.Task | None = None

    async def register(self) -> None:
        deadline = time.monotonic() + REGISTER_TIMEOUT
        retry = Backoff(initial=0.1, maximum=2.0, jitter=0.5)
        while True:
            try:
                await self.node.register()
                await self.node.renew_lease()
                return
            except (errors.ServiceUnavailable, errors.TooManyRequests):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(retry.next())

    async def run_heartbeat(self, offset: float) -> None:
        await asyncio.sleep(offset)
        await self.node.heartbeat()

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.kubelet.stop()
        await self.client.close()


class HollowFleet:
    """N hollow nodes in one process."""

    def __init__(self, make_client: Callable[[str], Client], specs: list[HollowSpec], data_dir: Path,
                 lease_interval: float = 10.0, cpu: str = "", memory: str = "") -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.lease_interval = lease_interval
        self.nodes = [HollowNode(make_client(s.name), s, Path(data_dir), lease_interval, cpu, memory) for s in specs]

    async def start(self) -> None:
        gate = asyncio.Semaphore(REGISTER_IN_FLIGHT)

        async def one(n: HollowNode) -> None:
            async with gate:
                await n.register()
                await n.kubelet.start()
            # The first renewal was part of registration; spread the next ones over one interval.
            n._heartbeat = asyncio.create_task(n.run_heartbeat(random.uniform(0, self.lease_interval)),
                                               name=f"hollow heartbeat {n.spec.name}")
        await asyncio.gather(*(one(n) for n in self.nodes))

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
