"""Address and port plans of named clusters (pure).

Every cluster owns a slot, chosen at its first `up` and kept in its plan file, so it comes back
on the same addresses. Slot k moves each range by k (slot 0 is today's defaults, so the default
cluster keeps them): API port 6443+k; process mode nodes 127.0.(1+k).x, pods 127.(244+k)/16,
Services 127.(96+k)/16, load balancers 127.(200+k).0/24; container mode nodes 10.250.(2k).x on
the cluster's own bridge (its name comes from the data dir, so clusters differ), load balancers
10.250.(2k+1).0/24, pods 10.(244-k)/16 (10.250 is the nodes), Services 10.(96+k)/16. The NodePort range stays
30000-32767 in every cluster: node IPs differ, so do the NodePorts' addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

BASE_PORT = 6443
SLOTS = 12  # pods 127.244+k/16 must stay in 127/8: k <= 11
RANGE_KEYS = ("node_ip_base", "pod_cidr_base", "service_cidr", "load_balancer_pool")
FLAGS = {"node_ip_base": "--node-ip-base", "pod_cidr_base": "--pod-cidr-base", "service_cidr": "--service-cidr",
         "load_balancer_pool": "--load-balancer-pool", "port": "--port"}


class NoFreeSlot(ValueError):
    """Every slot collides with another cluster; str() says what to do."""


@dataclass(frozen=True)
class Recorded:
    """What another cluster's plan file says: its slot, port and ranges (as last used)."""
    name: str
    slot: int | None
    port: int | None
    ranges: Mapping[str, str]


def slot_plan(slot: int, runtime: str) -> dict[str, object]:
    """The port and ranges of slot `slot` for `runtime` ("containerd" or "process")."""
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot {slot} out of range 0-{SLOTS - 1}")
    if runtime == "containerd":
        ranges = {"node_ip_base": f"10.250.{2 * slot}.0", "pod_cidr_base": f"10.{244 - slot}.0.0/16",
                  "service_cidr": f"10.{96 + slot}.0.0/16", "load_balancer_pool": f"10.250.{2 * slot + 1}.0/24"}
    else:
        ranges = {"node_ip_base": f"127.0.{1 + slot}.0", "pod_cidr_base": f"127.{244 + slot}.0.0/16",
                  "service_cidr": f"127.{96 + slot}.0.0/16", "load_balancer_pool": f"127.{200 + slot}.0.0/24"}
    return {"port": BASE_PORT + slot, **ranges}


def networks(ranges: Mapping[str, object]) -> list[ipaddress.IPv4Network]:
    """The networks a plan occupies (a node base stands for its /24); unparsable values are skipped
    (the `up` that uses them reports them)."""
    nets = []
    for key in RANGE_KEYS:
        value = ranges.get(key)
        if not value:
            continue
        text = f"{value}/24" if key == "node_ip_base" else str(value)
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return nets


def collisions(plan: Mapping[str, object], other: Recorded) -> list[str]:
    """How `plan` collides with another cluster's recorded plan ([] when it does not)."""
    problems = []
    if plan.get("port") and plan.get("port") == other.port:
        problems.append(f"port {other.port}")
    mine = networks(plan)
    for net in networks(other.ranges):
        if any(net.overlaps(m) for m in mine):
            problems.append(str(net))
    return problems


def choose(runtime: str, explicit: Mapping[str, object], others: Iterable[Recorded], own_slot: int | None = None,
           port_free: Callable[[int], bool] = lambda port: True) -> tuple[int | None, dict[str, object]]:
    """The slot and plan (port and ranges) of a cluster's `up`.

    Explicit flags win over the slot's values. A cluster that has a slot keeps it (its addresses
    stay); a new one takes the first slot no other cluster holds whose port is free on this host
    and whose plan overlaps no other cluster's. A port of 0 (any free port) never collides.
    """
    others = list(others)
    taken = {o.slot for o in others if o.slot is not None}
    order = [own_slot] if own_slot is not None else [s for s in range(SLOTS) if s not in taken]
    tried: list[str] = []
    for slot in order:
        given = {k: v for k, v in explicit.items() if v is not None}
        auto = {k: v for k, v in slot_plan(slot, runtime).items() if k not in given}
        plan = {**auto, **given}
        # Only what the slot chose is checked: an explicit flag is the user's decision.
        clash = [f"{o.name} ({', '.join(c)})" for o in others if (c := collisions(auto, o))]
        if own_slot is None and "port" in auto and not port_free(int(plan["port"])):
            clash.append(f"port {plan['port']} is in use on this host")
        if not clash or own_slot is not None:
            # A plan given entirely by flags holds no slot: the slot's ranges stay free for others.
            return (None if not auto else slot), plan
        tried.append(f"slot {slot}: {'; '.join(clash)}")
    if not order:
        raise NoFreeSlot(f"all {SLOTS} cluster slots are taken by other clusters: delete one "
                         "(pocketkube down --name NAME --delete) or give --port and every range explicitly")
    raise NoFreeSlot("no free address plan; it would collide with " + " | ".join(tried[:3]) +
                     ": stop or delete another cluster, or give " + ", ".join(FLAGS.values()) + " explicitly")
