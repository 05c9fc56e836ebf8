"""The SPDY terminations against the real kubectl 1.32 and 1.37: port-forward through the
WebSocket tunnel (their default) and raw SPDY (KUBECTL_PORT_FORWARD_WEBSOCKETS=false), exec
over raw SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false).

An in-process API server whose streaming entry point is pointed at the SPDY terminations with
a fake relay (spdy_fake_relay: no node agent; the "pod" is this host), so what is tested is
kubectl ↔ SPDY ↔ relay API, through the server's real TLS, authn and middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from dataclasses import dataclass

import pytest
from spdy_fake_relay import FakeRelay

from pocketkube.apiserver.app import ServerConfig
from pocketkube.apiserver.streams import handler as stream_handler
from pocketkube.apiserver.streams.spdy_exec import serve_spdy_exec
from pocketkube.apiserver.streams.spdy_portforward import serve_spdy_portforward, serve_tunneled_portforward
from pocketkube.server import api_server
from pocketkube.testing.procs import kubectl_binaries
from pocketkube.testing.waits import wait_for_async

KUBECTLS = sorted(kubectl_binaries().values())
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not KUBECTLS, reason="no kubectl here"),
              # the in-process server stores request["user"] with a str key (aiohttp warns, pytest errs)
              pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")]


@dataclass(frozen=True)
class Opts:  # the fields of apiserver/streams/options.ExecOptions that the termination reads
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    attach: bool = False


def _flag(q, name: str) -> bool:
    return q.get(name, "") not in ("", "0", "false")


@dataclass
class Env:
    server: object
    relay: FakeRelay
    kubeconfig: str
    cache: str

    def env(self, websockets: bool) -> dict:
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, KUBECACHEDIR=self.cache, HOME=self.cache)
        if not websockets:
            env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
            env["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "false"
        return env


@pytest.fixture
async def env(tmp_path, monkeypatch):
    relay = FakeRelay()

    async def serve_stream(request, registry, t):  # the SPDY branches of apistreams' dispatch
        pod = registry.store("", "pods").get(t.namespace, t.name)
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if t.subresource == "portforward":
            if websocket:
                return await serve_tunneled_portforward(request, pod, relay=relay)
            return await serve_spdy_portforward(request, pod, relay=relay)
        q = request.query
        opts = Opts(tuple(q.getall("command", [])), _flag(q, "stdin"), _flag(q, "stdout"),
                    _flag(q, "stderr") and not _flag(q, "tty"), _flag(q, "tty"))
        return await serve_spdy_exec(request, pod, q.get("container") or "app", opts, relay=relay)

    monkeypatch.setattr(stream_handler, "serve_stream", serve_stream)
    server = api_server(ServerConfig(data_dir=tmp_path / "data", port=0))
    await server.start()
    pods = server.registry.store("", "pods")
    for name in ("web", "other"):
        await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"},
                                                                     {"name": "stopped", "image": "busybox"}]}},
                          "default")

        def running(pod):
            pod["status"] = {"phase": "Running"}
            return pod
        await pods.guaranteed_update("default", name, running, subresource="status")
    cache = str(tmp_path / "kubecache")
    try:
        yield Env(server, relay, str(server.kubeconfig_path), cache)
    finally:
        await server.stop()


# --- a "pod": servers on this host's loopback --------------------------------------------------


async def start_pod_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def echo(reader, writer):
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    writer.close()


async def sha_server(reader, writer):
    """Reads to EOF, answers the sha256 and the size: half-close must work for this."""
    digest, size = hashlib.sha256(), 0
    while data := await reader.read(1 << 16):
        digest.update(data)
        size += len(data)
    writer.write(f"{digest.hexdigest()} {size}\n".encode())
    await writer.drain()
    writer.close()


def blob_server(blob: bytes):
    async def serve(reader, writer):
        with contextlib.suppress(ConnectionError):
            writer.write(blob)
            await writer.drain()
        writer.close()
    return serve


class PortForward:
    def __init__(self, proc, ports: dict[int, int]) -> None:
        self.proc, self.ports = proc, ports  # remote → local
        self.stderr = b""

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        with contextlib.suppress(Exception):
            self.stderr += await self.proc.stderr.read()


async def port_forward(env: Env, kubectl: str, remote_ports: list[int], websockets: bool,
                       pod: str = "pod/web") -> PortForward:
    proc = await asyncio.create_subprocess_exec(
        kubectl, "port-forward", pod, *[f":{p}" for p in remote_ports], "--address", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env.env(websockets))
    ports: dict[int, int] = {}
    try:
        while len(ports) < len(remote_ports):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError(f"kubectl port-forward ended: {(await proc.stderr.read()).decode()}")
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if m:
                ports[int(m.group(2))] = int(m.group(1))
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    asyncio.ensure_future(_drain(proc.stdout))
    return PortForward(proc, ports)


async def _drain(stream):
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    got = await reader.read()
    writer.close()
    return got


MODES = [(k, ws) for k in KUBECTLS for ws in (True, False)]
VERSIONS = {k: ("1.32" if k == "/usr/bin/kubectl" else "1.37") for k in KUBECTLS}
IDS = [f"{VERSIONS[k]}-{'ws' if ws else 'spdy'}" for k, ws in MODES]


@pytest.mark.parametrize("kubectl, websockets", MODES, ids=IDS)
async def test_port_forward_10mb_and_20_concurrent_connections(env, kubectl, websockets):
    sha, sha_port = await start_pod_server(sha_server)
    blob = os.urandom(10 * 1024 * 1024 + 3)
    blobs, blob_port = await start_pod_server(blob_server(blob))
    echoes, echo_port = await start_pod_server(echo)
    async with sha, blobs, echoes:
        pf = await port_forward(env, kubectl, [sha_port, blob_port, echo_port], websockets)
        try:
            # 10 MB up through the client's half-close, checksum back
            answer = await roundtrip(pf.ports[sha_port], blob)
            assert answer.decode() == f"{hashlib.sha256(blob).hexdigest()} {len(blob)}\n"
            # 10 MB down
            got = await roundtrip(pf.ports[blob_port], b"")
            assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
            # 20 connections at once, on another port of the same session
            payloads = [os.urandom(200_000 + i) for i in range(20)]
            results = await asyncio.gather(*(roundtrip(pf.ports[echo_port], p) for p in payloads))
            assert results == payloads
        finally:
            await pf.stop()
    await wait_for_async(lambda: env.relay.open_ports == 0, timeout=10, what="every relayed connection closed")


@pytest.mark.parametrize("kubectl, websockets", MODES, ids=IDS)
async def test_port_forward_to_a_closed_port_fails_that_connection_only(env, kubectl, websockets):
    echoes, echo_port = await start_pod_server(echo)
    closed, closed_port = await start_pod_server(echo)
    closed.close()
    await closed.wait_closed()
    async with echoes:
        pf = await port_forward(env, kubectl, [echo_port, closed_port], websockets)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", pf.ports[echo_port])
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"
            # the closed port: this connection gets nothing and is closed (kubectl may close it
            # with a reset rather than a FIN: either way no byte arrives) ...
            try:
                assert await roundtrip(pf.ports[closed_port], b"x") == b""
            except ConnectionResetError:
                pass
            # ... while the other one, already open, goes on (kubectl >= 1.29 then ends its whole
            # session on purpose, after printing the error: what the server does is what counts)
            writer.write(b"after")
            with contextlib.suppress(ConnectionError):
                got = await asyncio.wait_for(reader.read(5), 10)
                assert got in (b"after", b"")
            writer.close()
        finally:
            await pf.stop()
        err = pf.stderr.decode()  # 1.32: "an error occurred forwarding L -> R: <msg>"; 1.37 logs it structured
        assert re.search(rf"error occurred forwarding.*error forwarding port {closed_port} to pod .*connection refused",
                         err, re.I), err
    await wait_for_async(lambda: env.relay.open_ports == 0, timeout=10, what="every relayed connection closed")


@pytest.mark.parametrize("websockets", [True, False], ids=["ws", "spdy"])
async def test_client_killed_mid_stream_leaks_nothing(env, websockets):
    blob = os.urandom(50 * 1024 * 1024)
    blobs, blob_port = await start_pod_server(blob_server(blob))
    async with blobs:
        fds_before = len(os.listdir("/proc/self/fd"))
        pf = await port_forward(env, KUBECTLS[-1], [blob_port], websockets)
        received = [0, 0, 0]

        async def consume(i: int) -> None:
            # keep reading: a connection nobody reads stalls kubectl's whole session (spdystream
            # blocks its frame reader on a stream whose reader is slow), which is not under test
            reader, writer = await asyncio.open_connection("127.0.0.1", pf.ports[blob_port])
            try:
                while data := await reader.read(65536):
                    received[i] += len(data)
            except ConnectionError:
                pass
            finally:
                writer.close()
        consumers = [asyncio.ensure_future(consume(i)) for i in range(3)]
        await wait_for_async(lambda: min(received) > 1024 * 1024, timeout=20, what="1 MB through each")
        assert env.relay.open_ports == 3 and max(received) < len(blob)
        before_kill = ours()
        pf.proc.kill()
        await pf.stop()
        await asyncio.wait_for(asyncio.gather(*consumers), 10)
        await wait_for_async(lambda: env.relay.open_ports == 0, timeout=10, what="relays closed after the kill")
        await wait_for_async(lambda: not ours(), timeout=10, what="no task of the SPDY terminations left")
        # the client's connection to the server and the three to the pod are closed
        await wait_for_async(lambda: len(os.listdir("/proc/self/fd")) <= fds_before, timeout=10,
                             what=f"no socket left open (fds before: {fds_before})")
        assert before_kill  # the check above saw them while the streams were open


def ours() -> list[asyncio.Task]:
    """Tasks running code of the SPDY terminations or sessions."""
    found = []
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        if any("/streams/" in f.f_code.co_filename for f in frames) or \
                "pocketkube/streams" in repr(task.get_coro()) or "apiserver/streams" in repr(task.get_coro()):
            found.append(task)
    return found


async def kubectl_exec(env: Env, kubectl: str, *args: str, stdin: bytes | None = None,
                       websockets: bool = False):
    proc = await asyncio.create_subprocess_exec(
        kubectl, "exec", *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env.env(websockets))
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode, out, err


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=[VERSIONS[k] for k in KUBECTLS])
async def test_exec_over_spdy_exit_codes_stdin_eof_and_stderr(env, kubectl):
    code, out, err = await kubectl_exec(env, kubectl, "web", "-c", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (code, out, err.decode()) == (3, b"out\n", "err\ncommand terminated with exit code 3\n")
    payload = os.urandom(3 * 1024 * 1024)
    code, out, err = await kubectl_exec(env, kubectl, "-i", "web", "-c", "app", "--", "sha256sum", stdin=payload)
    assert code == 0, err
    assert out.decode().split()[0] == hashlib.sha256(payload).hexdigest()
    code, out, err = await kubectl_exec(env, kubectl, "web", "-c", "app", "--", "true")
    assert (code, out, err) == (0, b"", b"")
    await wait_for_async(lambda: env.relay.open_execs == 0, timeout=10, what="exec relays closed")


async def test_exec_into_a_container_the_agent_refuses_is_the_upgrade_failure(env):
    code, out, err = await kubectl_exec(env, KUBECTLS[-1], "web", "-c", "stopped", "--", "true")
    assert code == 1
    assert 'error: unable to upgrade connection: container not found ("stopped")' in err.decode(), err


@pytest.mark.parametrize("parser", ["python", "c"])
async def test_raw_spdy_upgrade_with_either_http_parser(env, monkeypatch, parser):
    """The takeover after the 101 works whichever of aiohttp's parsers read the request (the C one
    pauses on any Upgrade header, the Python one only on websocket/tcp)."""
    from aiohttp import http_parser, web_protocol

    cls = http_parser.HttpRequestParserPy if parser == "python" else http_parser.HttpRequestParserC
    monkeypatch.setattr(web_protocol, "HttpRequestParser", cls)
    echoes, echo_port = await start_pod_server(echo)
    async with echoes:
        pf = await port_forward(env, KUBECTLS[-1], [echo_port], websockets=False)
        try:
            payload = os.urandom(1024 * 1024)
            assert await roundtrip(pf.ports[echo_port], payload) == payload
        finally:
            await pf.stop()
    code, out, _ = await kubectl_exec(env, KUBECTLS[-1], "-i", "web", "-c", "app", "--", "cat", stdin=b"hi")
    assert (code, out) == (0, b"hi")


# --- bad input on the wire --------------------------------------------------------------------


async def raw_upgrade(env: Env, path: str, protocols: list[str]):
    """A TLS connection with kubectl's upgrade request; (status line, head, reader, writer)."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(env.server.pki.ca_cert))
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port, ssl=ctx)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             f"Authorization: Bearer {env.server.pki.admin_token()}", "Content-Length: 0"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    return head.split("\r\n")[0], head, reader, writer


async def test_bad_upgrades_and_garbage_after_one(env):
    from pocketkube.streams import spdy_frames as fr

    pf = "/api/v1/namespaces/default/pods/web/portforward"
    status, head, reader, writer = await raw_upgrade(env, pf, [])
    body = await reader.read(200)
    assert "400" in status and body.startswith(b"unable to upgrade: X-Stream-Protocol-Version is required"), body
    writer.close()
    status, head, reader, writer = await raw_upgrade(env, pf, ["v4.channel.k8s.io"])
    body = await reader.read(300)
    assert "403" in status and b"unable to negotiate protocol: client supports [v4.channel.k8s.io], " \
                               b"server accepts [portforward.k8s.io]" in body, body
    writer.close()
    # upgraded, then a frame of SPDY/2: GOAWAY (protocol error) and the connection ends
    status, head, reader, writer = await raw_upgrade(env, pf, ["portforward.k8s.io"])
    assert "101" in status and "x-stream-protocol-version: portforward.k8s.io" in head.lower(), head
    writer.write(bytes([0x80, 2, 0, fr.PING, 0, 0, 0, 4, 0, 0, 0, 1]))
    rest = await asyncio.wait_for(reader.read(), 10)
    frames = fr.FrameParser().feed(rest)
    assert frames[-1] == fr.GoAway(0, fr.GOAWAY_PROTOCOL_ERROR), frames
    writer.close()
    # the server goes on serving
    echoes, echo_port = await start_pod_server(echo)
    async with echoes:
        forward = await port_forward(env, KUBECTLS[-1], [echo_port], websockets=False)
        try:
            assert await roundtrip(forward.ports[echo_port], b"still fine") == b"still fine"
        finally:
            await forward.stop()
