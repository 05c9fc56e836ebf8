"""The SPDY port-forward and exec terminations' logic, with in-memory SPDY sessions and fake
relay channels: stream pairing and the kubelet's checks and wording, exec stream collection,
stdin EOF, resize decoding, the Status per protocol version, the handshake's refusals."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from pocketkube.apiserver.streams import spdy_conn, spdy_exec, spdy_portforward
from pocketkube.apiserver.streams.spdy_exec import ExecSession, expected_streams, status_for
from pocketkube.apiserver.streams.spdy_portforward import PortForwardSession, check_stream_headers
from pocketkube.streams import spdy_frames as fr
from pocketkube.streams.spdy import SpdySession, SpdyStreamError

POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}


def pipe(on_stream):
    loop = asyncio.get_running_loop()
    sessions = {}
    sessions["client"] = SpdySession(lambda b: loop.call_soon(lambda: sessions["server"].feed(b)), client=True)
    sessions["server"] = SpdySession(lambda b: loop.call_soon(lambda: sessions["client"].feed(b)), client=False,
                                     on_stream=on_stream)
    return sessions["client"], sessions["server"]


async def read_all(stream) -> bytes:
    out = b""
    while data := await stream.read():
        out += data
    return out


class AgentError(Exception):
    def __init__(self, status, body):
        super().__init__(body)
        self.status, self.body = status, body


class FakePort:
    def __init__(self, reply: bytes = b"", error: str | None = None):
        self.written = b""
        self.sizes: list[int] = []
        self.eof = asyncio.Event()
        self.reply, self.error = reply, error
        self.closed = False

    async def write(self, data):
        self.written += data
        self.sizes.append(len(data))

    async def write_eof(self):
        self.eof.set()

    async def read(self):
        if self.reply:
            await self.eof.wait()  # an echo-like pod: answers after the client's half-close
            data, self.reply = self.reply, b""
            return data
        return b""

    async def close(self):
        self.closed = True


class FakeRelay:
    AgentError = AgentError

    def __init__(self):
        self.ports: list[FakePort] = []
        self.refuse: str | None = None

    async def open_port(self, request, pod, port):
        if self.refuse:
            raise AgentError(404, self.refuse)
        chan = FakePort(reply=b"pong:%d" % port) if port != 81 else FakePort(
            error=f"error forwarding port 81 to pod {pod['metadata']['uid']}, uid : connection refused")
        self.ports.append(chan)
        return chan


@pytest.mark.parametrize("headers, problem", [
    ({"streamtype": "data"}, '"port" header is required'),
    ({"port": "http", "streamtype": "data"}, 'unable to parse "http" as a port'),
    ({"port": "70000", "streamtype": "data"}, 'unable to parse "70000" as a port'),
    ({"port": "0", "streamtype": "data"}, 'port "0" must be > 0'),
    ({"port": "80"}, '"streamType" header is required'),
    ({"port": "80", "streamtype": "stdin"}, 'invalid stream type "stdin"'),
    ({"port": "80", "streamtype": "error"}, None),
])
def test_stream_header_checks_have_the_kubelets_wording(headers, problem):
    assert check_stream_headers(headers) == problem


async def forwarder_pair(relay, **kw):
    forwarder = PortForwardSession(None, POD, relay, **kw)
    client, server = pipe(forwarder.on_stream)
    return forwarder, client, server


async def open_pair(client, port, request_id="0", with_id=True):
    headers = {"port": str(port), "streamType": "error"}
    if with_id:
        headers["requestID"] = request_id
    error = await client.open_stream(headers)
    error.close_write()
    data = await client.open_stream({**headers, "streamType": "data"})
    return error, data


async def test_a_pair_is_forwarded_with_half_close_and_the_error_stream_ends_empty():
    relay = FakeRelay()
    forwarder, client, _ = await forwarder_pair(relay)
    error, data = await open_pair(client, 80)
    data.write(b"ping")
    data.close_write()
    assert await read_all(data) == b"pong:80"
    assert await read_all(error) == b""
    assert relay.ports[0].written == b"ping"
    await asyncio.sleep(0.01)
    assert relay.ports[0].closed and forwarder.pairs == {}


async def test_what_a_client_sends_at_once_goes_to_the_agent_in_bounded_messages():
    # the agent's WebSocket refuses messages over 4 MiB; a fast client buffers more than that
    relay = FakeRelay()
    forwarder, client, _ = await forwarder_pair(relay)
    error, data = await open_pair(client, 80)
    blob = bytes(range(256)) * (6 * 4096)  # 6 MiB in one write
    data.write(blob)
    data.close_write()
    assert await read_all(data) == b"pong:80"
    assert relay.ports[0].written == blob
    assert max(relay.ports[0].sizes) <= spdy_portforward.RELAY_CHUNK


async def test_clients_without_request_ids_are_paired_by_stream_id():
    relay = FakeRelay()
    forwarder, client, _ = await forwarder_pair(relay)
    error, data = await open_pair(client, 80, with_id=False)  # ids 1 and 3: request "1"
    data.close_write()
    assert await read_all(data) == b"pong:80"


async def test_a_refused_or_failing_connection_writes_its_error_and_others_go_on():
    relay = FakeRelay()
    forwarder, client, server = await forwarder_pair(relay)
    ok_error, ok_data = await open_pair(client, 80, "0")
    bad_error, bad_data = await open_pair(client, 81, "1")
    assert await read_all(bad_error) == b"error forwarding port 81 to pod u-1, uid : connection refused"
    assert await read_all(bad_data) == b""
    relay.refuse = 'pod not found ("default/web")'
    gone_error, _ = await open_pair(client, 82, "2")
    assert (await read_all(gone_error)).decode() == \
        'error forwarding port 82 to pod web, uid u-1: pod not found ("default/web")'
    ok_data.close_write()  # the first connection was untouched by the others' failures
    assert await read_all(ok_data) == b"pong:80"
    assert not server.closed.is_set()


async def test_bad_streams_are_refused_and_duplicates_reported():
    relay = FakeRelay()
    forwarder, client, _ = await forwarder_pair(relay)
    with pytest.raises(SpdyStreamError) as err:
        await client.open_stream({"streamType": "data"})
    assert err.value.status == fr.REFUSED_STREAM
    error = await client.open_stream({"port": "80", "streamType": "error", "requestID": "7"})
    dup = await client.open_stream({"port": "80", "streamType": "error", "requestID": "7"})
    assert await dup.read() == b"" and dup.reset_status == fr.CANCEL  # accepted, then reset as a duplicate
    data = await client.open_stream({"port": "80", "streamType": "data", "requestID": "7"})
    data.close_write()
    await read_all(data)
    assert await read_all(error) == b"error processing stream for request 7: error stream already assigned"


async def test_a_pair_never_completed_times_out_with_an_error():
    relay = FakeRelay()
    forwarder, client, _ = await forwarder_pair(relay, creation_timeout=0.05)
    error = await client.open_stream({"port": "80", "streamType": "error", "requestID": "3"})
    error.close_write()
    message = (await asyncio.wait_for(read_all(error), 2)).decode()
    assert message.endswith(", request=3) timed out waiting for streams") and message.startswith("(conn=")
    assert relay.ports == [] and forwarder.pairs == {}


async def test_closing_the_session_ends_every_connection():
    relay = FakeRelay()
    forwarder, client, server = await forwarder_pair(relay)
    await open_pair(client, 80, "0")
    await open_pair(client, 80, "1")
    await asyncio.sleep(0.01)
    assert len(forwarder.tasks) == 2
    server.feed_eof()
    await forwarder.aclose()
    assert forwarder.tasks == set() and all(p.closed for p in relay.ports)


# --- exec ---------------------------------------------------------------------------------------


class Opts:
    def __init__(self, stdin=False, stdout=True, stderr=True, tty=False):
        self.command, self.stdin, self.stdout, self.stderr, self.tty, self.attach = ("x",), stdin, stdout, stderr, tty, False


class FakeExec:
    def __init__(self, frames):
        self.frames = asyncio.Queue()
        for f in frames:
            self.frames.put_nowait(f)
        self.sent: list[tuple[int, bytes]] = []
        self.stdin_closed = asyncio.Event()

    async def send(self, channel, data):
        self.sent.append((channel, data))

    async def close_stdin(self):
        self.stdin_closed.set()

    async def receive(self):
        return await self.frames.get()


def test_expected_streams_per_protocol():
    assert expected_streams("v4.channel.k8s.io", Opts(stdin=True, tty=True)) == {"error", "stdin", "stdout", "resize"}
    assert expected_streams("v2.channel.k8s.io", Opts(stdin=True, tty=True)) == {"error", "stdin", "stdout"}
    assert expected_streams("v5.channel.k8s.io", Opts()) == {"error", "stdout", "stderr"}


def test_status_is_json_from_v4_and_a_message_before():
    failure = orjson.dumps({"metadata": {}, "status": "Failure", "message": "command terminated with non-zero "
                            "exit code: exit status 3", "reason": "NonZeroExitCode"})
    success = b'{"metadata":{},"status":"Success"}'
    assert status_for("v5.channel.k8s.io", failure) == failure
    assert status_for("v4.channel.k8s.io", success) == success
    assert status_for("v3.channel.k8s.io", success) == b""
    assert status_for("channel.k8s.io", failure) == b"command terminated with non-zero exit code: exit status 3"


async def test_exec_session_relays_output_stdin_eof_resizes_and_the_status():
    status = b'{"metadata":{},"status":"Success"}'
    agent = FakeExec([(1, b"hello"), (3, status)])
    exec_session = ExecSession("v4.channel.k8s.io", Opts(stdin=True, stderr=False, tty=True), agent)
    client, server = pipe(exec_session.on_stream)
    run = asyncio.ensure_future(exec_session.run(server))
    error = await client.open_stream({"streamType": "error"})
    stdin = await client.open_stream({"streamType": "stdin"})
    stdout = await client.open_stream({"streamType": "stdout"})
    resize = await client.open_stream({"streamType": "resize"})
    resize.write(b'{"Width":80,"Height":24}{"Width":1')
    resize.write(b'00,"Height":30}\n')
    stdin.write(b"typed")
    stdin.close_write()
    await asyncio.wait_for(agent.stdin_closed.wait(), 1)
    assert await read_all(stdout) == b"hello"
    assert await read_all(error) == status
    await asyncio.wait_for(run, 1)
    assert (0, b"typed") in agent.sent
    assert [d for c, d in agent.sent if c == 4] == [b'{"Width":80,"Height":24}', b'{"Width":100,"Height":30}']


async def test_exec_without_a_status_from_the_agent_is_an_internal_error():
    agent = FakeExec([(2, b"oops"), None])
    exec_session = ExecSession("v4.channel.k8s.io", Opts(), agent)
    client, server = pipe(exec_session.on_stream)
    run = asyncio.ensure_future(exec_session.run(server))
    streams = {k: await client.open_stream({"streamType": k}) for k in ("error", "stdout", "stderr")}
    assert await read_all(streams["stderr"]) == b"oops"
    status = orjson.loads(await read_all(streams["error"]))
    assert status["reason"] == "InternalError" and status["status"] == "Failure"
    await asyncio.wait_for(run, 1)


async def test_exec_ends_when_the_client_goes_away_before_its_streams():
    exec_session = ExecSession("v4.channel.k8s.io", Opts(), FakeExec([]))
    client, server = pipe(exec_session.on_stream)
    run = asyncio.ensure_future(exec_session.run(server))
    await client.open_stream({"streamType": "error"})
    server.feed_eof()
    await asyncio.wait_for(run, 1)


def test_protocol_negotiation_and_refusals():
    assert spdy_conn.negotiate(["v9", "v4.channel.k8s.io", "v5.channel.k8s.io"], spdy_exec.PROTOCOLS) == \
        "v4.channel.k8s.io"
    resp = spdy_conn.handshake_refusal(["v9.channel.k8s.io"], spdy_exec.PROTOCOLS)
    assert resp.status == 403
    assert resp.text.startswith("unable to upgrade: unable to negotiate protocol: client supports "
                                "[v9.channel.k8s.io], server accepts [v5.channel.k8s.io v4.channel.k8s.io")
    assert resp.headers.getall(spdy_conn.ACCEPTED_HEADER) == spdy_exec.PROTOCOLS
    resp = spdy_conn.handshake_refusal([], [spdy_portforward.PROTOCOL])
    assert (resp.status, resp.text) == (400, "unable to upgrade: X-Stream-Protocol-Version is required\n")
