"""The userspace data plane's own behaviour, the health-check server and the proxy runner."""

from __future__ import annotations

import asyncio
import itertools
import os
import random

import orjson
import pytest

from pocketkube.api import errors
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.proxy.healthcheck import HealthCheck, HealthCheckServers, render
from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort, build_model
from pocketkube.proxy.runner import ProxyMetrics, ServiceProxy
from pocketkube.proxy.select import make_data_plane
from pocketkube.proxy.userspace.affinity import AffinityTable
from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
from pocketkube.testing.requires import require_module
from pocketkube.testing.waits import wait_for_async

NODE, NODE_IP = "unit-node", "127.0.1.251"
_ips = itertools.count(random.randint(1, 200))


def next_ip(prefix: str) -> str:
    return f"{prefix}.{next(_ips) % 250 + 1}"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Echo:
    """A backend echoing everything (after its identity line) on a fresh pod IP."""

    async def start(self, port: int = 0) -> Echo:
        self.ip = next_ip("127.244.251")
        self.server = await asyncio.start_server(self._handle, self.ip, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader, writer) -> None:
        writer.write(f"{self.ip}\n".encode())
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()

    def close(self) -> None:
        self.server.close()


def entry(eps: list[tuple[str, int]], *, protocol="TCP", port=8080, node_port=0, affinity=0,
          cluster_ip: str | None = None) -> tuple[dict, ServiceEntry]:
    sp = ServicePort("default", "svc", "p", protocol, port, cluster_ips=(cluster_ip or next_ip("127.96.251"),),
                     node_port=node_port, affinity_timeout=affinity)
    e = ServiceEntry(sp, tuple(Endpoint(ip, p, NODE) for ip, p in eps))
    return {(sp.key, protocol): e}, e


@pytest.fixture
async def plane():
    dp = UserspaceDataPlane(NODE, NODE_IP, bind_retry_interval=0.05, udp_idle_timeout=0.2)
    await dp.start()
    yield dp
    await dp.stop()


async def ask(ip: str, port: int) -> str:
    async with asyncio.timeout(2):
        reader, writer = await asyncio.open_connection(ip, port)
        line = await reader.readline()
        writer.close()
    return line.decode().strip()


async def test_refusing_endpoint_is_skipped_for_another(plane):
    echo = await Echo().start()
    dead = next_ip("127.244.251")  # nothing listens there: refused
    model, e = entry([(dead, echo.port), (echo.ip, echo.port)])
    await plane.apply(model)
    for _ in range(10):
        assert await ask(e.port.cluster_ips[0], 8080) == echo.ip
    assert plane.connection_counts == {("default/svc:p", "TCP", f"{echo.ip}:{echo.port}"): 10}
    echo.close()


async def test_every_endpoint_refusing_resets_at_once(plane):
    model, e = entry([(next_ip("127.244.251"), 9)])
    await plane.apply(model)
    async with asyncio.timeout(1):
        reader, writer = await asyncio.open_connection(e.port.cluster_ips[0], 8080)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)
    writer.close()


async def test_request_sent_and_half_closed_before_the_backend_answers(plane):
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)])
    await plane.apply(model)
    reader, writer = await asyncio.open_connection(e.port.cluster_ips[0], 8080)
    writer.write(b"hello")
    writer.write_eof()
    async with asyncio.timeout(2):
        assert await reader.read() == f"{echo.ip}\nhello".encode()
    writer.close()
    echo.close()


async def test_large_transfer_with_backpressure_and_half_close(plane):
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)])
    await plane.apply(model)
    payload = os.urandom(8 << 20)
    reader, writer = await asyncio.open_connection(e.port.cluster_ips[0], 8080)
    assert (await reader.readline()).decode().strip() == echo.ip

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()  # half-close: the echo's answer must still come back

    sender = asyncio.create_task(send())
    async with asyncio.timeout(10):
        got = await reader.read(-1)
    await sender
    writer.close()
    assert got == payload
    echo.close()


async def test_many_connections_leave_nothing_behind(plane):
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)])
    await plane.apply(model)
    await asyncio.sleep(0)  # one loop turn: the listener's start-up callbacks run before the baseline
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    conns = [await asyncio.open_connection(e.port.cluster_ips[0], 8080) for _ in range(300)]
    for reader, _ in conns:
        await reader.readline()
    fe = plane.frontends[("TCP", e.port.cluster_ips[0], 8080)]
    assert len(fe.connections) == 300
    assert len(asyncio.all_tasks()) <= tasks + 300  # echo handlers only: no proxy task per connection
    for _, writer in conns:
        writer.close()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not fe.connections and open_fds() <= fds:
            break
    assert not fe.connections and open_fds() <= fds
    echo.close()


def test_splicing_on_uvloop():
    """The agent runs on uvloop, whose transports differ in details (e.g. data after pause_reading)."""
    uvloop = require_module("uvloop", "uvloop (pip install uvloop)")

    async def scenarios() -> None:
        dp = UserspaceDataPlane(NODE, NODE_IP)
        await dp.start()
        try:
            await test_request_sent_and_half_closed_before_the_backend_answers(dp)
            await test_large_transfer_with_backpressure_and_half_close(dp)
            await test_many_connections_leave_nothing_behind(dp)
        finally:
            await dp.stop()

    uvloop.run(scenarios())


async def test_no_endpoints_closes_the_listener(plane):
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)])
    await plane.apply(model)
    await ask(e.port.cluster_ips[0], 8080)
    empty = {k: ServiceEntry(v.port, ()) for k, v in model.items()}
    await plane.apply(empty)
    with pytest.raises(ConnectionRefusedError):
        await ask(e.port.cluster_ips[0], 8080)
    assert plane.listening_addresses() == set()
    await plane.apply(model)
    assert await ask(e.port.cluster_ips[0], 8080) == echo.ip
    echo.close()


async def test_shared_cluster_ip_is_taken_over_when_its_owner_stops(plane):
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)])
    other = UserspaceDataPlane("unit-node-2", "127.0.1.252", bind_retry_interval=0.05)
    await other.start()
    await plane.apply(model)
    await other.apply(model)
    vip = ("TCP", e.port.cluster_ips[0], 8080)
    assert vip in plane.listening_addresses() and vip not in other.listening_addresses()
    await plane.stop()
    for _ in range(40):
        await asyncio.sleep(0.05)
        if vip in other.listening_addresses():
            break
    assert await ask(vip[1], 8080) == echo.ip
    await other.stop()
    echo.close()


async def test_stop_closes_listeners_and_connections():
    dp = UserspaceDataPlane(NODE, NODE_IP)
    await dp.start()
    echo = await Echo().start()
    model, e = entry([(echo.ip, echo.port)], node_port=random.randint(30000, 32000))
    await dp.apply(model)
    reader, writer = await asyncio.open_connection(NODE_IP, e.port.node_port)
    await reader.readline()
    await dp.stop()
    async with asyncio.timeout(1):
        assert await reader.read() == b""  # the proxied connection was closed
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await ask(NODE_IP, e.port.node_port)
    echo.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)


async def test_udp_sessions_forward_and_expire(plane):
    loop = asyncio.get_running_loop()
    ip = next_ip("127.244.251")
    backend, _ = await loop.create_datagram_endpoint(UdpEcho, (ip, 0))
    model, e = entry([(ip, backend.get_extra_info("sockname")[1])], protocol="UDP", port=5353)
    await plane.apply(model)
    got: asyncio.Queue = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.put_nowait((data, addr))

    client, _ = await loop.create_datagram_endpoint(Client, remote_addr=(e.port.cluster_ips[0], 5353))
    client.sendto(b"hello")
    async with asyncio.timeout(2):
        assert await got.get() == (b"HELLO", (e.port.cluster_ips[0], 5353))  # reply from the frontend address
    fe = plane.frontends[("UDP", e.port.cluster_ips[0], 5353)]
    assert len(fe.sessions) == 1
    await wait_for(lambda: not fe.sessions)  # idle timeout 0.2 s, housekeeping every 0.05 s
    client.close()
    backend.close()


def test_affinity_table_expiry_and_usability():
    now = [100.0]
    table = AffinityTable(clock=lambda: now[0])
    a, b = Endpoint("127.244.1.2", 80), Endpoint("127.244.1.3", 80)
    table.remember("svc", "127.0.0.1", a, 10)
    assert table.lookup("svc", "127.0.0.1", {a, b}) == a
    assert table.lookup("svc", "127.0.0.2", {a, b}) is None
    assert table.lookup("svc", "127.0.0.1", {b}) is None  # endpoint gone: forget
    table.remember("svc", "127.0.0.1", a, 10)
    now[0] += 10.5
    assert table.lookup("svc", "127.0.0.1", {a, b}) is None
    table.remember("svc", "127.0.0.3", a, 1)
    now[0] += 2
    table.sweep()
    assert len(table) == 0


# ---- health checks ----
async def test_health_check_server_answers_like_kube_proxy():
    port = random.randint(32000, 32700)
    servers = HealthCheckServers(NODE, NODE_IP)
    await servers.sync({"default/lb": HealthCheck("default", "lb", port, 2)})

    async def probe() -> tuple[str, dict, dict]:
        reader, writer = await asyncio.open_connection(NODE_IP, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await reader.read()
        writer.close()
        head, body = raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        return lines[0], dict(line.split(": ", 1) for line in lines[1:]), orjson.loads(body)

    status, headers, body = await probe()
    assert status == "HTTP/1.1 200 OK"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Load-Balancing-Endpoint-Weight"] == "2"
    assert body == {"service": {"namespace": "default", "name": "lb"}, "localEndpoints": 2,
                    "serviceProxyHealthy": True}
    await servers.sync({"default/lb": HealthCheck("default", "lb", port, 0)})
    status, headers, body = await probe()
    assert status.startswith("HTTP/1.1 503") and body["localEndpoints"] == 0
    await servers.stop()
    with pytest.raises(ConnectionRefusedError):
        await probe()


def test_health_checks_count_local_ready_endpoints_only():
    lb = {"metadata": {"namespace": "default", "name": "lb"},
          "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.9", "externalTrafficPolicy": "Local",
                   "healthCheckNodePort": 32100, "ports": [{"port": 80, "nodePort": 30100}]}}
    eps = [{"addresses": ["127.244.1.2"], "nodeName": NODE},
           {"addresses": ["127.244.1.3"], "nodeName": NODE,
            "conditions": {"ready": False, "serving": True, "terminating": True}},
           {"addresses": ["127.244.2.2"], "nodeName": "elsewhere"}]
    slc = {"metadata": {"namespace": "default", "name": "lb-1", "labels": {"kubernetes.io/service-name": "lb"}},
           "ports": [{"port": 8080}], "endpoints": eps}
    from pocketkube.proxy.healthcheck import health_checks

    assert health_checks(build_model([lb], [slc]), NODE) == {"default/lb": HealthCheck("default", "lb", 32100, 1)}
    assert b"503 Service Unavailable" in render(HealthCheck("default", "lb", 32100, 0))


def test_factory():
    assert make_data_plane("userspace", NODE, NODE_IP).name == "userspace"
    with pytest.raises(ValueError):
        make_data_plane("ipvs", NODE, NODE_IP)


# ---- the runner, against a fake API ----
class FakeApi:
    """Just enough of the REST client for two informers; `down` makes every call fail."""

    def __init__(self, services: list[dict], slices: list[dict]) -> None:
        self.objects = {"services": services, "endpointslices": slices}
        self.events = {"services": asyncio.Queue(), "endpointslices": asyncio.Queue()}
        self.down = False
        self.refused = 0  # calls that failed because the server was down

    def _refuse_if_down(self) -> None:
        if self.down:
            self.refused += 1
            raise errors.ServiceUnavailable("down")

    async def list(self, res, *_a, **_k):
        self._refuse_if_down()
        return list(self.objects[res.plural]), "1"

    async def watch(self, res, *_a, **_k):
        self._refuse_if_down()
        while True:
            item = await self.events[res.plural].get()
            if item is None:
                raise errors.ServiceUnavailable("connection lost")
            yield item


class RecordingPlane:
    name = "recording"

    def __init__(self) -> None:
        self.applied: list[dict] = []
        self.changed = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        pass

    async def apply(self, model) -> None:
        await asyncio.sleep(0.01)  # a slow plane: changes meanwhile must coalesce
        self.applied.append(model)
        self.changed.set()

    async def stop(self) -> None:
        self.stopped = True


def api_service(name: str) -> dict:
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
            "spec": {"clusterIP": "127.96.0.20", "ports": [{"port": 80}]}}


def api_slice(name: str, ips: list[str], rv: str = "1", trigger: str = "") -> dict:
    meta = {"namespace": "default", "name": name + "-1", "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name}}
    if trigger:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": trigger}
    return {"metadata": meta, "ports": [{"port": 8080}], "endpoints": [{"addresses": [ip]} for ip in ips]}


async def wait_for(predicate, timeout: float = 2.0) -> None:
    await wait_for_async(predicate, timeout=timeout, interval=0.005)


async def test_runner_syncs_coalesces_and_survives_api_outage():
    api = FakeApi([api_service("a")], [api_slice("a", ["127.244.1.2"])])
    plane = RecordingPlane()
    proxy = ServiceProxy(api, NODE, NODE_IP, plane)  # type: ignore[arg-type]
    runner = asyncio.create_task(proxy.run())
    await wait_for(lambda: plane.applied)
    first = plane.applied[-1][("default/a", "TCP")]
    assert [e.ip for e in first.endpoints] == ["127.244.1.2"]
    # a burst of 20 changes is applied in a few syncs, ending at the last state
    for i in range(20):
        api.events["endpointslices"].put_nowait(("MODIFIED", api_slice("a", [f"127.244.1.{i + 3}"], str(i + 2))))
    await wait_for(lambda: [e.ip for e in plane.applied[-1][("default/a", "TCP")].endpoints] == ["127.244.1.22"])
    assert len(plane.applied) <= 4
    # the API server goes away: nothing is cleared, and the proxy catches up when it is back
    api.down = True
    api.events["services"].put_nowait(None)
    api.events["endpointslices"].put_nowait(None)
    await wait_for(lambda: api.refused >= 2)  # both informers retried against the down server
    assert ("default/a", "TCP") in plane.applied[-1]
    api.down = False
    api.objects["services"].append(api_service("b"))
    api.objects["endpointslices"] = [api_slice("a", ["127.244.1.22"], "30")]
    api.events["services"].put_nowait(("ADDED", api_service("b")))
    await wait_for(lambda: ("default/b", "TCP") in plane.applied[-1], timeout=3)
    api.events["services"].put_nowait(("DELETED", api_service("a")))
    await wait_for(lambda: ("default/a", "TCP") not in plane.applied[-1])
    await proxy.stop()
    await runner
    assert plane.stopped


async def test_runner_metrics_and_unchanged_entries_keep_identity():
    api = FakeApi([api_service("a"), api_service("b")], [api_slice("a", ["127.244.1.2"])])
    plane = RecordingPlane()
    proxy = ServiceProxy(api, NODE, NODE_IP, plane, ProxyMetrics())  # type: ignore[arg-type]
    runner = asyncio.create_task(proxy.run())
    await wait_for(lambda: plane.applied)
    before = plane.applied[-1]
    trigger = "2020-01-01T00:00:00Z"
    api.events["endpointslices"].put_nowait(("MODIFIED", api_slice("a", ["127.244.1.3"], "5", trigger)))
    await wait_for(lambda: len(plane.applied) == 2)
    after = plane.applied[-1]
    assert after[("default/b", "TCP")] is before[("default/b", "TCP")]
    assert after[("default/a", "TCP")] is not before[("default/a", "TCP")]
    text = proxy.metrics_text().decode()
    assert "kubeproxy_sync_proxy_rules_duration_seconds_count 2.0" in text
    assert "kubeproxy_network_programming_duration_seconds_count 1.0" in text
    assert 'kubeproxy_network_programming_duration_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'kubeproxy_network_programming_duration_seconds_bucket{le="300.0"} 0.0' in text  # years ago
    await proxy.stop()
    await runner


async def test_runner_stops_while_api_unreachable():
    api = FakeApi([], [])
    api.down = True
    plane = RecordingPlane()
    proxy = ServiceProxy(api, NODE, NODE_IP, plane)  # type: ignore[arg-type]
    runner = asyncio.create_task(proxy.run())
    await wait_for(lambda: api.refused >= 2)  # both informers are in their retry loops
    await asyncio.wait_for(proxy.stop(), 1)
    await runner
    assert plane.applied == [] and plane.stopped




def test_trigger_time_parsing():
    assert parse_rfc3339("2024-05-01T10:00:00Z") == parse_rfc3339("2024-05-01T10:00:00.000000Z")
    assert parse_rfc3339("2024-05-01T10:00:00.5+00:00") % 1 == 0.5
    assert parse_rfc3339("garbage") is None
