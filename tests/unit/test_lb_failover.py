"""pocketkube lb: the dial order (pure), failover between real loopback listeners, bad flags."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube import cli
from pocketkube.lb_cli import targets_of
from pocketkube.net.tcplb import Balancer, dial_order

A, B, C = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)


def test_dial_order_prefers_the_last_good_then_the_configured_order_and_down_ones_last():
    assert dial_order([A, B, C], None, {}, now=10) == [A, B, C]
    assert dial_order([A, B, C], B, {}, now=10) == [B, A, C]
    assert dial_order([A, B, C], None, {A: 15, C: 12}, now=10) == [B, C, A]
    assert dial_order([A, B, C], A, {A: 9}, now=10) == [A, B, C]  # its down time is over


def test_targets_of_server_urls():
    assert targets_of("https://10.0.0.5:6443,https://h2") == [("10.0.0.5", 6443), ("h2", 443)]


async def _echo_server(tag: bytes) -> asyncio.Server:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read(100)
        w.write(tag + data)
        await w.drain()
        w.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _ask(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"ping")
    await w.drain()
    w.write_eof()
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


@pytest.mark.timeout(20)
async def test_new_connections_move_to_the_next_server_when_one_dies_and_come_back():
    first, second = await _echo_server(b"a:"), await _echo_server(b"b:")
    targets = [s.sockets[0].getsockname()[:2] for s in (first, second)]
    lb = Balancer(targets, connect_timeout=1.0, down_for=60)
    port = await lb.start("127.0.0.1", 0)
    try:
        assert await _ask(port) == b"a:ping"
        first.close()
        await first.wait_closed()
        assert await _ask(port) == b"b:ping"  # refused by the first: the second answers
        assert lb.preferred == targets[1] and targets[0] in lb.down_until
        assert await _ask(port) == b"b:ping"  # and stays preferred
        second.close()
        await second.wait_closed()
        r, w = await asyncio.open_connection("127.0.0.1", port)  # none up: the connection just ends
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
    finally:
        await lb.close()


@pytest.mark.parametrize("argv, message", [
    (["lb", "--server", "https://10.0.0.5:6443", "--listen", "bogus"], "expected HOST:PORT"),
    (["lb", "--server", "ftp://x"], "--server"),
    (["lb"], "the following arguments are required: --server"),
])
def test_bad_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
