"""The Ingress reverse proxy against real loopback backends: forwarding headers, streamed bodies,
keep-alive, 404/503, WebSocket passthrough, and the certificate chosen by SNI."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from pocketkube.ingress.proxy import IngressProxy
from pocketkube.ingress.routing import Cluster, Table, build_table
from pocketkube.ingress.tls import DEFAULT_CN, SniContexts, self_signed

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def backend_app() -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/ws"):
            ws = web.WebSocketResponse(protocols=("chat",))
            await ws.prepare(request)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str("echo:" + msg.data)
                else:
                    await ws.send_bytes(msg.data[::-1])
            return ws
        if request.path == "/big":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(64):
                await resp.write(b"x" * 65536)
            await resp.write_eof()
            return resp
        body = await request.read()
        return web.json_response({"path": request.path_qs, "host": request.host, "method": request.method,
                                  "sha": hashlib.sha256(body).hexdigest(), "len": len(body),
                                  "xff": request.headers.get("X-Forwarded-For"),
                                  "proto": request.headers.get("X-Forwarded-Proto"),
                                  "fhost": request.headers.get("X-Forwarded-Host"),
                                  "conn": request.headers.get("Connection")})
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def table_for(port: int, *, endpoints: bool = True) -> Table:
    ing = {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"},
           "spec": {"ingressClassName": "pocketkube", "rules": [
               {"host": "app.local", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                   {"path": "/down", "pathType": "Prefix",
                    "backend": {"service": {"name": "down", "port": {"number": 80}}}}]}}]}}
    svc = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    slc = {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
           "ports": [{"port": port, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}] if endpoints else []}
    return build_table(Cluster([ing], {}, {"default/web": svc}, {"default/web": [slc]}, {}))


@pytest.fixture
async def stack():
    backend = web.AppRunner(await backend_app())
    await backend.setup()
    bport = free_port()
    await web.TCPSite(backend, "127.0.0.1", bport).start()
    unavailable = []
    state = {"table": table_for(bport)}
    proxy = IngressProxy(lambda: state["table"], unavailable.append)
    pport = free_port()
    await proxy.serve("127.0.0.1", pport)
    yield {"url": f"http://127.0.0.1:{pport}", "proxy": proxy, "unavailable": unavailable}
    await proxy.close()
    await backend.cleanup()


async def test_routes_by_host_and_forwards_headers(stack):
    async with aiohttp.ClientSession() as s:
        async with s.get(stack["url"] + "/a/b?q=1", headers={"Host": "app.local"}) as r:
            assert r.status == 200
            got = await r.json()
        assert got["path"] == "/a/b?q=1" and got["host"] == "app.local"
        assert got["xff"] == "127.0.0.1" and got["proto"] == "http" and got["fhost"] == "app.local"
        async with s.get(stack["url"] + "/", headers={"Host": "other.local"}) as r:
            assert r.status == 404
        async with s.get(stack["url"] + "/down", headers={"Host": "app.local"}) as r:
            assert r.status == 503
    assert [r.backend.service for r in stack["unavailable"]] == ["down"]


async def test_streams_large_bodies_both_ways(stack):
    payload = bytes(range(256)) * 40000  # ~10 MB

    async def chunks():
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]
    async with aiohttp.ClientSession() as s:
        async with s.post(stack["url"] + "/up", data=chunks(), headers={"Host": "app.local"}) as r:
            got = await r.json()
        assert got["len"] == len(payload) and got["sha"] == hashlib.sha256(payload).hexdigest()
        async with s.get(stack["url"] + "/big", headers={"Host": "app.local"}) as r:
            assert len(await r.read()) == 64 * 65536


async def test_websocket_passthrough(stack):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(stack["url"] + "/ws", headers={"Host": "app.local"}, protocols=("chat",)) as ws:
            assert ws.protocol == "chat"
            await ws.send_str("hi")
            assert (await ws.receive()).data == "echo:hi"
            await ws.send_bytes(b"abc")
            assert (await ws.receive()).data == b"cba"


async def test_sni_picks_the_ingress_certificate():
    pair = self_signed("app.local", ("app.local",))
    contexts = SniContexts(lambda host: pair if host == "app.local" else None)
    port = free_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port, ssl=contexts.default)

    async def served_cn(name: str) -> str:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=name)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    try:
        assert await served_cn("app.local") == "app.local"
        assert await served_cn("else.local") == DEFAULT_CN
    finally:
        server.close()
        await server.wait_closed()


async def raw_exchange(url: str, payload: bytes, until: bytes, count: int = 1) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    data = b""
    while data.count(until) < count:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            break
        data += chunk
    writer.close()
    return data


async def test_pipelined_requests_answer_in_order_and_head_has_no_body(stack):
    req = b"GET /%d HTTP/1.1\r\nHost: app.local\r\n\r\n"
    data = await raw_exchange(stack["url"], req % 1 + b"HEAD /h HTTP/1.1\r\nHost: app.local\r\n\r\n" + req % 3,
                              b"HTTP/1.1 200", count=3)
    assert data.count(b"HTTP/1.1 200") == 3
    first, third = data.index(b'"path": "/1"'), data.index(b'"path": "/3"')
    assert first < third and b'"path": "/h"' not in data


async def test_bad_and_oversized_requests(stack):
    data = await raw_exchange(stack["url"], b"NOT HTTP AT ALL\r\n\r\n", b"\n\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    huge = b"GET / HTTP/1.1\r\nHost: app.local\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"
    data = await raw_exchange(stack["url"], huge, b"\n\n")
    assert data.startswith(b"HTTP/1.1 431 ")


async def test_backend_connections_are_kept_alive_and_pooled(stack):
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.get(stack["url"] + "/", headers={"Host": "app.local"}) as r:
                assert r.status == 200
    idle = [c for conns in stack["proxy"].pool.idle.values() for c in conns]
    assert len(idle) == 1  # one connection served all twenty, one after the other


async def test_http10_and_connection_close_clients(stack):
    data = await raw_exchange(stack["url"], b"GET /old HTTP/1.0\r\nHost: app.local\r\n\r\n", b"}")
    assert data.startswith(b"HTTP/1.") and b'"path": "/old"' in data
    data = await raw_exchange(stack["url"], b"GET /c HTTP/1.1\r\nHost: app.local\r\nConnection: close\r\n\r\n", b"}")
    assert b'"conn": null' in data  # hop-by-hop headers stay on the client's connection


async def test_dead_backend_is_a_502():
    port = free_port()  # nothing listens there
    table = table_for(port)
    proxy = IngressProxy(lambda: table)
    pport = free_port()
    await proxy.serve("127.0.0.1", pport)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{pport}/",
                                                       headers={"Host": "app.local"}) as r:
            assert r.status == 502
    finally:
        await proxy.close()


async def test_an_early_answer_does_not_leak_the_rest_of_the_body():
    async def early(request: web.Request) -> web.Response:
        return web.Response(status=413, text="too big")  # answers without reading the body
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", early)
    backend = web.AppRunner(app)
    await backend.setup()
    bport = free_port()
    await web.TCPSite(backend, "127.0.0.1", bport).start()
    table = table_for(bport)
    proxy = IngressProxy(lambda: table)
    pport = free_port()
    await proxy.serve("127.0.0.1", pport)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", pport)
        writer.write(b"POST / HTTP/1.1\r\nHost: app.local\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        head = await asyncio.wait_for(reader.readuntil(b"too big"), 5)
        assert head.startswith(b"HTTP/1.1 413")
        writer.write(b"y" * 99000)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the client's connection closes
        writer.close()
        assert not any(proxy.pool.idle.values())  # and that backend connection is not reused
    finally:
        await proxy.close()
        await backend.cleanup()


async def test_idle_clients_are_closed_and_stale_backends_pruned(stack, monkeypatch):
    from pocketkube.ingress import proxy as proxy_module

    monkeypatch.setattr(proxy_module, "CLIENT_IDLE_TIMEOUT", 0.2)
    monkeypatch.setattr(proxy_module, "SWEEP_INTERVAL", 0.05)
    p = stack["proxy"]
    p._sweeper.cancel()
    p._sweeper = asyncio.get_running_loop().create_task(p._sweep())
    reader, writer = await asyncio.open_connection(*stack["url"].removeprefix("http://").split(":"))
    writer.write(b"GET / HTTP/1.1\r\nHost: app.local\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"}"), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once idle
    writer.close()
    assert any(p.pool.idle.values())
    p.endpoints_changed(Table())  # no backend names that address any more
    assert not any(p.pool.idle.values())
