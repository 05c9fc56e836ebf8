"""Node IPAM: the CIDR set (pure) and the controller on the FakeClient."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.nodeipam import CIDRSet, CIDRSetFull, NodeIPAMController, node_cidrs
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

NODES = BY_PLURAL[("", "nodes")]
EVENTS = BY_PLURAL[("", "events")]


def node(name: str, cidr: str = "") -> dict:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


def obj(fake: FakeClient, name: str) -> dict:
    return next((o for o in fake.objects(NODES) if o["metadata"]["name"] == name), {})


def test_allocates_round_robin_and_skips_used():
    s = CIDRSet("10.252.0.0/22")
    assert s.occupy("10.252.1.0/24")
    assert [s.allocate() for _ in range(3)] == ["10.252.0.0/24", "10.252.2.0/24", "10.252.3.0/24"]
    with pytest.raises(CIDRSetFull):
        s.allocate()
    s.release("10.252.0.0/24")
    assert s.allocate() == "10.252.0.0/24"


def test_released_block_is_not_reused_at_once():
    s = CIDRSet("10.252.0.0/22")
    first = s.allocate()
    s.release(first)
    assert s.allocate() == "10.252.1.0/24"  # round-robin: a deleted node's routes may still linger


def test_foreign_ranges_are_not_ours():
    s = CIDRSet("10.252.0.0/16")
    assert s.index("10.252.7.0/24") == 7
    for foreign in ("10.253.0.0/24", "10.252.7.0/25", "10.252.7.1/24", "bogus", "fd00::/64"):
        assert s.index(foreign) is None
        assert not s.occupy(foreign)


@pytest.mark.parametrize("cidr, mask", [("10.0.0.0/24", 16), ("10.0.0.0/8", 25), ("10.0.0.1/16", 24)])
def test_bad_configuration(cidr, mask):
    with pytest.raises(ValueError):
        CIDRSet(cidr, mask)


def test_node_cidrs():
    assert node_cidrs(node("a", "10.1.0.0/24")) == ["10.1.0.0/24"]
    assert node_cidrs({"spec": {"podCIDR": "10.2.0.0/24"}}) == ["10.2.0.0/24"]
    assert node_cidrs({"metadata": {"name": "x"}}) == []


async def test_controller_allocates_keeps_releases_and_reports_exhaustion():
    # One node of `up` brought its own block; the rest come from the controller.
    fake = FakeClient((NODES, node("up-1", "10.252.0.0/24")), (NODES, node("a")))

    def build(informers, recorder):
        return NodeIPAMController(fake, informers, recorder, "10.252.0.0/23")

    async with controllers_on(fake, build):
        got = await until(lambda: deep_get(obj(fake, "a"), "spec", "podCIDR"), "a's podCIDR")
        assert got == "10.252.1.0/24"
        assert deep_get(obj(fake, "a"), "spec", "podCIDRs") == ["10.252.1.0/24"]
        assert deep_get(obj(fake, "up-1"), "spec", "podCIDR") == "10.252.0.0/24"
        await fake.create(NODES, node("b"))
        await until(lambda: any(e.get("reason") == "CIDRNotAvailable" for e in fake.objects(EVENTS)),
                    "CIDRNotAvailable")
        event = next(e for e in fake.objects(EVENTS) if e.get("reason") == "CIDRNotAvailable")
        assert event["message"] == "Node b status is now: CIDRNotAvailable"
        assert event["involvedObject"]["name"] == "b"
        for beat in range(3):  # heartbeats of a waiting node: no new Event, no write
            await fake.patch(NODES, "", "b", {"metadata": {"labels": {"beat": str(beat)}}})
        await until(lambda: obj(fake, "b")["metadata"]["labels"] == {"beat": "2"}, "the heartbeats")
        await fake.delete(NODES, "", "a")
        c = await until(lambda: deep_get(obj(fake, "b"), "spec", "podCIDR"), "b's podCIDR once a block is free")
        assert c == "10.252.1.0/24"
        assert [e.get("count", 1) for e in fake.objects(EVENTS) if e.get("reason") == "CIDRNotAvailable"] == [1]


async def test_restart_rebuilds_from_nodes():
    fake = FakeClient(*((NODES, node(f"n{i}", f"10.252.{i}.0/24")) for i in range(3)), (NODES, node("new")))

    def build(informers, recorder):
        return NodeIPAMController(fake, informers, recorder, "10.252.0.0/16")

    async with controllers_on(fake, build):
        got = await until(lambda: deep_get(obj(fake, "new"), "spec", "podCIDR"), "podCIDR")
    assert got == "10.252.3.0/24"
