"""exec and attach over WebSocket: the client's channel protocol (v5 ... v1, binary or base64)
ends here and is relayed to the agent's v5 stream.

As kube-apiserver and the kubelet serve it: the agent is reached before the upgrade (its refusal
is the client's upgrade failure); an empty message on the lowest writable channel tells the
client the stream is up; at the end the Status goes on the error channel (JSON for v4+, the
message alone before), then the close frame, and the server waits for the client's close so that
no output still in flight is cut off. A client that goes away abandons the command: closing the
agent's WebSocket makes the agent kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from aiohttp import WSMsgType, web

from pocketkube.apiserver.streams import relay
from pocketkube.apiserver.streams.options import ExecOptions
from pocketkube.streams import wschannel as wc

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 15 * 60.0  # how long a finished session waits for a slow client to read and close
MAX_CLIENT_MESSAGE = 16 * 1024 * 1024


def lost_agent_status() -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                         "message": "error: the node agent closed the stream without a status"})


async def serve_ws_exec(request: web.Request, pod: dict, container: str, opts: ExecOptions,
                        proto: wc.Protocol) -> web.StreamResponse:
    try:
        agent = await relay.open_exec(request, pod, container, command=list(opts.command), stdin=opts.stdin,
                                      stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty, attach=opts.attach)
    except relay.AgentError as e:
        return e.response()
    ws = web.WebSocketResponse(protocols=(proto.name,) if proto.name else (), timeout=CLOSE_TIMEOUT,
                               max_msg_size=MAX_CLIENT_MESSAGE)
    try:
        await ws.prepare(request)
    except BaseException:
        await agent.close()
        raise
    session = _Session(ws, agent, opts, proto)
    try:
        await session.run()
    except Exception:  # noqa: BLE001 - after the upgrade no Status can be answered: log, close
        log.exception("exec stream of %s/%s failed", pod["metadata"]["namespace"], pod["metadata"]["name"])
    finally:
        await agent.close()
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.close()
    return ws


class _Session:
    def __init__(self, ws: web.WebSocketResponse, agent: relay.ExecChannel, opts: ExecOptions,
                 proto: wc.Protocol) -> None:
        self.ws, self.agent, self.opts, self.proto = ws, agent, opts, proto
        self.client_gone = False

    async def send(self, channel: int, data: bytes) -> None:
        frame = wc.encode(self.proto, channel, data)
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    async def run(self) -> None:
        first = wc.STDOUT if self.opts.stdout else wc.STDERR if self.opts.stderr else wc.ERROR
        await self.send(first, b"")
        inbound = asyncio.create_task(self.from_client())
        try:
            await self.from_agent()
        finally:
            inbound.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inbound

    async def from_agent(self) -> None:
        """The agent's output to the client; at the end the Status, then the close."""
        while True:
            msg = await self.agent.receive()
            if msg is None:
                if self.client_gone:
                    return
                status = lost_agent_status()
                break
            channel, data = msg
            if channel == wc.ERROR:
                status = data
                break
            if (channel == wc.STDOUT and self.opts.stdout) or (channel == wc.STDERR and self.opts.stderr):
                try:
                    await self.send(channel, data)
                except ConnectionError:
                    return  # the client is gone: the caller closes the agent's side
        payload = wc.error_payload(self.proto, status)
        with contextlib.suppress(ConnectionError):
            if payload is not None:
                await self.send(wc.ERROR, payload)
            await self.ws.close()  # the close frame; waits for the client's

    async def from_client(self) -> None:
        """The client's stdin, resizes and v5 close signals to the agent, until the client closes."""
        while True:
            msg = await self.ws.receive()
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            decoded = wc.decode(self.proto, msg.data)
            if decoded is None:
                continue
            channel, data = decoded
            if channel == wc.STDIN and self.opts.stdin:
                await self.agent.send(wc.STDIN, data)
            elif channel == wc.RESIZE and self.proto.resize:
                await self.agent.send(wc.RESIZE, data)
            elif channel == wc.CLOSE and data == bytes((wc.STDIN,)) and self.opts.stdin:
                await self.agent.close_stdin()
        self.client_gone = True
        await self.agent.close()  # abandoned: the agent kills the command
