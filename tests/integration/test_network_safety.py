"""No packet addressed to a cluster range leaves through a non-loopback interface.

Every cluster address (node IPs, pods, Services, load balancers) lives in 127.0.0.0/8, which the
kernel routes to `lo`. These tests check that routing for samples of each range, that the nftables
plane never rewrites a destination out of 127/8, and, with a packet capture on every other
interface, that traffic to every range (live Services, addresses with no listener, a ClusterIP
whose proxy has stopped) puts nothing on the wire, for both data planes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import subprocess

import pytest

from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.select import nftables_usable
from pocketkube.testing.capture import (
    CONTROL_DESTINATION,
    PacketCapture,
    capture_usable,
    has_default_route,
    send_control_packet,
)
from pocketkube.testing.requires import NET_RAW, NFT, requires
from pocketkube.testing.waits import wait_for_async

# The default cluster ranges; the addresses used are clear of what a running cluster hands out.
RANGES = {"services": "127.96.0.0/16", "pods": "127.244.0.0/16", "load balancers": "127.200.0.0/24",
          "nodes": "127.0.1.0/24"}
NODE_IP, OTHER_NODE_IP = "127.0.1.247", "127.0.1.248"
VIP, UNUSED_VIP = "127.96.247.10", "127.96.247.11"
LB_IP, UNUSED_LB_IP = "127.200.0.247", "127.200.0.248"
POD_IP, SILENT_POD_IP = "127.244.247.2", "127.244.247.3"
NODE_PORT = 30947


def dataplanes() -> list:
    nft = requires(nftables_usable(), NFT)
    return [pytest.param("nftables", marks=nft), "userspace"]


def samples(cidr: str) -> list[str]:
    net = ipaddress.ip_network(cidr)
    return [str(net.network_address + 1), str(net.network_address + net.num_addresses // 2),
            str(net.broadcast_address - 1)]


def test_every_cluster_range_routes_to_loopback():
    for name, cidr in RANGES.items():
        for addr in samples(cidr):
            route = subprocess.run(["ip", "-o", "route", "get", addr], capture_output=True, text=True,
                                   check=True).stdout
            assert re.search(r"\bdev lo\b", route), f"{name} address {addr} routes elsewhere: {route}"


def poke(addr: str, port: int) -> None:
    """A TCP connect and a UDP datagram to addr:port, whatever answers (or not)."""
    try:
        with socket.create_connection((addr, port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.recv(100)
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"hello", (addr, port))
        except OSError:
            pass


def traffic_to_every_range() -> None:
    targets = [(VIP, 80), (UNUSED_VIP, 80), (LB_IP, 80), (UNUSED_LB_IP, 80), (NODE_IP, NODE_PORT),
               (OTHER_NODE_IP, NODE_PORT), (POD_IP, 8080), (SILENT_POD_IP, 8080)]
    for cidr in RANGES.values():
        targets += [(addr, 80) for addr in samples(cidr)]
    for addr, port in targets:
        poke(addr, port)


def make_plane(kind: str):
    name = f"netsafety-{os.getpid()}"
    if kind == "nftables":
        from pocketkube.proxy.nftables.proxier import NftablesDataPlane

        return NftablesDataPlane(name, NODE_IP)
    from pocketkube.proxy.userspace.proxier import UserspaceDataPlane

    return UserspaceDataPlane(name, NODE_IP)


def model() -> dict:
    port = ServicePort("netsafety", "web", "", "TCP", 80, (VIP,), NODE_PORT, load_balancer_ips=(LB_IP,))
    entry = ServiceEntry(port, (Endpoint(POD_IP, 8080, f"netsafety-{os.getpid()}"),))
    return {(port.key, "TCP"): entry}


async def backend() -> asyncio.AbstractServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\npod")
        await writer.drain()
        writer.close()
    return await asyncio.start_server(answer, POD_IP, 8080)


async def fetch(addr: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), 2)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    return data


def nft_destinations(table: str) -> set[str]:
    """Every address a `dnat to` in the table rewrites to."""
    listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True,
                             check=True).stdout
    return set(re.findall(r"dnat to (\d+\.\d+\.\d+\.\d+)", listing))


@requires(capture_usable(), NET_RAW)
@pytest.mark.parametrize("kind", dataplanes())
async def test_no_cluster_packet_leaves_through_another_interface(kind):
    server = await backend()
    plane = make_plane(kind)
    capture = PacketCapture()
    try:
        with capture.running():
            await plane.start()
            await plane.apply(model())
            assert (await fetch(VIP, 80)).endswith(b"pod")  # the data plane is live, traffic is real
            assert (await fetch(NODE_IP, NODE_PORT)).endswith(b"pod")
            if kind == "nftables":
                rewrites = nft_destinations(plane.table)
                assert rewrites and all(ipaddress.ip_address(a).is_loopback for a in rewrites), rewrites
            await asyncio.to_thread(traffic_to_every_range)
            await plane.stop()  # the proxy stopped: its ClusterIP and NodePort have nothing behind them
            await asyncio.to_thread(traffic_to_every_range)
            if has_default_route():  # sent last: once the capture has it, it has every packet before it
                # Sent again until seen: the first may wait for the gateway's ARP answer, or be dropped.
                await wait_for_async(lambda: send_control_packet() or capture.saw_destination(CONTROL_DESTINATION[0]),
                                     timeout=10, interval=0.5,
                                     what="the capture to see the control packet (else it proves nothing)")
    finally:
        await plane.stop()
        server.close()
        await server.wait_closed()
    assert capture.packets_in(["127.0.0.0/8"]) == []
    if has_default_route():
        assert capture.saw_destination(CONTROL_DESTINATION[0]), "the capture saw nothing: it proves nothing"
