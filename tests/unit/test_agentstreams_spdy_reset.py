"""What the agent needs of the SPDY codec against containerd's streaming server: data that arrived
before the peer reset the stream stays readable (the server writes an exec's Status on the error
stream and resets every stream at once; Go's spdystream hands that data to its readers)."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.streams import spdy_frames as fr
from pocketkube.streams.spdy import SpdySession

pytestmark = pytest.mark.unit


async def test_data_then_reset_in_one_read_stays_readable():
    loop = asyncio.get_running_loop()
    to_server: list[bytes] = []
    client = SpdySession(to_server.append, client=True)
    opened = loop.create_task(client.open_stream({"streamtype": "error"}))
    await asyncio.sleep(0)
    out: list[bytes] = []
    server = SpdySession(out.append, client=False, on_stream=lambda s: s.reply())
    for data in to_server:
        server.feed(data)
    client.feed(b"".join(out))
    stream = await opened
    sid = stream.id
    status = b'{"status":"Failure","reason":"NonZeroExitCode"}'
    # One segment: DATA, then RST_STREAM, as a Go server's Close() sends them.
    client.feed(fr.encode_data(sid, status, False) + fr.encode_rst_stream(sid, fr.CANCEL))
    assert await stream.read() == status
    assert await stream.read() == b""
    assert stream.reset_status == fr.CANCEL
