"""The agent's exec, attach and port-forward endpoints, on the log server's HTTP app:

    GET /exec/{namespace}/{pod}/{container}?command=..&stdin=1&stdout=1&stderr=1&tty=1&uid=<pod uid>
    GET /attach/{namespace}/{pod}/{container}?stdin=1&stdout=1&stderr=1&tty=1&uid=...
    GET /portForward/{namespace}/{pod}?port=N&uid=...

authenticated as /containerLogs (the node's token: only the API server has it). Failures before
the WebSocket upgrade are plain text (the API server hands them to the client as the upgrade's
failure). The WebSocket's end is the session's end: when the API server drops it (its client is
gone), the runtime session is closed, which kills what an exec started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from pocketkube.agent.runtime.interface import (
    ContainerNotRunning,
    ContainerStream,
    PortStream,
    StreamError,
    StreamExit,
)
from pocketkube.agent.streaming import protocol as p

if TYPE_CHECKING:
    from pocketkube.agent.kubelet import Kubelet

log = logging.getLogger(__name__)

# How long the agent waits for the API server to answer its close frame.
CLOSE_TIMEOUT = 2.0
MAX_MESSAGE = 4 * 1024 * 1024


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


class StreamingEndpoints:
    def __init__(self, kubelet: Kubelet, authorized: Callable[[web.Request], bool]) -> None:
        self.kubelet = kubelet
        self.authorized = authorized
        self._open: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/exec/{namespace}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{namespace}/{pod}/{container}", self.attach)
        app.router.add_get("/portForward/{namespace}/{pod}", self.port_forward)
        app.on_shutdown.append(self._close_all)

    async def _close_all(self, _app: web.Application) -> None:
        """The agent stops: end every stream now (the server would otherwise wait for them), so
        that each handler closes its session (an exec's processes killed)."""
        await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"node agent shutting down")
                               for ws in list(self._open)), return_exceptions=True)

    async def _upgrade(self, request: web.Request, protocol: str) -> web.WebSocketResponse:
        # No compression: the payloads are terminals and TCP streams, often compressed already.
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=MAX_MESSAGE, timeout=CLOSE_TIMEOUT,
                                   compress=False)
        await ws.prepare(request)
        self._open.add(ws)
        return ws

    def _pod(self, request: web.Request) -> tuple[dict | None, web.Response | None]:
        """The request's pod on this node, or the response refusing the request."""
        if not self.authorized(request):
            return None, _text(401, "Unauthorized")
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.kubelet.find_pod(ns, name)
        uid = request.query.get("uid")
        if pod is None or (uid and pod["metadata"].get("uid") != uid):
            return None, _text(404, f'pod not found ("{ns}/{name}")')
        return pod, None

    @staticmethod
    def _has_container(pod: dict, name: str) -> bool:
        spec = pod.get("spec") or {}
        return any(c.get("name") == name for key in ("containers", "initContainers", "ephemeralContainers")
                   for c in spec.get(key) or [])

    # ---- exec and attach ----
    async def exec(self, request: web.Request) -> web.StreamResponse:
        return await self._container_session(request, attach=False)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._container_session(request, attach=True)

    async def _container_session(self, request: web.Request, *, attach: bool) -> web.StreamResponse:
        pod, refused = self._pod(request)
        if refused is not None:
            return refused
        assert pod is not None
        container = request.match_info["container"]
        if not self._has_container(pod, container):
            return _text(404, f'container not found ("{container}")')
        try:
            req = p.parse_exec(request.query, attach=attach)
        except ValueError as e:
            return _text(400, str(e))
        uid = pod["metadata"]["uid"]
        runtime = self.kubelet.runtime
        try:
            if attach:
                session = await runtime.attach(uid, container, req.opts)
            else:
                session = await runtime.exec_stream(uid, container, req.command, req.opts)
        except ContainerNotRunning:
            return _text(404, f'container not found ("{container}")')
        except StreamError as e:
            return _text(500, str(e))
        ws = None
        try:
            ws = await self._upgrade(request, p.EXEC_PROTOCOL)
            await self._relay_session(ws, session)
            return ws
        finally:
            self._open.discard(ws)
            await session.close()

    async def _relay_session(self, ws: web.WebSocketResponse, session: ContainerStream) -> None:
        """Relay until the session's output ends (then its Status on the error channel) or the
        WebSocket closes (abandoned: the caller closes the session)."""
        inbound = asyncio.ensure_future(self._session_input(ws, session))
        outbound = asyncio.ensure_future(self._session_output(ws, session))
        try:
            await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
            if not outbound.done() or isinstance(outbound.exception(), ConnectionError):
                return  # the API server went away first
            outbound.result()  # a runtime's failure is raised (and logged) as such
            try:
                result = await session.wait()
            except StreamError as e:
                result = StreamExit(None, str(e))
            with contextlib.suppress(ConnectionError):
                await ws.send_bytes(p.frame(p.ERROR, json.dumps(p.exit_status(result)).encode()))
        finally:
            for task in (inbound, outbound):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await ws.close()

    @staticmethod
    async def _session_input(ws: web.WebSocketResponse, session: ContainerStream) -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == p.STDIN:
                await session.write(data)
            elif channel == p.RESIZE:
                size = p.parse_resize(data)
                if size is not None:
                    await session.resize(*size)
            elif channel == p.CLOSE and data[:1] == bytes((p.STDIN,)):
                await session.close_stdin()

    @staticmethod
    async def _session_output(ws: web.WebSocketResponse, session: ContainerStream) -> None:
        while (item := await session.read()) is not None:
            channel, data = item
            await ws.send_bytes(p.frame(channel, data))

    # ---- port-forward ----
    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        pod, refused = self._pod(request)
        if refused is not None:
            return refused
        assert pod is not None
        try:
            port = p.parse_port(request.query)
        except ValueError as e:
            return _text(400, str(e))
        uid = pod["metadata"]["uid"]
        ws = await self._upgrade(request, p.PORTFORWARD_PROTOCOL)
        try:
            try:
                stream = await self.kubelet.runtime.port_forward(uid, port)
            except StreamError as e:
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(p.portforward_error(port, uid, str(e)))
                with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await ws.close()
                return ws
            try:
                await self._relay_port(ws, stream)
            finally:
                await stream.close()
            return ws
        finally:
            self._open.discard(ws)

    async def _relay_port(self, ws: web.WebSocketResponse, stream: PortStream) -> None:
        """Both directions until each is half-closed, or until either side drops."""
        server_eof = asyncio.Event()

        async def upstream() -> None:  # API server → pod, until the WebSocket closes
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or server_eof.is_set():
                    continue
                if not msg.data:
                    server_eof.set()
                    await stream.write_eof()
                else:
                    await stream.write(msg.data)
            raise ConnectionResetError("the API server closed the stream")

        async def downstream() -> None:  # pod → API server, then wait for the other half
            while data := await stream.read():
                await ws.send_bytes(data)
            if stream.error:  # the runtime's own words (a CRI streaming server's)
                await ws.send_str(stream.error)
                return
            await ws.send_bytes(b"")
            await server_eof.wait()

        up, down = asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())
        try:
            # Done when both halves are closed (down returns) or at once when a side drops.
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await task
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await ws.close()
