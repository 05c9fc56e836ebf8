"""The nftables plane's traffic counters against the real kernel: exact counts for real connections
on loopback, counts that survive endpoint churn and full syncs, and no double counting when
several node tables share the host (render.py's exactly-once argument).

Needs root and a working nft; every table made here is deleted. Addresses: node IPs 127.201.9.x,
VIPs 127.203.250.x, backends 127.202.x.x (this topic's own ranges).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.nftables import render
from pocketkube.proxy.nftables.nft import default_runner, nft_usable
from pocketkube.proxy.nftables.proxier import NftablesDataPlane
from pocketkube.testing.requires import NFT, is_root, requires

pytestmark = requires(is_root() and nft_usable(), NFT)

VIP = "127.203.250.10"
NODES = [(f"ctr-{c}-{os.getpid()}", f"127.201.9.{i}") for i, c in ((11, "a"), (12, "b"), (13, "c"))]
NODE_PORT = 30997


@pytest.fixture
async def planes():
    made: list[NftablesDataPlane] = []

    async def make(node=NODES[0]) -> NftablesDataPlane:
        plane = NftablesDataPlane(*node)
        made.append(plane)
        await plane.start()
        return plane

    try:
        yield make
    finally:
        runner = default_runner()
        try:
            for plane in made:
                runner.run_sync(render.render_delete(plane.ctx))
        finally:
            runner.close()


@pytest.fixture
async def backends():
    servers = []

    async def start(ip: str) -> Endpoint:
        async def answer(reader, writer):
            writer.write(ip.encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, ip, 0)
        servers.append(server)
        return Endpoint(ip, server.sockets[0].getsockname()[1], NODES[0][0], pod=f"pod-{ip.rsplit('.', 1)[1]}")

    yield start
    for s in servers:
        s.close()


async def fetch(ip: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    data = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    return data.decode()


def web(eps, **kw) -> dict:
    sp = ServicePort("ctr", "web", "", "TCP", 80, (VIP,), NODE_PORT, **kw)
    return {(sp.key, "TCP"): ServiceEntry(sp, tuple(sorted(eps)))}


async def counts(plane: NftablesDataPlane) -> tuple[dict, dict, dict]:
    snap = await plane.traffic()
    return ({(e.kind, e.ip): e.connections for e in snap.entries},
            {e.pod: e.connections for e in snap.endpoints},
            {r.ip: r.connections for r in snap.rejected})


async def test_node_port_connections_counted_exactly_at_entry_and_endpoints(planes, backends):
    plane = await planes()
    eps = [await backends(f"127.202.1.{i}") for i in (2, 3, 4)]
    await plane.apply(web(eps))
    served = [await fetch(NODES[0][1], NODE_PORT) for _ in range(60)]
    entries, endpoints, _ = await counts(plane)
    assert entries == {("NodePort", NODES[0][1]): 60, ("ClusterIP", VIP): 0}
    assert sum(endpoints.values()) == 60
    assert endpoints == {f"pod-{ip.rsplit('.', 1)[1]}": served.count(ip) for ip in {e.ip for e in eps}}


async def test_no_endpoints_counts_refusals_and_counts_survive_churn_and_full_sync(planes, backends):
    plane = await planes()
    await plane.apply(web([]))
    for _ in range(5):
        with pytest.raises(ConnectionRefusedError):
            await fetch(VIP, 80)
    assert (await counts(plane))[2] == {VIP: 5, NODES[0][1]: 0}
    a, b = await backends("127.202.1.2"), await backends("127.202.1.3")
    await plane.apply(web([a]))
    for _ in range(4):
        await fetch(VIP, 80)
    await plane.apply(web([a, b]))  # endpoint added: a's counter and the entry's go on
    entries, endpoints, rejected = await counts(plane)
    assert entries[("ClusterIP", VIP)] == 4 and endpoints == {"pod-2": 4, "pod-3": 0} and rejected[VIP] == 5
    await plane.apply(web([b]))  # a leaves: its counter with it
    await fetch(VIP, 80)
    plane._replace_table = True  # a full sync (as after a failed delta) carries values over
    await plane.apply(web([b]))
    entries, endpoints, rejected = await counts(plane)
    assert entries[("ClusterIP", VIP)] == 5 and endpoints == {"pod-3": 1} and rejected[VIP] == 5


async def test_three_node_tables_count_each_connection_once(planes, backends):
    eps = [await backends(f"127.202.2.{i}") for i in (2, 3)]
    tables = [await planes(node) for node in NODES]
    for plane in tables:
        await plane.apply(web(eps))
    for _ in range(20):
        await fetch(VIP, 80)
    for _ in range(10):
        await fetch(NODES[1][1], NODE_PORT)
    snaps = [await counts(p) for p in tables]
    assert sum(s[0].get(("ClusterIP", VIP), 0) for s in snaps) == 20  # one table translated each
    assert [s[0][("NodePort", ip)] for s, (_, ip) in zip(snaps, NODES, strict=True)] == [0, 10, 0]
    assert sum(sum(s[1].values()) for s in snaps) == 30


async def test_lagging_table_never_counts_a_rejection_another_table_serves(planes, backends):
    lagging, current = await planes(NODES[0]), await planes(NODES[1])
    await lagging.apply(web([]))
    await current.apply(web([await backends("127.202.3.2")]))
    for _ in range(5):
        await fetch(VIP, 80)
    assert (await counts(lagging))[2][VIP] == 0
    assert (await counts(current))[0][("ClusterIP", VIP)] == 5
    await current.apply(web([]))  # now nobody serves: exactly one table counts each refusal
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            await fetch(VIP, 80)
    assert (await counts(lagging))[2][VIP] + (await counts(current))[2][VIP] == 3


async def test_bridged_pod_tables_with_counters_are_accepted_by_the_kernel(backends):
    """Container mode adds forward/output no-endpoint checks and hairpin: the kernel takes their
    counter lookups too, and a host connection on loopback is still counted once."""
    plane = NftablesDataPlane(f"ctr-br-{os.getpid()}", "127.201.9.20", bridged_pods=True)
    await plane.start()
    try:
        ep = await backends("127.202.4.2")
        await plane.apply(web([ep]))
        await plane.apply(web([]))
        await plane.apply(web([ep]))
        for _ in range(3):
            await fetch(VIP, 80)
        entries, endpoints, rejected = await counts(plane)
        assert entries[("ClusterIP", VIP)] == 3 and endpoints == {"pod-2": 3} and rejected[VIP] == 0
        listing = (await asyncio.create_subprocess_exec("nft", "list", "table", *plane.ctx.qualified_table.split(),
                                                        stdout=asyncio.subprocess.PIPE))
        out, _ = await listing.communicate()
        assert out.decode().count("map @reject-counters") == 3  # input, forward, output
    finally:
        await plane.stop()
