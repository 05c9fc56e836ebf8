"""The address plan of a single-machine cluster: everything in 127.0.0.0/8, so nothing leaves it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: str
    pod_cidr: str


def node_plan(count: int, node_base: str = "127.0.1.0", pod_base: str = "127.244.0.0/16",
              prefix: str = "node") -> list[NodePlan]:
    """Node i (1-based) gets IP node_base+i and the i-th /24 of the pod range."""
    base = ipaddress.ip_address(node_base)
    pods = ipaddress.ip_network(pod_base)
    subnets = pods.subnets(new_prefix=24)
    next(subnets)  # skip x.x.0.0/24 so that node i has pod CIDR x.x.i.0/24
    plans = []
    for i in range(1, count + 1):
        plans.append(NodePlan(f"{prefix}-{i}", str(base + i), str(next(subnets))))
    return plans


def is_loopback_range(cidr: str) -> bool:
    return ipaddress.ip_network(cidr, strict=False).subnet_of(ipaddress.ip_network("127.0.0.0/8"))
