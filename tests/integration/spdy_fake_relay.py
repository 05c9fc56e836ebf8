"""A fake of `pocketkube.apiserver.streams.relay` (issue 11 spec §1b) that needs no node agent:
port-forward connects to 127.0.0.1:<port> on this host, exec runs the command here with pipes.
It keeps count of what is open, so tests can check that nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web


class AgentError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.body)


class FakePortChannel:
    def __init__(self, relay: FakeRelay, reader, writer, error: str | None = None) -> None:
        self.relay = relay
        self.reader, self.writer = reader, writer
        self.error = error
        self.closed = False
        relay.open_ports += 1

    async def write(self, data: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer is not None and not self.writer.is_closing() and self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()

    async def read(self) -> bytes:
        if self.reader is None:
            return b""
        try:
            return await self.reader.read(256 * 1024)
        except ConnectionError:
            return b""

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.open_ports -= 1
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


class FakeExecChannel:
    def __init__(self, relay: FakeRelay, proc: asyncio.subprocess.Process, tty: bool) -> None:
        self.relay = relay
        self.proc = proc
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False
        self.resizes: list[bytes] = []
        relay.open_execs += 1
        relay.execs.append(self)
        self._tasks = [asyncio.ensure_future(self._pump(proc.stdout, 1)),
                       asyncio.ensure_future(self._pump(proc.stderr, 2))]
        self._done = asyncio.ensure_future(self._wait())

    async def _pump(self, pipe, channel: int) -> None:
        while data := await pipe.read(65536):
            await self.queue.put((channel, data))

    async def _wait(self) -> None:
        await asyncio.gather(*self._tasks)
        code = await self.proc.wait()
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure",
                      "message": f"command terminated with non-zero exit code: exit status {code}",
                      "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        await self.queue.put((3, orjson.dumps(status)))
        await self.queue.put(None)

    async def send(self, channel: int, data: bytes) -> None:
        if channel == 0 and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()
        elif channel == 4:
            self.resizes.append(data)

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    async def receive(self):
        if self.closed:
            return None
        return await self.queue.get()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.open_execs -= 1
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        for task in (*self._tasks, self._done):
            task.cancel()


class FakeRelay:
    """Use as the `relay` of the SPDY terminations: `open_port`, `open_exec`, `AgentError`."""

    AgentError = AgentError

    def __init__(self) -> None:
        self.open_ports = 0
        self.open_execs = 0
        self.execs: list[FakeExecChannel] = []
        self.containers = {"app"}

    async def open_port(self, request, pod: dict, port: int) -> FakePortChannel:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            uid = pod["metadata"].get("uid", "")
            return FakePortChannel(self, None, None, error=(
                f"error forwarding port {port} to pod {uid}, uid : failed to connect to localhost:{port} "
                f"inside namespace \"{uid}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused "))
        return FakePortChannel(self, reader, writer)

    async def open_exec(self, request, pod: dict, container: str, *, command: list[str], stdin: bool,
                        stdout: bool, stderr: bool, tty: bool, attach: bool = False) -> FakeExecChannel:
        if container not in self.containers:
            raise AgentError(404, f'container not found ("{container}")')
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise AgentError(500, f"exec failed: {e}") from None
        return FakeExecChannel(self, proc, tty)
