"""The API server's end of the internal stream protocol to the node agent (issue 11 spec §1a).

One WebSocket per exec/attach (`v5.channel.k8s.io` framing) and one per forwarded connection
(`pocketkube.portforward.v1`), to the agent endpoint the Node publishes, with that node's token
(as the log relay). The agent refuses an upgrade with plain HTTP and a text body; that becomes
AgentError, which the terminations hand to the client as the upgrade failure, as kube-apiserver
passes the kubelet's answer through.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import aiohttp
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys
from pocketkube.apiserver.logs import node_endpoint

EXEC_PROTOCOL = "v5.channel.k8s.io"
PORTFORWARD_PROTOCOL = "pocketkube.portforward.v1"
CONNECT_TIMEOUT = 5.0
CLOSE_STDIN = bytes((255, 0))


class AgentError(Exception):
    """The agent refused the upgrade: its HTTP status and text body."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    def response(self) -> web.Response:
        """The refusal as the client gets it (kube-apiserver passes the kubelet's answer on)."""
        return web.Response(status=self.status, text=self.body)


class BackendError(errors.ApiError):
    """The agent cannot be reached: a 500 without a reason, as kube-apiserver's proxy answers."""
    code, reason = 500, ""


async def _refusals(request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
    """Reads the body of a refused upgrade (aiohttp's ws_connect would drop it)."""
    resp = await handler(request)
    if resp.status != 101:
        try:
            body = (await resp.read()).decode(errors="replace")
        except aiohttp.ClientError:
            body = ""
        finally:
            resp.release()
        raise AgentError(resp.status, body.strip() or (resp.reason or ""))
    return resp


async def _connect(request: web.Request, pod: dict, path: str, params: list[tuple[str, str]],
                   protocol: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    node = (pod.get("spec") or {}).get("nodeName") or ""
    ip, port = node_endpoint(request.app[appkeys.REGISTRY], node)
    token = request.app[appkeys.NODE_TOKEN](node)
    params = [*params, ("uid", pod["metadata"].get("uid", ""))]
    url = f"http://{ip}:{port}{path}"
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                                    middlewares=(_refusals,))
    try:
        ws = await session.ws_connect(url, params=params, protocols=(protocol,), max_msg_size=0,
                                      headers={"Authorization": f"Bearer {token}"})
    except AgentError:
        await session.close()
        raise
    except (aiohttp.ClientError, OSError) as e:
        await session.close()
        raise BackendError(f"error dialing backend: {e}") from None
    except BaseException:
        await session.close()
        raise
    return session, ws


def _name(value: str) -> str:
    return quote(value, safe="")


class ExecChannel:
    """The internal v5 WebSocket of one exec or attach, channel-framed."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws

    async def send(self, channel: int, data: bytes) -> None:
        """Data on channel 0 (stdin) or 4 (resize, JSON); dropped once the agent has closed."""
        await self._send(bytes((channel,)) + data)

    async def close_stdin(self) -> None:
        await self._send(CLOSE_STDIN)

    async def _send(self, frame: bytes) -> None:
        if self._ws.closed:
            return
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._ws.send_bytes(frame)

    async def receive(self) -> tuple[int, bytes] | None:
        """(channel, payload) from the agent (1 stdout, 2 stderr, 3 the Status); None at close."""
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data:
                    return msg.data[0], msg.data[1:]
                continue
            if msg.type == aiohttp.WSMsgType.TEXT:
                continue  # not part of the protocol
            return None

    async def close(self) -> None:
        """Closes the WebSocket: before the Status arrived, the agent abandons the command."""
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._ws.close()
        await self._session.close()


async def open_exec(request: web.Request, pod: dict, container: str, *, command: list[str], stdin: bool,
                    stdout: bool, stderr: bool, tty: bool, attach: bool = False) -> ExecChannel:
    """An exec (or, with attach, an attach) on the pod's node; AgentError if the agent refuses."""
    meta = pod["metadata"]
    kind = "attach" if attach else "exec"
    path = f"/{kind}/{_name(meta['namespace'])}/{_name(meta['name'])}/{_name(container)}"
    params = [] if attach else [("command", c) for c in command]
    params += [(k, "1" if v else "0") for k, v in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr),
                                                   ("tty", tty))]
    return ExecChannel(*await _connect(request, pod, path, params, EXEC_PROTOCOL))


class PortChannel:
    """One forwarded TCP connection to a pod's port, through the agent."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._eof = False
        self.error: str | None = None  # the agent's error for this connection, if it sent one

    async def write(self, data: bytes) -> None:
        if data:
            await self._send(data)

    async def write_eof(self) -> None:
        """No more data from the client: an empty message."""
        await self._send(b"")

    async def _send(self, data: bytes) -> None:
        if self._ws.closed:
            return
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._ws.send_bytes(data)

    async def read(self) -> bytes:
        """The pod's next bytes; b"" once it half-closed, the agent closed or sent an error."""
        while not self._eof:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data:
                    return msg.data
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.error = msg.data if self.error is None else self.error + msg.data
                continue  # the agent closes after its error
            break
        self._eof = True
        return b""

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await self._ws.close()
        await self._session.close()


async def open_port(request: web.Request, pod: dict, port: int) -> PortChannel:
    """A connection to `port` in the pod, through its node's agent; AgentError if refused."""
    meta = pod["metadata"]
    path = f"/portForward/{_name(meta['namespace'])}/{_name(meta['name'])}"
    return PortChannel(*await _connect(request, pod, path, [("port", str(port))], PORTFORWARD_PROTOCOL))
