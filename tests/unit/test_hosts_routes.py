"""host-gw: the route decision (pure), the masquerade table, and how a Node reads as a peer."""

from __future__ import annotations

from pocketkube.agent.routes import node_peer
from pocketkube.net.hostgw import Peer, desired_routes, render_masquerade_table, route_changes, valid_cidr

CONNECTED = ["10.251.0.11/24"]


def peers(*rows: tuple[str, str, str]) -> list[Peer]:
    return [Peer(*r) for r in rows]


def test_routes_to_every_other_node_on_a_connected_subnet():
    got = desired_routes(peers(("h1", "10.252.0.0/24", "10.251.0.11"), ("h2", "10.252.1.0/24", "10.251.0.12"),
                               ("h3", "10.252.2.0/24", "10.251.0.13")), "h1", CONNECTED, "10.252.0.0/24")
    assert got == {"10.252.1.0/24": "10.251.0.12", "10.252.2.0/24": "10.251.0.13"}


def test_skips_what_must_not_be_routed():
    got = desired_routes(peers(
        ("far", "10.252.5.0/24", "192.0.2.7"),          # not on a connected subnet: needs an overlay
        ("nocidr", "", "10.251.0.14"),                   # IPAM has not served it yet
        ("noip", "10.252.6.0/24", ""),                   # never posted status
        ("bad", "10.252.7.1/24", "10.251.0.15"),         # host bits: not a network
        ("default", "0.0.0.0/0", "10.251.0.16"),         # never a default route
        ("mine", "10.252.0.128/25", "10.251.0.17"),      # overlaps this node's own range
        ("bcast", "10.252.8.0/24", "10.251.0.255"),      # the subnet's broadcast address
        ("v6", "fd00::/64", "10.251.0.18"),
        ("ok", "10.252.9.0/24", "10.251.0.19"),
    ), "h1", CONNECTED, "10.252.0.0/24")
    assert got == {"10.252.9.0/24": "10.251.0.19"}


def test_a_range_claimed_by_two_nodes_gets_no_route():
    got = desired_routes(peers(("a", "10.252.1.0/24", "10.251.0.12"), ("b", "10.252.1.0/24", "10.251.0.13")),
                         "h1", CONNECTED)
    assert got == {}


def test_route_changes():
    replace, delete = route_changes({"10.252.1.0/24": "10.251.0.12", "10.252.2.0/24": "10.251.0.13"},
                                    {"10.252.1.0/24": "10.251.0.12", "10.252.2.0/24": "10.251.0.99",
                                     "10.252.3.0/24": "10.251.0.14"})
    assert replace == {"10.252.2.0/24": "10.251.0.13"}
    assert delete == ["10.252.3.0/24"]


def test_masquerade_table():
    script = render_masquerade_table(["10.252.1.0/24"], ["10.252.0.0/24", "10.252.1.0/24"])
    assert "elements = { 10.252.1.0/24 }" in script
    assert "ct status dnat ip daddr @remote-pods ip saddr != @pod-ranges masquerade" in script
    assert script.startswith("add table ip pocketkube-hostgw\ndelete table ip pocketkube-hostgw\n")
    assert "elements" not in render_masquerade_table([], []).split("remote-pods")[1].split("\n")[0]


def test_valid_cidr():
    assert valid_cidr("10.252.0.0/24")
    assert not valid_cidr("10.252.0.1/24") and not valid_cidr("0.0.0.0/0") and not valid_cidr("x")


def test_node_peer():
    node = {"metadata": {"name": "h2"}, "spec": {"podCIDR": "10.252.1.0/24", "podCIDRs": ["10.252.1.0/24"]},
            "status": {"addresses": [{"type": "Hostname", "address": "h2"},
                                     {"type": "InternalIP", "address": "10.251.0.12"}]}}
    assert node_peer(node) == Peer("h2", "10.252.1.0/24", "10.251.0.12")
    assert node_peer({"metadata": {"name": "x"}}) == Peer("x", "", "")


class FakeKernel:
    """net.hostgw's I/O as a dict of our routes (cidr → gateway)."""

    def __init__(self) -> None:
        self.routes: dict[str, str] = {"10.252.9.0/24": "10.251.0.19"}  # a stale one of a previous run
        self.masquerade: tuple[list[str], list[str]] | None = None

    def install(self, monkeypatch) -> None:
        from pocketkube.net import hostgw

        monkeypatch.setattr(hostgw, "enable_forwarding", lambda: None)
        monkeypatch.setattr(hostgw, "connected_networks", lambda: ["10.251.0.11/24"])
        monkeypatch.setattr(hostgw, "current_routes", lambda: dict(self.routes))
        monkeypatch.setattr(hostgw, "apply_changes", self.apply)
        monkeypatch.setattr(hostgw, "setup_masquerade",
                            lambda remote, pods: setattr(self, "masquerade", (sorted(remote), sorted(pods))))
        monkeypatch.setattr(hostgw, "remove_masquerade", lambda: setattr(self, "masquerade", None))

    def apply(self, replace, delete):
        self.routes.update(replace)
        for c in delete:
            self.routes.pop(c, None)
        return []


def fake_node(name: str, cidr: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


async def test_routes_follow_the_nodes_and_go_on_stop(monkeypatch):
    from async_waits import until

    from pocketkube.agent.routes import NODES, HostGatewayRoutes
    from pocketkube.testing.fakeclient import FakeClient

    kernel = FakeKernel()
    kernel.install(monkeypatch)
    fake = FakeClient((NODES, fake_node("h1", "10.252.0.0/24", "10.251.0.11")),
                      (NODES, fake_node("h2", "10.252.1.0/24", "10.251.0.12")))
    routes = HostGatewayRoutes(fake, "h1", "10.252.0.0/24")
    await routes.start()
    try:
        await until(lambda: kernel.routes == {"10.252.1.0/24": "10.251.0.12"}, "h2's route, the stale one gone")
        assert kernel.masquerade == (["10.252.1.0/24"], ["10.252.0.0/24", "10.252.1.0/24"])
        await fake.create(NODES, fake_node("h3", "10.252.2.0/24", "10.251.0.13"))
        await until(lambda: kernel.routes.get("10.252.2.0/24") == "10.251.0.13", "h3's route")
        await fake.delete(NODES, "", "h2")
        await until(lambda: "10.252.1.0/24" not in kernel.routes, "h2's route removed with its Node")
        kernel.routes.pop("10.252.2.0/24")  # someone deletes ours: the periodic check puts it back
        routes.resync()
        await until(lambda: "10.252.2.0/24" in kernel.routes, "h3's route back")
    finally:
        await routes.stop()
    assert kernel.routes == {} and kernel.masquerade is None


async def test_agent_without_pod_cidr_registers_a_node_without_one(tmp_path):
    from pocketkube.agent.node import NodeAgent
    from pocketkube.agent.routes import NODES
    from pocketkube.testing.fakeclient import FakeClient

    fake = FakeClient()
    agent = NodeAgent(fake, "h1", "10.251.0.11", "", tmp_path, 10250)
    node = await agent.ensure_node()
    assert "podCIDR" not in (node.get("spec") or {})
    again = await agent.ensure_node()  # exists: read back, not recreated
    assert again["metadata"]["uid"] == node["metadata"]["uid"]
    await fake.patch(NODES, "", "h1", {"spec": {"podCIDR": "10.252.4.0/24", "podCIDRs": ["10.252.4.0/24"]}})
    await agent.register()  # keeps what node IPAM gave
    assert next(iter(fake.objects(NODES)))["spec"]["podCIDR"] == "10.252.4.0/24"
