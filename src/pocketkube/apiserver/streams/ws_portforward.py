"""Port-forward over WebSocket, as the kubelet serves it to the Python client (`v4.channel.k8s.io`,
its base64 variant or no subprotocol): `?ports=` names the ports; port i has data channel 2i and
error channel 2i+1, each opened with the port as 2 bytes little-endian. Each port carries one
connection, relayed through its own internal stream to the agent; the pod side's end (or its
error, sent on the error channel in the kubelet's wording) ends that port, and the WebSocket
closes once every port has ended, or when the client closes it (then every connection closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from pocketkube.apiserver.streams import relay
from pocketkube.streams import wschannel as wc

log = logging.getLogger(__name__)
MAX_CLIENT_MESSAGE = 16 * 1024 * 1024


async def serve_ws_portforward(request: web.Request, pod: dict, ports: list[int],
                               proto: wc.Protocol) -> web.StreamResponse:
    conns: list[relay.PortChannel] = []
    try:
        for port in ports:
            conns.append(await relay.open_port(request, pod, port))
    except relay.AgentError as e:
        await _close_all(conns)
        return e.response()
    except BaseException:
        await _close_all(conns)
        raise
    ws = web.WebSocketResponse(protocols=(proto.name,) if proto.name else (), max_msg_size=MAX_CLIENT_MESSAGE)
    try:
        await ws.prepare(request)
        await _Forwarder(ws, pod, ports, conns, proto).run()
    except ConnectionError:
        pass  # the client went away
    except Exception:  # noqa: BLE001 - after the upgrade no Status can be answered: log, close
        log.exception("port-forward stream of %s/%s failed", pod["metadata"]["namespace"], pod["metadata"]["name"])
    finally:
        await _close_all(conns)
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.close()
    return ws


async def _close_all(conns: list[relay.PortChannel]) -> None:
    for c in conns:
        await c.close()


class _Forwarder:
    def __init__(self, ws: web.WebSocketResponse, pod: dict, ports: list[int], conns: list[relay.PortChannel],
                 proto: wc.Protocol) -> None:
        self.ws, self.pod, self.ports, self.conns, self.proto = ws, pod, ports, conns, proto

    async def send(self, channel: int, data: bytes) -> None:
        frame = wc.encode(self.proto, channel, data)
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    async def run(self) -> None:
        for i, port in enumerate(self.ports):
            await self.send(2 * i, wc.port_prefix(port))
            await self.send(2 * i + 1, wc.port_prefix(port))
        inbound = asyncio.create_task(self.from_client())
        outbound = asyncio.gather(*(self.from_pod(i) for i in range(len(self.ports))))
        try:
            await asyncio.wait([inbound, outbound], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (inbound, outbound):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await t

    async def from_pod(self, i: int) -> None:
        conn = self.conns[i]
        while data := await conn.read():
            await self.send(2 * i, data)
        if conn.error is not None:
            uid = self.pod["metadata"].get("uid", "")
            message = conn.error if conn.error.startswith("error forwarding port") else \
                f"error forwarding port {self.ports[i]} to pod {self.pod['metadata']['name']}, uid {uid}: {conn.error}"
            await self.send(2 * i + 1, message.encode())
        await conn.close()

    async def from_client(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                return
            decoded = wc.decode(self.proto, msg.data)
            if decoded is None:
                continue
            channel, data = decoded
            if channel % 2 == 0 and channel // 2 < len(self.conns):
                await self.conns[channel // 2].write(data)
