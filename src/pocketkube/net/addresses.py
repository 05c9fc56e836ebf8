"""The address plans of a single-machine cluster (pure: no I/O here).

Process mode: everything in 127.0.0.0/8, so nothing leaves the machine. Container mode (pods in
their own network namespaces): kind's ranges, each routed to a local bridge (net.hostnet).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
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


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_loopback_range(cidr: str) -> bool:
    return ipaddress.ip_network(cidr, strict=False).subnet_of(ipaddress.ip_network("127.0.0.0/8"))


# Container mode (pods in their own network namespaces): 127/8 cannot work there, since inside a
# pod's namespace all of 127/8 is the pod's own loopback. kind's familiar defaults instead.
CONTAINER_POD_CIDR_BASE = "10.244.0.0/16"
CONTAINER_SERVICE_CIDR = "10.96.0.0/16"
CONTAINER_NODE_IP_BASE = "10.250.0.0"
CONTAINER_LOAD_BALANCER_POOL = "10.250.1.0/24"
# The `up` flag that moves each range, named in every error so the fix is one flag away.
FLAGS = {"pods": "--pod-cidr-base", "services": "--service-cidr", "nodes": "--node-ip-base",
         "load balancers": "--load-balancer-pool"}
BRIDGE_PREFIX = "pk"


class PlanError(ValueError):
    """The address plan cannot work; str() says why and which flag to change."""


def cluster_id(resolved_data_dir: str) -> str:
    """Four hex digits naming a cluster's host objects (bridges, nft table): the first of
    sha256(resolved data dir), so two clusters on one host (a developer's and a test's) differ."""
    return hashlib.sha256(resolved_data_dir.encode()).hexdigest()[:4]


def cluster_bridge(cid: str) -> str:
    return f"{BRIDGE_PREFIX}{cid}c"


def node_bridge(cid: str, index: int) -> str:
    return f"{BRIDGE_PREFIX}{cid}n{index}"


def is_cluster_device(name: str, cid: str) -> bool:
    """Whether a link name is one of this cluster's bridges."""
    return name.startswith(f"{BRIDGE_PREFIX}{cid}") and len(name) > len(BRIDGE_PREFIX) + len(cid)


def looks_like_pocketkube_bridge(name: str) -> bool:
    return re.fullmatch(rf"{BRIDGE_PREFIX}[0-9a-f]{{4}}(c|n\d+)", name) is not None


@dataclass(frozen=True)
class ContainerNodePlan(NodePlan):
    gateway: str  # host side of the node bridge, first address of pod_cidr
    bridge: str


@dataclass(frozen=True)
class ContainerPlan:
    cluster_id: str
    pod_cidr: str  # the whole pod range; node i has its i-th /24
    service_cidr: str
    node_cidr: str  # the /24 holding node IPs, on the cluster bridge
    load_balancer_pool: str
    nodes: tuple[ContainerNodePlan, ...]
    # The API server's own address on the cluster bridge (the node range's last usable one, not
    # a node's: a node IP belongs to its node). Pods reach it; 127.0.0.1 is their own loopback.
    apiserver_ip: str

    @property
    def cluster_bridge(self) -> str:
        return cluster_bridge(self.cluster_id)

    @property
    def ranges(self) -> dict[str, str]:
        """Every cluster range by name (the keys of FLAGS)."""
        return {"pods": self.pod_cidr, "services": self.service_cidr, "nodes": self.node_cidr,
                "load balancers": self.load_balancer_pool}

    def pod_routes(self) -> list[str]:
        """What a pod routes via its node bridge's gateway: the cluster ranges, never 0.0.0.0/0
        (pod egress to the outside is a separate, explicit choice)."""
        nets = [ipaddress.ip_network(c) for c in self.ranges.values()]
        return [str(n) for n in ipaddress.collapse_addresses(nets)]


def _network(value: str, what: str, flag: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise PlanError(f"{flag} {value!r} is not an IPv4 network (e.g. {_EXAMPLES[what]})") from None
    if net.version != 4:
        raise PlanError(f"{flag} {value}: the {what} range must be IPv4")
    if net.subnet_of(ipaddress.ip_network("127.0.0.0/8")) or net.overlaps(ipaddress.ip_network("127.0.0.0/8")):
        raise PlanError(f"{flag} {value}: with pods in their own network namespaces the {what} range cannot "
                        "be in 127.0.0.0/8 (there it is each pod's own loopback); "
                        f"the default is {_EXAMPLES[what]}")
    return net


_EXAMPLES = {"pods": CONTAINER_POD_CIDR_BASE, "services": CONTAINER_SERVICE_CIDR,
             "nodes": CONTAINER_NODE_IP_BASE, "load balancers": CONTAINER_LOAD_BALANCER_POOL}


def container_plan(cid: str, count: int, pod_cidr_base: str = CONTAINER_POD_CIDR_BASE,
                   service_cidr: str = CONTAINER_SERVICE_CIDR, node_ip_base: str = CONTAINER_NODE_IP_BASE,
                   load_balancer_pool: str = CONTAINER_LOAD_BALANCER_POOL, prefix: str = "node") -> ContainerPlan:
    """The container-mode plan: node i (1-based) gets IP node_ip_base+i on the cluster bridge and
    the i-th /24 of the pod range on its own bridge, gateway .1. PlanError when it cannot work
    (a bad or 127/8 range, ranges overlapping each other, too many nodes)."""
    pods = _network(pod_cidr_base, "pods", FLAGS["pods"])
    services = _network(service_cidr, "services", FLAGS["services"])
    try:
        base = ipaddress.IPv4Address(node_ip_base)
    except ValueError:
        raise PlanError(f"{FLAGS['nodes']} {node_ip_base!r} is not an IPv4 address "
                        f"(e.g. {CONTAINER_NODE_IP_BASE})") from None
    node_net = _network(f"{base}/24", "nodes", FLAGS["nodes"])
    pool = _network(load_balancer_pool, "load balancers", FLAGS["load balancers"])
    ranges = {"pods": pods, "services": services, "nodes": node_net, "load balancers": pool}
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if ranges[a].overlaps(ranges[b]):
                raise PlanError(f"the {a} range {ranges[a]} ({FLAGS[a]}) overlaps the {b} range {ranges[b]} "
                                f"({FLAGS[b]}): change one of them")
    room = 2 ** (24 - pods.prefixlen) - 1 if pods.prefixlen <= 24 else 0  # x.x.0.0/24 is skipped
    if count > room:
        raise PlanError(f"{FLAGS['pods']} {pods} has room for {room} node /24s, {count} needed: "
                        "use a larger range (a /16 holds 255)")
    apiserver_ip = node_net.broadcast_address - 1
    if int(base) + count >= int(apiserver_ip):
        raise PlanError(f"{FLAGS['nodes']} {node_ip_base}: {count} node IPs do not fit in {node_net} "
                        f"below the API server's {apiserver_ip}")
    nodes = []
    for i in range(1, count + 1):
        subnet = ipaddress.ip_network((int(pods.network_address) + i * 256, 24))
        nodes.append(ContainerNodePlan(f"{prefix}-{i}", str(base + i), str(subnet), str(subnet.network_address + 1),
                                       node_bridge(cid, i)))
    return ContainerPlan(cid, str(pods), str(services), str(node_net), str(pool), tuple(nodes), str(apiserver_ip))


def kubernetes_service_ip(service_cidr: str) -> str:
    """The `kubernetes` Service's ClusterIP: the Service range's first usable address, as in
    every Kubernetes cluster (10.96.0.1 for 10.96.0.0/16)."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 1)


def dns_service_ip(service_cidr: str) -> str:
    """kube-dns's ClusterIP: the Service range's tenth address, as kubeadm and kind choose
    (10.96.0.10 for 10.96.0.0/16). It lies in the allocator's static band, which random
    allocation uses last, so nothing takes it before the DNS creates its Service."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 10)


def process_dns_address(node_ip_base: str) -> str:
    """Where the process mode's cluster DNS listens: the node /24's .254 (nodes are .1, .2, ...),
    the address the API server takes on the node range in container mode."""
    return str(ipaddress.ip_network(f"{node_ip_base}/24", strict=False).broadcast_address - 1)


def host_conflicts(plan: ContainerPlan, addresses: Iterable[tuple[str, str]],
                   routes: Iterable[tuple[str, str]]) -> list[str]:
    """Why the plan would collide with this host: a cluster range overlapping a host interface's
    network (`addresses`: (interface, cidr)) or a route that is not ours (`routes`: (destination
    cidr, device)); [] when it is clear. Our own bridges and default routes are ignored."""
    problems = []
    checks = [(f"{cidr} on {dev} (a host interface's network)", cidr, dev) for dev, cidr in addresses]
    checks += [(f"the host route {dst}" + (f" via {dev}" if dev else ""), dst, dev) for dst, dev in routes]
    for what, cidr, dev in checks:
        if dev and is_cluster_device(dev, plan.cluster_id):
            continue
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version != 4 or net.prefixlen == 0 or net.is_loopback:
            continue
        hint = " (another pocketkube cluster? stop it or give this one other ranges)" \
            if dev and looks_like_pocketkube_bridge(dev) else ""
        for name, rng in plan.ranges.items():
            if net.overlaps(ipaddress.ip_network(rng)):
                problems.append(f"the {name} range {rng} overlaps {what}{hint}: pick another range with {FLAGS[name]}")
    return list(dict.fromkeys(problems))
