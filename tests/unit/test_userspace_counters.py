"""The userspace plane's traffic counts (entries, endpoints, active, bytes; UDP sessions), its
snapshot in the wire format, and the `pocketkube_proxy_*` Prometheus families."""

from __future__ import annotations

import asyncio
import itertools
import random

from pocketkube.api.traffic import EndpointCount, EntryCount, RejectCount, TrafficSnapshot
from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.runner import ServiceProxy
from pocketkube.proxy.traffic_metrics import families
from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
from pocketkube.testing.waits import wait_for_async

NODE, NODE_IP = "unit-ctr", "127.201.0.21"
_ips = itertools.count(random.randint(1, 200))


def next_ip(prefix: str) -> str:
    return f"{prefix}.{next(_ips) % 250 + 1}"


async def echo_server(ip: str):
    async def handle(reader, writer):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, ip, 0)
    return server, server.sockets[0].getsockname()[1]


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data + b"!", addr)


def model(ip: str, port: int, protocol="TCP", node_port=30555, pod="web-1") -> tuple[dict, ServiceEntry]:
    sp = ServicePort("default", "web", "http", protocol, 8080, cluster_ips=(next_ip("127.203.1"),),
                     node_port=node_port)
    e = ServiceEntry(sp, (Endpoint(ip, port, NODE, pod=pod),))
    return {(sp.key, protocol): e}, e


async def test_tcp_entries_endpoints_active_and_bytes():
    ip = next_ip("127.202.1")
    server, port = await echo_server(ip)
    plane = UserspaceDataPlane(NODE, NODE_IP)
    await plane.start()
    try:
        m, e = model(ip, port)
        await plane.apply(m)
        for _ in range(3):
            reader, writer = await asyncio.open_connection(NODE_IP, 30555)
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"
            writer.close()
        reader, writer = await asyncio.open_connection(e.port.cluster_ips[0], 8080)  # stays open
        writer.write(b"abc")
        assert await reader.readexactly(3) == b"abc"
        stats = plane.endpoint_stats[("default/web:http", "TCP", f"{ip}:{port}")]
        await wait_for_async(lambda: stats.active == 1, timeout=5)
        snap = (await plane.traffic()).to_json()
        assert snap["dataplane"] == "userspace" and snap["rejected"] == []
        assert sorted((x["kind"], x["connections"]) for x in snap["entries"]) == [("ClusterIP", 1), ("NodePort", 3)]
        (endpoint,) = snap["endpoints"]
        assert endpoint | {"time": None} == {
            "namespace": "default", "service": "web", "portName": "http", "protocol": "TCP", "ip": ip, "port": port,
            "pod": "web-1", "connections": 4, "active": 1, "bytesIn": 18, "bytesOut": 18, "time": None}
        writer.close()
        await wait_for_async(lambda: stats.active == 0, timeout=5)
        # The endpoint leaves: its counts go once nothing is open to it.
        await plane.apply({k: ServiceEntry(e.port, ()) for k in m})
        assert (await plane.traffic()).endpoints == ()
    finally:
        await plane.stop()
        server.close()


async def test_udp_sessions_count_as_connections():
    ip = next_ip("127.202.2")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=(ip, 0))
    port = transport.get_extra_info("sockname")[1]
    plane = UserspaceDataPlane(NODE, NODE_IP, udp_idle_timeout=0.1, bind_retry_interval=0.05)
    await plane.start()
    try:
        m, e = model(ip, port, protocol="UDP", node_port=0)
        await plane.apply(m)
        answers: asyncio.Queue = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                answers.put_nowait(data)

        client, _ = await loop.create_datagram_endpoint(Client, remote_addr=(e.port.cluster_ips[0], 8080))
        for _ in range(3):  # one session: one client address
            client.sendto(b"ping")
            assert await asyncio.wait_for(answers.get(), 2) == b"ping!"
        client.close()
        (ep,) = (await plane.traffic()).endpoints
        assert (ep.connections, ep.active, ep.bytesIn, ep.bytesOut) == (1, 1, 12, 15)
        stats = plane.endpoint_stats[("default/web:http", "UDP", f"{ip}:{port}")]
        await wait_for_async(lambda: stats.active == 0, timeout=5)  # the idle session expires
    finally:
        await plane.stop()
        transport.close()


SNAP = TrafficSnapshot("node-1", "userspace", 1.0,
                       (EntryCount("default", "web", "", "TCP", "NodePort", "127.0.1.1", 30008, 12),),
                       (EndpointCount("default", "web", "", "TCP", "10.244.1.5", 80, "web-abc", 40, 2, 1234, 5678),),
                       (RejectCount("default", "x", "", "TCP", "10.96.0.20", 80, 3),))


def test_snapshot_round_trips_the_wire_format():
    assert TrafficSnapshot.from_json(SNAP.to_json()) == SNAP


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(x.name, frozenset(x.labels.items())): x.value
            for fam in text_string_to_metric_families(text) for x in fam.samples}


def test_prometheus_families_and_labels():
    from prometheus_client import CollectorRegistry, generate_latest

    class C:
        def collect(self):
            return families(SNAP)

    reg = CollectorRegistry()
    reg.register(C())  # type: ignore[arg-type]
    got = samples(generate_latest(reg).decode())
    base = {"node": "node-1", "namespace": "default", "service": "web", "port": "", "protocol": "TCP",
            "dataplane": "userspace"}
    ep = base | {"endpoint": "10.244.1.5:80", "pod": "web-abc"}
    assert got[("pocketkube_proxy_entry_connections_total",
                frozenset((base | {"kind": "NodePort", "address": "127.0.1.1:30008"}).items()))] == 12
    assert got[("pocketkube_proxy_endpoint_connections_total", frozenset(ep.items()))] == 40
    assert got[("pocketkube_proxy_endpoint_active_connections", frozenset(ep.items()))] == 2
    assert got[("pocketkube_proxy_endpoint_bytes_total", frozenset((ep | {"direction": "in"}).items()))] == 1234
    assert got[("pocketkube_proxy_endpoint_bytes_total", frozenset((ep | {"direction": "out"}).items()))] == 5678
    assert got[("pocketkube_proxy_rejected_connections_total",
                frozenset((base | {"service": "x", "address": "10.96.0.20:80"}).items()))] == 3


async def test_service_proxy_serves_fresh_traffic_in_its_metrics():
    class Plane:
        name = "userspace"

        async def traffic(self):
            return SNAP

    proxy = ServiceProxy(None, "node-1", "127.0.1.1", Plane())  # type: ignore[arg-type]
    assert "pocketkube_proxy_entry_connections_total" in (await proxy.prometheus_text()).decode()
    assert "kubeproxy_sync_proxy_rules_duration_seconds" in proxy.metrics_text().decode()
    assert await proxy.traffic() is SNAP


async def test_agent_serves_traffic_and_metrics_with_the_node_token():
    import aiohttp

    from pocketkube.agent.logserver import LogServer

    class Plane:
        name = "userspace"

        async def traffic(self):
            return SNAP

    server = LogServer(None, "127.0.0.1", 0, "node-token")  # type: ignore[arg-type]
    port = await server.start()
    base = f"http://127.0.0.1:{port}"
    good = {"Authorization": "Bearer node-token"}
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/proxy/traffic", headers=good) as r:
                assert r.status == 503  # no proxy yet
            server.proxy = ServiceProxy(None, "node-1", "127.0.1.1", Plane())  # type: ignore[arg-type]
            for path in ("/proxy/traffic", "/metrics"):
                async with s.get(base + path, headers={"Authorization": "Bearer other"}) as r:
                    assert r.status == 401
            async with s.get(f"{base}/proxy/traffic", headers=good) as r:
                assert r.status == 200 and TrafficSnapshot.from_json(await r.json()) == SNAP
            async with s.get(f"{base}/metrics", headers=good) as r:
                assert r.status == 200 and r.content_type == "text/plain"
                assert "pocketkube_proxy_endpoint_connections_total{" in await r.text()
    finally:
        await server.stop()


def test_prune_keeps_open_endpoints_and_renames_reused_addresses():
    from pocketkube.proxy.userspace.stats import EndpointStats, prune

    sp = ServicePort("default", "web", "", "TCP", 80)
    old, gone, busy = (Endpoint("127.202.9.2", 80, pod="old"), Endpoint("127.202.9.3", 80, pod="gone"),
                       Endpoint("127.202.9.4", 80, pod="busy"))
    stats = {("default/web", "TCP", e.address): EndpointStats(e) for e in (old, gone, busy)}
    stats[("default/web", "TCP", busy.address)].active = 1
    stats[("default/other", "TCP", gone.address)] = EndpointStats(gone)  # another service port: untouched
    prune(stats, ("default/web", "TCP"), ServiceEntry(sp, (Endpoint("127.202.9.2", 80, pod="new"),)))
    assert set(stats) == {("default/web", "TCP", old.address), ("default/web", "TCP", busy.address),
                          ("default/other", "TCP", gone.address)}
    assert stats[("default/web", "TCP", old.address)].endpoint.pod == "new"


def test_traffic_counters_flag_takes_kubernetes_booleans():
    from pocketkube.cli import _parser

    agent = ["agent", "--server", "https://s:6443", "--token-file", "t", "--ca-file", "c", "--node-name", "n", "--node-ip",
             "127.0.1.1", "--pod-cidr", "127.244.1.0/24", "--data-dir", "d"]
    p = _parser()
    assert p.parse_args(agent).traffic_counters is True
    assert p.parse_args([*agent, "--traffic-counters=false"]).traffic_counters is False
    assert p.parse_args([*agent, "--traffic-counters"]).traffic_counters is True
    assert p.parse_args(["up", "--traffic-counters=0"]).traffic_counters is False
