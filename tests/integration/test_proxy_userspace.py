"""The Service proxy with the userspace data plane against a real API server.

Services without a selector plus hand-made EndpointSlices (labelled kubernetes.io/service-name),
which Kubernetes supports and which do not need the EndpointSlice controller.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.proxy.runner import ServiceProxy
from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.waits import wait_for_async

SERVICES = BY_PLURAL[("", "services")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
NODE, NODE_IP = "itest-node", "127.0.1.253"
BACKENDS = [f"127.244.252.{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def api_server():
    root = Path(tempfile.mkdtemp(prefix="pk-proxy-"))
    s = ServerProcess(root / "data", extra_args=["--service-cidr", "127.96.252.0/24"])
    s.data_dir.mkdir()
    s.start()
    yield s
    s.kill9()  # SIGTERM waits for open watches to drain; nothing here needs a graceful stop
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def client(api_server):
    c = Client(api_server.url, api_server.token(), str(api_server.ca_file))
    yield c
    await c.close()


@pytest.fixture
async def backends():
    servers = []

    async def handle(reader, writer):
        writer.write(writer.get_extra_info("sockname")[0].encode() + b"\n")
        await writer.drain()
        writer.close()

    port = 0
    for ip in BACKENDS:
        servers.append(await asyncio.start_server(handle, ip, port))
        port = servers[0].sockets[0].getsockname()[1]
    yield port
    for s in servers:
        s.close()


@pytest.fixture
async def proxy(client):
    p = ServiceProxy(client, NODE, NODE_IP, UserspaceDataPlane(NODE, NODE_IP))
    task = asyncio.create_task(p.run())
    yield p
    await p.stop()
    await task


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def slice_for(name: str, port: int, ips: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-manual", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now_rfc3339()}},
            "addressType": "IPv4", "ports": [{"name": "", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": NODE} for ip in ips]}


async def make_service(client: Client, name: str, type_: str = "ClusterIP") -> dict:
    return await client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": type_, "ports": [{"port": 8080, "protocol": "TCP"}]}})


async def ask(ip: str, port: int) -> str | None:
    try:
        async with asyncio.timeout(1):
            reader, writer = await asyncio.open_connection(ip, port)
            line = await reader.readline()
            writer.close()
            return line.decode().strip()
    except (OSError, TimeoutError):
        return None


async def until(predicate, timeout: float = 5.0) -> float:
    """Seconds until the (async) predicate held."""
    started = time.monotonic()
    await wait_for_async(predicate, timeout=timeout, interval=0.002, what="the data plane to follow")
    return time.monotonic() - started


async def test_hand_made_slices_serve_and_follow_changes(client, backends, proxy):
    svc = await make_service(client, "manual", "NodePort")
    vip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    slc = await client.create(SLICES, slice_for("manual", backends, BACKENDS[:2]))

    async def served_by(ip: str, port: int, allowed: set[str], n: int = 10) -> bool:
        return {await ask(ip, port) for _ in range(n)} <= allowed

    await until(lambda: served_by(vip, 8080, set(BACKENDS[:2]), 1))
    assert await served_by(vip, 8080, set(BACKENDS[:2]), 20)
    assert await served_by(NODE_IP, node_port, set(BACKENDS[:2]), 20)
    slc["endpoints"] = [{"addresses": [BACKENDS[2]], "conditions": {"ready": True}}]
    await client.update(SLICES, slc)
    await until(lambda: served_by(vip, 8080, {BACKENDS[2]}))
    text = (await proxy.prometheus_text()).decode()
    assert "kubeproxy_network_programming_duration_seconds_count" in text
    assert f'endpoint="{BACKENDS[2]}:{backends}"' in text
    await client.delete(SERVICES, "default", "manual")
    assert await until(lambda: _refused(vip, 8080)) < 5


async def _refused(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(ip, port)
    except (ConnectionRefusedError, ConnectionResetError):  # reset: queued when the listener closed
        return True
    writer.close()
    return False


async def test_keeps_serving_while_the_api_server_is_down(api_server, client, backends, proxy):
    svc = await make_service(client, "outage")
    vip = svc["spec"]["clusterIP"]
    slc = await client.create(SLICES, slice_for("outage", backends, [BACKENDS[3]]))
    await until(lambda: _is(vip, BACKENDS[3]))
    api_server.kill9()
    try:
        await asyncio.sleep(1.0)  # on purpose: an outage long enough for the proxy's watches to fail and retry
        assert [await ask(vip, 8080) for _ in range(5)] == [BACKENDS[3]] * 5
    finally:
        api_server.start()
    slc["endpoints"] = [{"addresses": [BACKENDS[4]], "conditions": {"ready": True}}]
    slc["metadata"].pop("resourceVersion", None)
    await client.update(SLICES, slc)
    await until(lambda: _is(vip, BACKENDS[4]), timeout=10)


async def _is(vip: str, backend: str) -> bool:
    return await ask(vip, 8080) == backend


async def test_programming_latency_with_many_services(client, backends, proxy):
    """A slice change reaches the data plane quickly even with many Services present."""
    names = [f"lat-{i}" for i in range(40)]
    svcs = await asyncio.gather(*(make_service(client, n) for n in names))
    slices = await asyncio.gather(*(client.create(SLICES, slice_for(n, backends, BACKENDS[:1])) for n in names))
    await until(lambda: _is(svcs[-1]["spec"]["clusterIP"], BACKENDS[0]), timeout=10)
    latencies = []
    for svc, slc in list(zip(svcs, slices))[:20]:
        slc["endpoints"] = [{"addresses": [BACKENDS[1]], "conditions": {"ready": True}}]
        started = time.monotonic()
        await client.update(SLICES, slc)
        await until(lambda svc=svc: _is(svc["spec"]["clusterIP"], BACKENDS[1]))
        latencies.append(time.monotonic() - started)
    assert statistics.median(latencies) < 0.1, latencies
