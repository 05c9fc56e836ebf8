"""The CRI log format as `kubectl logs` reads it: prefixes stripped, P pieces joined, timestamps,
since, tail by joined lines, and unfinished lines while following."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import pytest

from pocketkube.agent import crilog
from pocketkube.agent.logserver import LogServer, log_options
from pocketkube.agent.runtime.interface import ContainerHistory, ContainerRecord

T1 = "2026-12-05T02:00:00.123456789Z"
T2 = "2026-12-05T02:00:01.5Z"
T3 = "2026-12-05T02:00:02Z"


def cri(ts: str, stream: str, tag: str, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return f"{ts} {stream} {tag} ".encode() + payload + b"\n"


def decode(data: bytes, **kw) -> bytes:
    d = crilog.CriDecoder(**kw)
    return d.feed(data) + d.flush()


@pytest.mark.parametrize("text,ns,out", [
    ("2026-12-05T02:00:00.123456789Z", 1796436000_123456789, "2026-12-05T02:00:00.123456789Z"),
    ("2026-12-05T02:00:00.120000000Z", 1796436000_120000000, "2026-12-05T02:00:00.12Z"),
    ("2026-12-05T02:00:00.000000000Z", 1796436000_000000000, "2026-12-05T02:00:00Z"),
    ("2026-12-05T02:00:00.5Z", 1796436000_500000000, "2026-12-05T02:00:00.5Z"),
    ("2026-12-05T02:00:00Z", 1796436000_000000000, "2026-12-05T02:00:00Z"),
    ("2026-12-05T03:00:00.25+01:00", 1796436000_250000000, "2026-12-05T03:00:00.25+01:00"),
    ("2026-12-05T02:00:00+00:00", 1796436000_000000000, "2026-12-05T02:00:00Z"),
])
def test_timestamps_parse_to_nanoseconds_and_print_as_go_does(text, ns, out):
    ts = crilog.parse_timestamp(text)
    assert ts is not None and (ts.ns, ts.text) == (ns, out)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-12-05 02:00:00Z", "2026-12-05T02:00:00", "2026-13-05T02:00:00Z",
                                  "2026-12-05T02:00:00.1234567891Z"])
def test_bad_timestamps_are_none(text):
    assert crilog.parse_timestamp(text) is None


def test_prefixes_are_stripped_and_both_streams_kept():
    data = cri(T1, "stdout", "F", "one") + cri(T2, "stderr", "F", "two") + cri(T3, "stdout", "F", "")
    assert decode(data) == b"one\ntwo\n\n"


def test_timestamps_prefix_each_line_with_go_formatting():
    data = cri("2026-12-05T02:00:00.100000000Z", "stdout", "F", "one") + cri(T3, "stdout", "F", "two")
    assert decode(data, timestamps=True) == b"2026-12-05T02:00:00.1Z one\n2026-12-05T02:00:02Z two\n"


def test_a_40000_byte_line_split_p_p_f_is_one_line_with_one_timestamp():
    line = bytes(range(33, 127)) * 425 + b"x" * 50  # 40,000 printable bytes
    assert len(line) == 40_000
    data = (cri(T1, "stdout", "P", line[:16384]) + cri(T2, "stdout", "P", line[16384:32768])
            + cri(T3, "stdout", "F", line[32768:]) + cri(T3, "stdout", "F", "next"))
    assert decode(data) == line + b"\nnext\n"
    assert decode(data, timestamps=True) == f"{T1} ".encode() + line + f"\n{T3} next\n".encode()
    # Fed in arbitrary chunks, the result is the same.
    d = crilog.CriDecoder()
    out = b"".join(d.feed(data[i:i + 1000]) for i in range(0, len(data), 1000)) + d.flush()
    assert out == line + b"\nnext\n"
    # tail 1 is the last joined line; tail 2 includes the whole 40,000-byte line.
    f = io.BytesIO(data)
    assert data[crilog.tail_offset(f, 1):] == cri(T3, "stdout", "F", "next")
    assert data[crilog.tail_offset(f, 2):] == data
    assert crilog.tail_offset(f, 0) == len(data)


def test_tail_counts_joined_lines_and_an_unfinished_last_one():
    a = cri(T1, "stdout", "F", "a")
    b = cri(T1, "stdout", "P", "b1") + cri(T2, "stdout", "F", "b2")
    c = cri(T2, "stdout", "P", "c")  # still being written: no F yet
    data = a + b + c
    f = io.BytesIO(data)
    assert data[crilog.tail_offset(f, 1):] == c
    assert data[crilog.tail_offset(f, 2):] == b + c
    assert crilog.tail_offset(f, 3) == 0 and crilog.tail_offset(f, 10) == 0
    assert crilog.tail_offset(io.BytesIO(b""), 3) == 0


def test_tail_across_blocks(monkeypatch):
    monkeypatch.setattr(crilog, "_BLOCK", 7)
    lines = [cri(T1, "stdout", "F", f"line {i}") for i in range(20)]
    data = b"".join(lines)
    f = io.BytesIO(data)
    for n in (1, 5, 19):
        assert data[crilog.tail_offset(f, n):] == b"".join(lines[-n:])


def test_since_drops_older_pieces():
    data = cri(T1, "stdout", "F", "old") + cri(T2, "stdout", "F", "new") + cri(T3, "stderr", "F", "newer")
    since = crilog.parse_timestamp("2026-12-05T02:00:01Z")
    assert since is not None
    assert decode(data, since_ns=since.ns) == b"new\nnewer\n"
    assert decode(data, since_ns=since.ns, timestamps=True) == f"{T2} new\n{T3} newer\n".encode()


def test_partial_file_line_during_follow_waits_for_the_rest():
    d = crilog.CriDecoder(timestamps=True)
    whole = cri(T1, "stdout", "F", "hello world")
    assert d.feed(whole[:20]) == b""  # the runtime is still writing this line
    assert d.feed(whole[20:30]) == b""
    assert d.feed(whole[30:]) == f"{T1} hello world\n".encode()
    # A P piece is printed when complete, and the F piece continues it without a timestamp.
    assert d.feed(cri(T2, "stdout", "P", "par")) == f"{T2} par".encode()
    assert d.feed(cri(T3, "stdout", "F", "tial")) == b"tial\n"
    # An unfinished line at the end is given out by flush (no more is coming).
    assert d.feed(f"{T3} stdout F last".encode()) == b""
    assert d.flush() == f"{T3} last".encode()


def test_non_cri_lines_are_skipped():
    data = b"garbage\n" + cri(T1, "stdout", "F", "ok") + f"{T1} stdin F x\n".encode() + b"not-a-time stdout F y\n"
    assert decode(data) == b"ok\n"


def test_log_options_from_the_query():
    opts = log_options({"tailLines": "3", "limitBytes": "10", "follow": "true", "timestamps": "true",
                        "sinceTime": "2026-12-05T02:00:01Z"}, previous=False)
    assert (opts.tail, opts.limit, opts.follow, opts.timestamps) == (3, 10, True, True)
    assert opts.since_ns == 1796436001 * 10**9
    assert log_options({"sinceSeconds": "10"}, previous=False, now=100.0).since_ns == 90 * 10**9
    assert not log_options({"follow": "true"}, previous=True).follow
    for bad in ({"tailLines": "x"}, {"sinceSeconds": "soon"}, {"sinceTime": "yesterday"}):
        with pytest.raises(ValueError):
            log_options(bad, previous=False)


# ---- the log server over a CRI log file ----

class _Runtime:
    def __init__(self, history: ContainerHistory) -> None:
        self._history = history

    def history(self, pod_uid: str, name: str) -> ContainerHistory:
        return self._history


class _Kubelet:
    def __init__(self, history: ContainerHistory) -> None:
        self.runtime = _Runtime(history)
        self.workers: dict = {}

    def find_pod(self, namespace: str, name: str) -> dict | None:
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u1"},
                "spec": {"containers": [{"name": "c"}]}} if name == "p" else None


def _record(path: Path, restart: int, running: bool) -> ContainerRecord:
    return ContainerRecord(id=f"id{restart}", name="c", pid=1, start_ticks=0, started_at=T1, restart_count=restart,
                           log_path=str(path), log_format="cri", scheme="containerd",
                           exit_code=None if running else 0)


async def test_log_server_reads_cri_files(tmp_path: Path):
    previous = tmp_path / "0.log"
    previous.write_bytes(cri(T1, "stdout", "F", "before the restart"))
    current = tmp_path / "1.log"
    line = b"y" * 40_000
    current.write_bytes(cri(T1, "stdout", "F", "old") + cri(T2, "stdout", "P", line[:16384])
                        + cri(T2, "stdout", "F", line[16384:]) + cri(T3, "stderr", "F", "last"))
    rec = _record(current, 1, running=True)
    server = LogServer(_Kubelet(ContainerHistory(rec, _record(previous, 0, running=False))),  # type: ignore[arg-type]
                       "127.0.0.1", 0, "token")
    port = await server.start()
    url = f"http://127.0.0.1:{port}/containerLogs/default/p/c"

    async def get(**params: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s, s.get(url, params=params,
                                                       headers={"Authorization": "Bearer token"}) as r:
            return r.status, await r.read()
    try:
        assert await get() == (200, b"old\n" + line + b"\nlast\n")
        assert await get(tailLines="2") == (200, line + b"\nlast\n")
        assert await get(timestamps="true", tailLines="1") == (200, f"{T3} last\n".encode())
        assert await get(sinceTime="2026-12-05T02:00:01Z", limitBytes="5") == (200, b"yyyyy")
        assert await get(previous="true") == (200, b"before the restart\n")
        assert (await get(sinceTime="never"))[0] == 400

        async def finish() -> None:
            await asyncio.sleep(0.2)
            with open(current, "ab") as f:
                f.write(cri(T3, "stdout", "F", "more")[:10])  # a line half written...
                f.flush()
                await asyncio.sleep(0.2)
                f.write(cri(T3, "stdout", "F", "more")[10:])  # ...and finished
            rec.exit_code = 0
        writer = asyncio.create_task(finish())
        status, body = await get(follow="true", tailLines="1")
        await writer
        assert (status, body) == (200, b"last\nmore\n")
    finally:
        await server.stop()
