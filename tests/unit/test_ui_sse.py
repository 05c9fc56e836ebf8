"""SSE framing, and the bounds on open streams: a lagging client's queue is closed, not grown."""

from __future__ import annotations

from pocketkube.apiserver.ui import sse


def test_frame_event_id_and_json():
    assert sse.frame("snapshot", {"a": 1}, "42") == b'event: snapshot\nid: 42\ndata: {"a":1}\n\n'


def test_frame_splits_lines_so_data_cannot_forge_fields():
    out = sse.frame("x", "one\nevent: evil\r\ntwo\rthree")
    assert out == b"event: x\ndata: one\ndata: event: evil\ndata: two\ndata: three\n\n"
    assert sse.frame("a\nb", "", "1\n2") == b"event: a b\nid: 1 2\ndata: \n\n"


def test_comment_and_retry():
    assert sse.comment("keepalive") == b": keepalive\n\n"
    assert sse.retry() == b"retry: 2000\n\n"


def test_slow_client_is_closed_with_bounded_memory():
    dropped = []
    s = sse.Stream("u", max_events=4, on_overflow=lambda: dropped.append(1))
    big = b"x" * 10_000
    results = [s.put(big) for _ in range(100)]
    assert results[:4] == [True] * 4 and not any(results[4:])
    assert s.closed == "client too slow" and dropped == [1]
    assert s.queued_bytes() <= 4 * len(big)
    assert s.queue.qsize() == 5  # four events and the close marker


def test_per_user_cap_and_close_all():
    streams = sse.Streams(per_user=2)
    a, b, c, d = (sse.Stream(u) for u in ("alice", "alice", "alice", "bob"))
    assert streams.add(a) and streams.add(b) and not streams.add(c) and streams.add(d)
    streams.remove(a)
    assert streams.add(c)
    streams.close_all()
    assert all(s.closed == "server shutting down" for s in (b, c, d))
    assert not b.put(b"late")


class _Resp:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended = False

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    async def write_eof(self) -> None:
        self.ended = True


async def test_pump_keepalive_close_and_max_age(monkeypatch):
    import asyncio
    import time

    from pocketkube.apiserver.ui import stream as stream_mod

    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)
    s, resp = sse.Stream("u"), _Resp()
    s.put(b"event: a\ndata: 1\n\n")
    task = asyncio.create_task(stream_mod._pump(s, resp))
    await asyncio.sleep(0.2)
    s.close("server shutting down")
    await asyncio.wait_for(task, 1)
    assert resp.chunks[0] == b"event: a\ndata: 1\n\n" and b": keepalive\n\n" in resp.chunks and resp.ended
    old, resp = sse.Stream("u", opened=time.monotonic() - sse.MAX_AGE_SECONDS - 1), _Resp()
    await asyncio.wait_for(stream_mod._pump(old, resp), 1)
    assert old.closed == "max age" and resp.chunks == [] and resp.ended
