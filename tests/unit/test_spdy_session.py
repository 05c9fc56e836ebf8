"""SPDY/3.1 sessions: a client and a server session wired back to back (in memory and over
TCP with the HTTP/1.1 upgrade), half-close, resets, pings, flow control, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct

import pytest

from pocketkube.streams import spdy_frames as fr
from pocketkube.streams.async_writer import AsyncWriter
from pocketkube.streams.spdy import (
    RECV_WINDOW,
    SpdyError,
    SpdySession,
    SpdyStreamError,
    SpdyUpgradeError,
    connect_spdy,
)


class Pipe:
    """Two sessions whose writes reach each other on the next loop turn (like a socket)."""

    def __init__(self, on_stream=None, *, server_flow=False):
        loop = asyncio.get_running_loop()
        self.to_server: list[bytes] = []
        self.client = SpdySession(lambda b: loop.call_soon(self._deliver, "server", b), client=True)
        self.server = SpdySession(lambda b: loop.call_soon(self._deliver, "client", b), client=False,
                                  on_stream=on_stream)
        self.sent = {"client": [], "server": []}

    def _deliver(self, to, data):
        self.sent["client" if to == "server" else "server"].append(data)
        (self.server if to == "server" else self.client).feed(data)


def echo_handler(stream):
    stream.reply({"accepted": "yes"})

    async def run():
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
        stream.close_write()

    asyncio.get_running_loop().create_task(run())


async def test_open_write_half_close_and_echo():
    p = Pipe(echo_handler)
    stream = await p.client.open_stream({"streamType": "data", "port": "80"})
    assert stream.id == 1 and stream.reply_headers == {"accepted": "yes"}
    stream.write(b"hello ")
    stream.write(b"world")
    stream.close_write()
    got = b""
    while data := await stream.read():
        got += data
    assert got == b"hello world"
    assert stream.done
    await asyncio.sleep(0.01)
    assert p.client.streams == {} and p.server.streams == {}


async def test_server_sees_headers_lowercased_and_ids_are_odd_for_the_client():
    seen = []
    p = Pipe(lambda s: (seen.append(s), s.reply()))
    a = await p.client.open_stream({"streamType": "error", "requestID": "0"})
    b = await p.client.open_stream({"streamType": "data"}, fin=True)
    assert (a.id, b.id) == (1, 3)
    assert seen[0].headers == {"streamtype": "error", "requestid": "0"}
    assert seen[1].remote_closed and await seen[1].read() == b""


async def test_server_opened_streams_are_even():
    p = Pipe(echo_handler)
    server_side = []
    p.client.on_stream = lambda s: (server_side.append(s), s.reply())
    stream = await p.server.open_stream({"x": "1"})
    assert stream.id == 2 and server_side[0].headers == {"x": "1"}


async def test_large_transfer_both_ways_intact():
    p = Pipe(echo_handler)
    stream = await p.client.open_stream({})
    payload = os.urandom(5 * 1024 * 1024 + 17)

    async def send():
        for i in range(0, len(payload), 100_000):
            stream.write(payload[i:i + 100_000])
            await stream.drain()
        stream.close_write()

    sender = asyncio.create_task(send())
    digest, size = hashlib.sha256(), 0
    while data := await stream.read():
        digest.update(data)
        size += len(data)
    await sender
    assert size == len(payload) and digest.digest() == hashlib.sha256(payload).digest()
    # the session's window was given back as data was consumed
    wire = b"".join(p.sent["server"])
    updates = [f for f in fr.FrameParser().feed(wire) if isinstance(f, fr.WindowUpdate)]
    assert 0 in {u.stream_id for u in updates}


async def test_a_session_advertises_a_large_window_and_gives_consumed_data_back():
    out = []
    session = SpdySession(out.append, client=False, on_stream=lambda s: s.reply())
    assert fr.FrameParser().feed(b"".join(out)) == [
        fr.Settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: RECV_WINDOW}),
        fr.WindowUpdate(0, RECV_WINDOW - fr.DEFAULT_WINDOW)]
    out.clear()
    session.feed(fr.encode_syn_stream(fr.HeaderEncoder(), fr.SynStream(1, {})))
    half = RECV_WINDOW // 2
    for _ in range(half // 65536 + 1):
        session.feed(fr.encode_data(1, b"a" * 65536))
    assert await session.streams[1].read(100) == b"a" * 100
    assert not [f for f in fr.FrameParser().feed(b"".join(out)) if isinstance(f, fr.WindowUpdate)]
    rest = await session.streams[1].read()
    n = len(rest) + 100
    updates = [f for f in fr.FrameParser().feed(b"".join(out)) if isinstance(f, fr.WindowUpdate)]
    assert updates == [fr.WindowUpdate(1, n), fr.WindowUpdate(0, n)]


async def test_window_enforced_once_the_peer_does_flow_control():
    p = Pipe(lambda s: s.reply())
    stream = await p.client.open_stream({})
    p.client.feed(fr.encode_settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: 1000}))
    stream.write(b"x" * 5000)
    drained = asyncio.create_task(stream.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()  # only 1000 bytes may be in flight
    server_stream = p.server.streams[1]
    assert server_stream._buffered == 1000
    p.client.feed(fr.encode_window_update(1, 4000))
    await asyncio.wait_for(drained, 1)
    await asyncio.sleep(0.01)
    assert server_stream._buffered == 5000


async def test_no_window_enforced_against_a_peer_that_never_sends_updates():
    # Go's spdystream: 10 MB written at once flows without a single WINDOW_UPDATE back
    out = []
    client = SpdySession(out.append, client=True)
    task = asyncio.create_task(client.open_stream({}))
    await asyncio.sleep(0)
    client.feed(fr.encode_syn_reply(fr.HeaderEncoder(), fr.SynReply(1, {})))
    stream = await task
    stream.write(b"y" * (10 * 1024 * 1024))
    await asyncio.wait_for(stream.drain(), 1)
    sent = sum(len(f.data) for f in fr.FrameParser().feed(b"".join(out)) if isinstance(f, fr.DataFrame))
    assert sent == 10 * 1024 * 1024


async def test_reset_by_the_peer_ends_reads_and_writes():
    streams = []
    p = Pipe(lambda s: (streams.append(s), s.reply()))
    stream = await p.client.open_stream({})
    streams[0].reset()
    assert await stream.read() == b""
    assert stream.reset_status == fr.CANCEL
    with pytest.raises(SpdyStreamError):
        stream.write(b"x")


async def test_refused_stream_raises_on_open():
    p = Pipe(None)  # a server without a handler refuses every stream
    with pytest.raises(SpdyStreamError, match="reset"):
        await p.client.open_stream({})


async def test_pings_are_answered_and_measured():
    p = Pipe(None)
    assert await p.client.ping() >= 0
    assert await p.server.ping() >= 0


async def test_goaway_refuses_new_streams_and_ends_when_idle():
    p = Pipe(echo_handler)
    stream = await p.client.open_stream({})
    p.server.close()
    await asyncio.sleep(0.01)
    assert not p.client.closed.is_set()  # its stream 1 was accepted before the GOAWAY
    with pytest.raises(SpdyError):
        await p.client.open_stream({})
    assert p.server.closed.is_set()
    p.client.feed_eof()  # the server's glue closes the connection
    assert await stream.read() == b""


async def test_eof_ends_every_stream():
    p = Pipe(lambda s: s.reply())
    stream = await p.client.open_stream({})
    pending = asyncio.create_task(stream.read())
    p.client.feed_eof()
    assert await pending == b""
    assert p.client.closed.is_set()


async def test_garbage_is_a_session_error_with_goaway():
    out = []
    session = SpdySession(out.append, client=False, on_stream=lambda s: s.reply())
    session.feed(struct.pack(">HHI", 0x8003, fr.PING, 1) + b"x")
    assert session.closed.is_set() and "PING" in session.error
    assert fr.FrameParser().feed(b"".join(out))[-1] == fr.GoAway(0, fr.GOAWAY_PROTOCOL_ERROR)
    session.feed(b"more")  # ignored, no exception


async def test_stream_ids_must_grow_with_the_peers_parity():
    out = []
    session = SpdySession(out.append, client=False, on_stream=lambda s: s.reply())
    enc = fr.HeaderEncoder()
    session.feed(fr.encode_syn_stream(enc, fr.SynStream(2, {})))  # even: the server's own parity
    session.feed(fr.encode_syn_stream(enc, fr.SynStream(5, {})))
    session.feed(fr.encode_syn_stream(enc, fr.SynStream(3, {})))  # went backwards
    frames = fr.FrameParser().feed(b"".join(out))
    assert fr.RstStream(2, fr.PROTOCOL_ERROR) in frames and fr.RstStream(3, fr.PROTOCOL_ERROR) in frames
    assert any(isinstance(f, fr.SynReply) and f.stream_id == 5 for f in frames)
    assert not session.closed.is_set()


async def test_a_failing_stream_handler_resets_only_that_stream():
    def handler(stream):
        raise RuntimeError("boom")

    p = Pipe(handler)
    with pytest.raises(SpdyStreamError):
        await p.client.open_stream({})
    assert not p.server.closed.is_set()


async def test_data_after_fin_resets_the_stream():
    out = []
    session = SpdySession(out.append, client=False, on_stream=lambda s: s.reply())
    enc = fr.HeaderEncoder()
    session.feed(fr.encode_syn_stream(enc, fr.SynStream(1, {}, fin=True)))
    session.feed(fr.encode_data(1, b"late"))
    frames = fr.FrameParser().feed(b"".join(out))
    assert fr.RstStream(1, fr.STREAM_ALREADY_CLOSED) in frames


async def test_reading_pauses_the_transport_when_too_much_is_unread():
    calls = []
    session = SpdySession(lambda b: None, client=False, on_stream=lambda s: s.reply(),
                          pause_reading=calls.append)
    session.feed(fr.encode_syn_stream(fr.HeaderEncoder(), fr.SynStream(1, {})))
    stream = session.streams[1]
    for _ in range(80):
        session.feed(fr.encode_data(1, b"z" * 65536))
    assert calls == [True]
    await stream.read()
    assert calls == [True, False]


async def test_async_writer_keeps_order_and_reports_failure():
    got = []

    async def send(data):
        await asyncio.sleep(0)
        got.append(data)

    writer = AsyncWriter(send, max_message=10)
    for i in range(100):
        writer.write(b"%d," % i)
    await writer.flush()
    assert b"".join(got) == b"".join(b"%d," % i for i in range(100))
    await writer.aclose()

    async def broken(data):
        raise ConnectionResetError("gone")

    writer = AsyncWriter(broken)
    writer.write(b"x")
    await writer.flush()
    with pytest.raises(ConnectionError, match="gone"):
        await writer.drain()


# --- over TCP with the HTTP/1.1 upgrade -----------------------------------------------------


async def upgrade_server(handler_status=101, body=b""):
    """A minimal SPDY server: answers the upgrade, then echoes every stream."""
    sessions = []

    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        versions = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"x-stream-protocol-version")]
        if handler_status != 101:
            writer.write(b"HTTP/1.1 %d Bad\r\nContent-Length: %d\r\n\r\n%s" % (handler_status, len(body), body))
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     b"X-Stream-Protocol-Version: " + versions[-1] + b"\r\n\r\n")
        session = SpdySession(writer.write, client=False, on_stream=echo_handler, drain=writer.drain)
        sessions.append(session)
        while data := await reader.read(65536):
            session.feed(data)
        session.feed_eof()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], sessions


async def test_connect_spdy_upgrades_and_streams():
    server, port, sessions = await upgrade_server()
    async with server:
        session, proto = await connect_spdy(f"http://127.0.0.1:{port}/exec/abc?x=1", {"X-Extra": "1"},
                                            protocols=["v4.channel.k8s.io", "v3.channel.k8s.io"])
        assert proto == "v3.channel.k8s.io"
        stream = await session.open_stream({"streamType": "stdout"})
        payload = os.urandom(3 * 1024 * 1024)
        stream.write(payload)
        stream.close_write()
        got = bytearray()
        while data := await stream.read():
            got += data
        assert bytes(got) == payload
        assert await session.ping() >= 0
        session.close()
        await asyncio.wait_for(sessions[0].closed.wait(), 5)


async def test_connect_spdy_reports_the_refusal():
    server, port, _ = await upgrade_server(404, b'container not found ("x")')
    async with server:
        with pytest.raises(SpdyUpgradeError) as err:
            await connect_spdy(f"http://127.0.0.1:{port}/exec", {}, protocols=["v4.channel.k8s.io"])
    assert err.value.status == 404 and err.value.body == 'container not found ("x")'


async def test_data_before_the_peers_reset_stays_readable():
    # a Go streaming server writes the exec's Status, then resets every stream at once
    streams = []
    p = Pipe(lambda s: (streams.append(s), s.reply()))
    stream = await p.client.open_stream({"streamtype": "error"})
    p.client.feed(fr.encode_data(stream.id, b'{"status":"Success"}') + fr.encode_rst_stream(stream.id, fr.CANCEL))
    assert await stream.read() == b'{"status":"Success"}'
    assert await stream.read() == b"" and stream.reset_status == fr.CANCEL
