"""A fake node agent that speaks the internal stream protocol (issue 11 spec §1a) from local
processes: exec runs the command on this host (in `workdir`), attach runs the container's
`attach` command, port-forward connects to 127.0.0.1:<port>. For API-server tests that need no
runtime; it runs in a thread of its own with its own event loop.

    with running_fake_agent(token, {("default", "web"): FakePod(uid="u1", containers={"app"})}) as agent:
        ... register a Node at 127.0.0.1:agent.port, a pod on it ...
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import os
import pty
import signal
import struct
import termios
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

EXEC_PROTOCOL = "v5.channel.k8s.io"
PORTFORWARD_PROTOCOL = "pocketkube.portforward.v1"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


@dataclass
class FakePod:
    uid: str
    containers: set[str]
    attach: tuple[str, ...] = ("sh", "-c", "echo attached; cat")  # what `attach` connects to


@dataclass
class FakeStreamAgent:
    token: str
    pods: dict[tuple[str, str], FakePod]
    workdir: str = "/tmp"
    port: int = 0
    processes: set[int] = field(default_factory=set)   # pids of commands running now
    connections: int = 0                                # port-forward connections open now
    requests: list[str] = field(default_factory=list)  # paths with their query, as received

    # ---- HTTP ----
    @web.middleware
    async def _auth(self, request: web.Request, handler):
        self.requests.append(str(request.rel_url))
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return web.Response(status=401, text="Unauthorized")
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/exec/{ns}/{pod}/{container}", self._exec)
        app.router.add_get("/attach/{ns}/{pod}/{container}", self._exec)
        app.router.add_get("/portForward/{ns}/{pod}", self._port_forward)
        return app

    def _pod(self, request: web.Request) -> FakePod:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        pod = self.pods.get((ns, name))
        if pod is None:
            raise web.HTTPNotFound(text=f'pod not found ("{ns}/{name}")')
        return pod

    # ---- exec / attach ----
    async def _exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        if container not in pod.containers:
            raise web.HTTPNotFound(text=f'container not found ("{container}")')
        q = request.query
        flags = {k: q.get(k) == "1" for k in ("stdin", "stdout", "stderr", "tty")}
        attach = request.path.startswith("/attach/")
        command = list(pod.attach) if attach else q.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="command is required")
        ws = web.WebSocketResponse(protocols=(EXEC_PROTOCOL,), max_msg_size=0)
        await ws.prepare(request)
        await _ExecSession(self, ws, command, **flags).run()
        return ws

    # ---- port-forward ----
    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        port = int(request.query.get("port", "0"))
        ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL,), max_msg_size=0)
        await ws.prepare(request)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            await ws.send_str(f"error forwarding port {port} to pod {pod.uid}, uid : failed to connect to "
                              f"localhost:{port} inside namespace \"{pod.uid}\": dial tcp4 127.0.0.1:{port}: connect: "
                              f"{os.strerror(e.errno).lower() if e.errno else e}")
            await ws.close()
            return ws
        self.connections += 1
        try:
            await _forward(ws, reader, writer)
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await ws.close()
        return ws


async def _forward(ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async def to_pod() -> None:
        """Until the API server closes: that ends the connection, whatever the pod still sends."""
        while True:
            msg = await ws.receive()
            if msg.type != WSMsgType.BINARY:
                return
            if not msg.data:
                if writer.can_write_eof():
                    writer.write_eof()
                continue
            writer.write(msg.data)
            await writer.drain()

    async def from_pod() -> None:
        while data := await reader.read(65536):
            await ws.send_bytes(data)
        await ws.send_bytes(b"")  # the pod half-closed
        await asyncio.Event().wait()  # the end is the API server's close

    tasks = [asyncio.create_task(to_pod()), asyncio.create_task(from_pod())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await t


class _ExecSession:
    def __init__(self, agent: FakeStreamAgent, ws: web.WebSocketResponse, command: list[str], *, stdin: bool,
                 stdout: bool, stderr: bool, tty: bool) -> None:
        self.agent, self.ws, self.command = agent, ws, command
        self.stdin, self.stdout, self.stderr, self.tty = stdin, stdout, stderr, tty
        self.master: int | None = None

    async def run(self) -> None:
        try:
            proc = await self._start()
        except OSError as e:
            code = 126 if isinstance(e, PermissionError) else 127
            await self._finish(_exit_status(code, str(e)))
            return
        self.agent.processes.add(proc.pid)
        inbound = asyncio.create_task(self._from_apiserver(proc))
        try:
            await self._outputs(proc)
            code = await proc.wait()
            await self._finish(_exit_status(code))
        finally:
            inbound.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await inbound
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            self.agent.processes.discard(proc.pid)
            if self.master is not None:
                os.close(self.master)

    async def _start(self) -> asyncio.subprocess.Process:
        if self.tty:
            self.master, slave = pty.openpty()
            try:
                return await asyncio.create_subprocess_exec(*self.command, stdin=slave, stdout=slave, stderr=slave,
                                                            cwd=self.agent.workdir, start_new_session=True)
            finally:
                os.close(slave)
        pipe = asyncio.subprocess.PIPE
        return await asyncio.create_subprocess_exec(
            *self.command, stdin=pipe if self.stdin else asyncio.subprocess.DEVNULL, stdout=pipe,
            stderr=pipe if self.stderr else asyncio.subprocess.DEVNULL, cwd=self.agent.workdir,
            start_new_session=True)

    async def _outputs(self, proc: asyncio.subprocess.Process) -> None:
        if self.master is not None:
            await self._pump_pty()
            return
        pumps = [self._pump(proc.stdout, STDOUT if self.stdout else None)]
        if proc.stderr is not None:
            pumps.append(self._pump(proc.stderr, STDERR))
        await asyncio.gather(*pumps)

    async def _pump(self, stream: asyncio.StreamReader | None, channel: int | None) -> None:
        assert stream is not None
        while data := await stream.read(65536):
            if channel is not None:
                await self.ws.send_bytes(bytes((channel,)) + data)

    async def _pump_pty(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.master is not None
        while True:
            try:
                data = await loop.run_in_executor(None, os.read, self.master, 65536)
            except OSError:  # EIO: every holder of the terminal is gone
                return
            if not data:
                return
            await self.ws.send_bytes(bytes((STDOUT,)) + data)

    async def _from_apiserver(self, proc: asyncio.subprocess.Process) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type != WSMsgType.BINARY:
                break
            if not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == STDIN and self.stdin:
                if self.master is not None:
                    os.write(self.master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif channel == CLOSE and data == bytes((STDIN,)):
                if self.master is not None:
                    os.write(self.master, b"\x04")
                elif proc.stdin is not None:
                    proc.stdin.close()
            elif channel == RESIZE and self.master is not None:
                size = json.loads(data)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
        # The API server closed: the client is gone, kill what we started.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _finish(self, status: dict) -> None:
        with contextlib.suppress(ConnectionError):
            if not self.ws.closed:
                await self.ws.send_bytes(bytes((ERROR,)) + json.dumps(status).encode())
            await self.ws.close()


def _exit_status(code: int, message: str = "") -> dict:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    if code < 0:  # killed by a signal, as a shell reports it
        code = 128 - code
    return {"metadata": {}, "status": "Failure",
            "message": message or f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


@contextlib.contextmanager
def running_fake_agent(token: str, pods: dict[tuple[str, str], FakePod], workdir: str = "/tmp",
                       host: str = "127.0.0.1") -> Iterator[FakeStreamAgent]:
    """The fake agent serving on `host` (a free port) in a thread, until the block ends."""
    agent = FakeStreamAgent(token, pods, workdir)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(agent.app())

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        agent.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-stream-agent", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the fake stream agent did not start")
    try:
        yield agent
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
