"""The nftables data plane against the real kernel, with real TCP and UDP traffic on loopback.

Needs root and a working nft; every table created here is deleted, even when a test fails.
Addresses are chosen away from the ones a running cluster uses (127.96.251.x VIPs,
127.244.25x.x backends, node IPs 127.0.1.25x).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest

from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.nftables import render
from pocketkube.proxy.nftables.nft import default_runner, nft_usable
from pocketkube.proxy.nftables.proxier import NftablesDataPlane
from pocketkube.testing.requires import NFT, is_root, requires

pytestmark = requires(is_root() and nft_usable(), NFT)

VIP = "127.96.251.10"
NODE_A, NODE_B = ("itest-a", "127.0.1.251"), ("itest-b", "127.0.1.252")
NODE_PORT = 30998


@pytest.fixture
async def planes():
    """Makes data planes; deletes their tables whatever happens."""
    made: list[NftablesDataPlane] = []

    async def make(node=NODE_A) -> NftablesDataPlane:
        plane = NftablesDataPlane(f"{node[0]}-{os.getpid()}", node[1])
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
    """Start TCP+UDP servers answering with their own ip:port; returns a factory."""
    servers, transports = [], []

    async def start(ip: str, port: int = 0) -> int:
        async def answer(reader, writer):
            writer.write(f"{ip}:{port_}".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, ip, port)
        port_ = server.sockets[0].getsockname()[1]
        servers.append(server)

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(f"udp {ip}:{port_}".encode(), addr)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=(ip, port_))
        transports.append(transport)
        return port_

    yield start
    for s in servers:
        s.close()
    for t in transports:
        t.close()


async def fetch(ip: str, port: int, timeout: float = 2.0) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    return data.decode()


async def fetch_udp(ip: str, port: int, timeout: float = 1.0) -> str:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            answer.done() or answer.set_result(data.decode())

        def error_received(self, exc):
            answer.done() or answer.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(ip, port))
    try:
        transport.sendto(b"hi")
        return await asyncio.wait_for(answer, timeout)
    finally:
        transport.close()


def model(*entries: ServiceEntry) -> dict:
    return {(e.port.key, e.port.protocol): e for e in entries}


def web(eps, protocol="TCP", **kw) -> ServiceEntry:
    sp = ServicePort("itest", "web", "", protocol, 80, (VIP,), NODE_PORT, **kw)
    return ServiceEntry(sp, tuple(sorted(eps)))


async def endpoints(backends, *ips: str, node=NODE_A[0]) -> list[Endpoint]:
    return [Endpoint(ip, await backends(ip), f"{node}-{os.getpid()}") for ip in ips]


async def test_cluster_ip_and_node_port_spread_over_endpoints(planes, backends):
    plane = await planes()
    eps = await endpoints(backends, "127.244.251.2", "127.244.251.3")
    await plane.apply(model(web(eps)))
    seen = Counter([await fetch(VIP, 80) for _ in range(30)] + [await fetch(NODE_A[1], NODE_PORT) for _ in range(30)])
    assert set(seen) == {e.address for e in eps}
    assert min(seen.values()) > 10


async def test_no_endpoints_refuses_at_once_tcp_and_udp(planes):
    plane = await planes()
    await plane.apply(model(web([]), web([], protocol="UDP")))
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await fetch(VIP, 80)
    with pytest.raises(ConnectionRefusedError):
        await fetch(NODE_A[1], NODE_PORT)
    with pytest.raises(ConnectionRefusedError):
        await fetch_udp(VIP, 80)
    assert time.monotonic() - started < 0.5


async def test_updates_move_traffic_and_same_port_serves_tcp_and_udp(planes, backends):
    plane = await planes()
    old, new = await endpoints(backends, "127.244.251.2", "127.244.251.3")
    await plane.apply(model(web([old]), web([old], protocol="UDP")))
    assert await fetch(VIP, 80) == old.address
    assert await fetch_udp(VIP, 80) == f"udp {old.address}"
    await plane.apply(model(web([new]), web([old], protocol="UDP")))
    assert {await fetch(VIP, 80) for _ in range(5)} == {new.address}
    assert plane.full_syncs == 1  # start only: both updates were deltas


async def test_session_affinity_sticks(planes, backends):
    plane = await planes()
    eps = await endpoints(backends, "127.244.251.2", "127.244.251.3", "127.244.251.4")
    await plane.apply(model(web(eps, affinity_timeout=60)))
    assert len({await fetch(VIP, 80) for _ in range(15)}) == 1
    await plane.apply(model(web(eps)))
    assert len({await fetch(VIP, 80) for _ in range(30)}) > 1


async def test_external_local_node_port_only_local_endpoints(planes, backends):
    plane = await planes()
    local = await endpoints(backends, "127.244.251.2")
    remote = await endpoints(backends, "127.244.252.2", node=NODE_B[0])
    await plane.apply(model(web(remote, external_local=True)))
    with pytest.raises(asyncio.TimeoutError):  # dropped, as kube-proxy: no local endpoint
        await fetch(NODE_A[1], NODE_PORT, timeout=0.3)
    assert await fetch(VIP, 80) == remote[0].address  # ClusterIP still uses all endpoints
    await plane.apply(model(web(local + remote, external_local=True)))
    assert {await fetch(NODE_A[1], NODE_PORT) for _ in range(10)} == {local[0].address}


async def test_two_node_tables_share_a_vip_and_keep_own_node_ports(planes, backends):
    a, b = await planes(NODE_A), await planes(NODE_B)
    eps = await endpoints(backends, "127.244.251.2")
    await a.apply(model(web([])))  # node a lags: still believes there is no endpoint
    await b.apply(model(web(eps)))
    assert await fetch(VIP, 80) == eps[0].address  # a's reject never sees a VIP b translated
    assert await fetch(NODE_B[1], NODE_PORT) == eps[0].address
    with pytest.raises(ConnectionRefusedError):
        await fetch(NODE_A[1], NODE_PORT)


async def test_start_repairs_leftover_and_stop_removes_table(planes, backends):
    runner = default_runner()
    plane = NftablesDataPlane(f"{NODE_A[0]}-{os.getpid()}", NODE_A[1])
    table = plane.ctx.qualified_table
    try:
        runner.run_sync(f"add table {table}\nadd chain {table} leftover\n")
        plane = await planes()
        await plane.apply(model(web(await endpoints(backends, "127.244.251.2"))))
        assert await fetch(VIP, 80)
        listing = await _list(f"table {table}")
        assert "leftover" not in listing and "svc-itest/web/tcp/p80" in listing
        await plane.stop()
        assert plane.ctx.table not in await _list("tables")
    finally:
        runner.close()


async def _list(what: str) -> str:
    proc = await asyncio.create_subprocess_exec("nft", "list", *what.split(), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode()
