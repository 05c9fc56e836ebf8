"""The agent's streaming endpoints over a scripted runtime: relaying both ways, the Status at the
end, closing the session when the API server goes away, and port-forward's errors."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pocketkube.agent.runtime.interface import ContainerNotRunning, StreamError, StreamExit
from pocketkube.agent.streaming.server import StreamingEndpoints
from pocketkube.testing.waits import wait_for_async

pytestmark = pytest.mark.unit
TOKEN = "node-token"
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"containers": [{"name": "c"}]}}


class Session:
    def __init__(self, output: list[tuple[int, bytes]], exit: StreamExit, *, block: bool = False) -> None:
        self.output, self.exit, self.block = list(output), exit, block
        self.stdin: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []
        self.stdin_closed = asyncio.Event()
        self.closed = asyncio.Event()

    async def write(self, data):
        self.stdin.append(data)

    async def close_stdin(self):
        self.stdin_closed.set()

    async def resize(self, w, h):
        self.sizes.append((w, h))

    async def read(self):
        if self.output:
            return self.output.pop(0)
        if self.block:
            await self.closed.wait()
        return None

    async def wait(self):
        return self.exit

    async def close(self):
        self.closed.set()


class Port:
    def __init__(self, chunks: list[bytes], error: str | None = None) -> None:
        self.chunks, self.error, self.written, self.eof, self.closed = list(chunks), None, [], False, False
        self._error = error

    async def read(self):
        if self.chunks:
            return self.chunks.pop(0)
        self.error = self._error
        return b""

    async def write(self, data):
        self.written.append(data)

    async def write_eof(self):
        self.eof = True

    async def close(self):
        self.closed = True


class Runtime:
    def __init__(self) -> None:
        self.next: object = None
        self.calls: list[tuple] = []

    async def exec_stream(self, uid, name, argv, opts):
        self.calls.append(("exec", uid, name, argv, opts))
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    async def attach(self, uid, name, opts):
        self.calls.append(("attach", uid, name, opts))
        return self.next

    async def port_forward(self, uid, port):
        self.calls.append(("port", uid, port))
        if isinstance(self.next, Exception):
            raise self.next
        return self.next


class Kubelet:
    def __init__(self) -> None:
        self.runtime = Runtime()

    def find_pod(self, ns, name):
        return POD if (ns, name) == ("ns", "p") else None


@pytest.fixture
async def agent():
    kubelet = Kubelet()
    app = web.Application()
    StreamingEndpoints(kubelet, lambda r: r.headers.get("Authorization") == f"Bearer {TOKEN}").add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield kubelet, client
    await client.close()


async def _ws(client, path, protocol="v5.channel.k8s.io"):
    return await client.ws_connect(path, protocols=[protocol], headers={"Authorization": f"Bearer {TOKEN}"})


async def test_exec_relays_both_ways_and_ends_with_the_status(agent):
    kubelet, client = agent
    session = kubelet.runtime.next = Session([(1, b"out"), (2, b"err")], StreamExit(2))
    ws = await _ws(client, "/exec/ns/p/c?command=sh&command=-c&stdin=1&stdout=1&stderr=1&tty=1")
    await ws.send_bytes(b"\x00hello")
    await ws.send_bytes(b'\x04{"Width":80,"Height":24}')
    await ws.send_bytes(b"\xff\x00")
    frames = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
    assert frames[:2] == [b"\x01out", b"\x02err"]
    status = json.loads(frames[2][1:])
    assert frames[2][0] == 3 and status["reason"] == "NonZeroExitCode"
    assert ws.protocol == "v5.channel.k8s.io"
    await session.closed.wait()
    call = kubelet.runtime.calls[0]
    assert call[:4] == ("exec", "u1", "c", ["sh", "-c"]) and call[4].tty and not call[4].stderr


async def test_the_api_server_leaving_closes_the_session(agent):
    kubelet, client = agent
    session = kubelet.runtime.next = Session([], StreamExit(0), block=True)
    ws = await _ws(client, "/exec/ns/p/c?command=sleep&stdin=1&stdout=1")
    await ws.send_bytes(b"\x00abc")
    await ws.close()
    await asyncio.wait_for(session.closed.wait(), 5)


async def test_refusals(agent):
    kubelet, client = agent
    r = await client.get("/exec/ns/p/c?command=ls&stdout=1")
    assert r.status == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = await client.get("/exec/ns/p/c?command=ls&stdout=1&uid=other", headers=headers)
    assert (r.status, await r.text()) == (404, 'pod not found ("ns/p")')
    r = await client.get("/attach/ns/p/x?stdout=1", headers=headers)
    assert (r.status, await r.text()) == (404, 'container not found ("x")')
    kubelet.runtime.next = ContainerNotRunning("gone")
    r = await client.get("/exec/ns/p/c?command=ls&stdout=1", headers=headers)
    assert (r.status, await r.text()) == (404, 'container not found ("c")')
    kubelet.runtime.next = StreamError("the runtime said no")
    r = await client.get("/exec/ns/p/c?command=ls&stdout=1", headers=headers)
    assert (r.status, await r.text()) == (500, "the runtime said no")
    r = await client.get("/portForward/ns/p", headers=headers)
    assert r.status == 400


async def test_port_forward_data_half_close_and_errors(agent):
    kubelet, client = agent
    port = kubelet.runtime.next = Port([b"from pod"])
    ws = await _ws(client, "/portForward/ns/p?port=80", "pocketkube.portforward.v1")
    await ws.send_bytes(b"to pod")
    await ws.send_bytes(b"")
    got = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
    assert got == [b"from pod", b""] and port.written == [b"to pod"] and port.eof
    await wait_for_async(lambda: port.closed, timeout=5, what="the forwarded connection closed")

    kubelet.runtime.next = StreamError("failed to connect to localhost:81")
    ws = await _ws(client, "/portForward/ns/p?port=81", "pocketkube.portforward.v1")
    msgs = [m async for m in ws]
    assert [m.data for m in msgs if m.type == aiohttp.WSMsgType.TEXT] == [
        "error forwarding port 81 to pod u1, uid : failed to connect to localhost:81"]

    kubelet.runtime.next = Port([], error="error forwarding port 82 to pod sandbox, uid : refused")
    ws = await _ws(client, "/portForward/ns/p?port=82", "pocketkube.portforward.v1")
    msgs = [m async for m in ws]
    assert [m.data for m in msgs if m.type == aiohttp.WSMsgType.TEXT] == [
        "error forwarding port 82 to pod sandbox, uid : refused"]

