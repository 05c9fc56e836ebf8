"""Exec, attach and port-forward through a CRI runtime's streaming server.

The CRI calls Exec, Attach and PortForward only prepare a session and answer with a URL on the
runtime's streaming server (containerd's listens on 127.0.0.1 only, see runtime/containerd.py);
the session itself is SPDY/3.1 there, as the kubelet's clients speak it:

- remotecommand (exec, attach), protocols v4..v1 of channel.k8s.io: one SPDY stream per standard
  stream, named by its `streamType` header (error, stdin, stdout, stderr, resize); stdin's EOF is
  its FIN; resize is a JSON {"Width","Height"} per message; the error stream carries, at the end,
  a Status (v4: a non-zero exit code as NonZeroExitCode) or, in older protocols, plain text.
- portforward.k8s.io: per connection an error stream (which we half-close at once: only the
  server writes on it) and a data stream, both with the `port` and a `requestID` header.

One SPDY connection per session (tokens in the URLs are single-use anyway). Closing it ends the
session's streams, but containerd leaves the exec's command running (as upstream): the exec's
process, found by exec_pids.ExecTracker, is killed when the session closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from pocketkube.agent.runtime.cri.exec_pids import ExecTracker
from pocketkube.agent.runtime.interface import STDERR, STDOUT, StreamError, StreamExit, StreamOptions
from pocketkube.agent.runtime.streamio import Output, exec_start_failure, status_from_error_stream

REMOTECOMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
# After a forwarded connection's data ends, how long its error (if any) may take to arrive.
ERROR_GRACE = 2.0


async def _connect(url: str, protocols: list[str]):
    from pocketkube.streams.spdy import SpdyUpgradeError, connect_spdy  # the leaf codec

    try:
        return await connect_spdy(url, {}, protocols=protocols)
    except SpdyUpgradeError as e:
        raise StreamError(f"the runtime's streaming server refused the session: {e}") from None
    except OSError as e:
        raise StreamError(f"the runtime's streaming server cannot be reached: {e}") from None


async def _read_all(stream) -> bytes:
    chunks = []
    while data := await stream.read():
        chunks.append(data)
    return b"".join(chunks)


class CriSession:
    """An exec or attach on a CRI streaming server (a ContainerStream)."""

    def __init__(self, session, protocol: str, opts: StreamOptions) -> None:
        self.session, self.protocol, self.opts = session, protocol, opts
        self.output = Output()
        self.error = self.stdin = self.resize_stream = None
        self._error_task: asyncio.Task | None = None
        self._closed = False
        self._tracker: ExecTracker | None = None
        self._failure_told = False
        self._tracking: asyncio.Task | None = None
        self._ended = asyncio.Event()  # the error stream ended: the command is done

    def track(self, tracker: ExecTracker, lock: asyncio.Lock) -> None:
        """Find this exec's process in the background, holding the container's `lock` (taken by
        the caller before the exec started) until it is found; `close` kills it."""
        self._tracker = tracker

        async def find() -> None:
            try:
                await tracker.find(self._ended)
            finally:
                lock.release()
        self._tracking = asyncio.get_running_loop().create_task(find())

    @classmethod
    async def open(cls, url: str, opts: StreamOptions) -> CriSession:
        session, protocol = await _connect(url, REMOTECOMMAND_PROTOCOLS)
        self = cls(session, protocol, opts)
        # The order client-go creates them in; the server waits for exactly these.
        kinds = ["error"] + ["stdin"] * opts.stdin + ["stdout"] * opts.stdout
        kinds += ["stderr"] * (opts.stderr and not opts.tty)
        kinds += ["resize"] * (opts.tty and protocol not in ("channel.k8s.io", "v2.channel.k8s.io"))
        try:
            # All SYN_STREAMs at once (ids in this order), then the replies: one round trip to
            # the streaming server instead of one per stream (client-go waits for each).
            opened = await asyncio.gather(*(session.open_stream({"streamtype": k}) for k in kinds),
                                          return_exceptions=True)
            failed = next((s for s in opened if isinstance(s, BaseException)), None)
            if failed is not None:
                raise failed
        except BaseException:
            session.close()
            raise
        streams = dict(zip(kinds, opened, strict=True))
        self.error = streams["error"]
        self.stdin = streams.get("stdin")
        self.resize_stream = streams.get("resize")
        for channel, kind in ((STDOUT, "stdout"), (STDERR, "stderr")):
            if kind in streams:
                self.output.pump(channel, streams[kind].read)
        self._error_task = asyncio.get_running_loop().create_task(_read_all(self.error))
        self._error_task.add_done_callback(lambda _: self._ended.set())
        return self

    async def write(self, data: bytes) -> None:
        if self.stdin is not None and data:
            with contextlib.suppress(ConnectionError):  # the command is gone: its stdin with it
                self.stdin.write(data)
                await self.stdin.drain()

    async def close_stdin(self) -> None:
        if self.stdin is not None:
            self.stdin.close_write()
            self.stdin = None

    async def resize(self, width: int, height: int) -> None:
        if self.resize_stream is not None:
            with contextlib.suppress(ConnectionError):
                self.resize_stream.write(json.dumps({"Width": width, "Height": height}).encode() + b"\n")
                await self.resize_stream.drain()

    async def read(self) -> tuple[int, bytes] | None:
        item = await self.output.read()
        if item is None and not self._failure_told:
            # A command that could not be executed says so on stderr, as a shell would.
            self._failure_told = True
            assert self._error_task is not None
            failure = exec_start_failure(status_from_error_stream(await asyncio.shield(self._error_task)).error or "")
            if failure is not None and (self.opts.stderr or self.opts.tty):
                return (STDOUT if self.opts.tty else STDERR), failure[1].encode() + b"\n"
        return item

    async def wait(self) -> StreamExit:
        assert self._error_task is not None
        result = status_from_error_stream(await asyncio.shield(self._error_task))
        failure = exec_start_failure(result.error or "")
        return StreamExit(failure[0]) if failure is not None else result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tracking is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._tracking
        if self._tracker is not None:
            self._tracker.kill()
        self.session.close()
        await self.output.cancel()
        if self._error_task is not None:
            self._error_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._error_task


class CriPortStream:
    """One forwarded connection on a CRI streaming server (a PortStream). `error` is the server's
    message when it could not connect (it arrives on the error stream, after the data ends)."""

    def __init__(self, session, data, error) -> None:
        self.session, self.data, self.error_stream = session, data, error
        self.error: str | None = None
        self._got_data = False
        self._error_task = asyncio.get_running_loop().create_task(_read_all(error))

    @classmethod
    async def open(cls, url: str, port: int) -> CriPortStream:
        session, _ = await _connect(url, [PORTFORWARD_PROTOCOL])
        try:
            headers = {"port": str(port), "requestid": "0"}
            error = await session.open_stream({**headers, "streamtype": "error"})
            error.close_write()
            data = await session.open_stream({**headers, "streamtype": "data"})
        except BaseException:
            session.close()
            raise
        return cls(session, data, error)

    async def read(self) -> bytes:
        data = await self.data.read()
        if data:
            self._got_data = True
        elif not self._got_data and self.error is None:
            # A connection that never carried data may have failed to connect: the reason follows.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                async with asyncio.timeout(ERROR_GRACE):
                    message = (await asyncio.shield(self._error_task)).decode(errors="replace").strip()
                    self.error = message or None
        return data

    async def write(self, data: bytes) -> None:
        self.data.write(data)  # ConnectionError once the connection was reset: it ends
        await self.data.drain()

    async def write_eof(self) -> None:
        self.data.close_write()

    async def close(self) -> None:
        self.session.close()
        self._error_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._error_task
