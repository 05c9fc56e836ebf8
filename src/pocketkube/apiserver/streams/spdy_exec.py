"""pods/exec and pods/attach over SPDY/3.1 (kubectl with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false,
and older kubectl), as the kubelet's remotecommand server serves them, relayed to the agent.

The client negotiates one of v5..v1 (`X-Stream-Protocol-Version`), then opens one stream per
`streamType`: error, and stdin/stdout/stderr/resize as asked. Once all are there the agent's
output is relayed; stdin's FIN becomes `close_stdin()`; resize carries a sequence of JSON
TerminalSize objects. At the end stdout and stderr are finished and the Status goes on the error
stream (v4+: the metav1.Status JSON; before: its message, only on failure), then the session
closes. A client that goes away abandons the command: the agent's stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import orjson
from aiohttp import web

from pocketkube.apiserver.streams import spdy_conn
from pocketkube.streams.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)

PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
             "channel.k8s.io"]
STREAM_CREATION_TIMEOUT = 30.0
STREAM_TYPES = ("error", "stdin", "stdout", "stderr", "resize")
RELAY_CHUNK = 256 * 1024  # per message to the agent (its WebSocket refuses messages over 4 MiB)


def _relay():
    from pocketkube.apiserver.streams import relay

    return relay


def status_for(protocol: str, status_json: bytes) -> bytes:
    """What the error stream carries for the agent's Status: v4+ the JSON itself; v1-v3 only the
    message of a failure (the kubelet's v1WriteStatusFunc)."""
    if protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
        return status_json
    try:
        status = json.loads(status_json)
    except ValueError:
        return status_json
    if status.get("status") == "Success":
        return b""
    return str(status.get("message") or "").encode()


def lost_agent_status() -> bytes:
    return orjson.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                         "message": "error: the node agent closed the stream without a status"})


def expected_streams(protocol: str, opts) -> set[str]:
    wanted = {"error"}
    wanted |= {name for name, on in (("stdin", opts.stdin), ("stdout", opts.stdout),
                                     ("stderr", opts.stderr and not opts.tty)) if on}
    if opts.tty and protocol not in ("v2.channel.k8s.io", "channel.k8s.io"):
        wanted.add("resize")  # v3+ only
    return wanted


class ExecSession:
    """Collects the client's streams, then relays between them and the agent's channel."""

    def __init__(self, protocol: str, opts, agent) -> None:
        self.protocol = protocol
        self.opts = opts
        self.agent = agent
        self.expected = expected_streams(protocol, opts)
        self.streams: dict[str, SpdyStream] = {}
        self.ready = asyncio.Event()

    def on_stream(self, stream: SpdyStream) -> None:
        kind = stream.headers.get("streamtype", "")
        if kind not in STREAM_TYPES or kind in self.streams:
            log.info("exec: unexpected stream type %r", kind)
            stream.reset()
            return
        stream.reply()
        self.streams[kind] = stream
        if self.expected <= self.streams.keys():
            self.ready.set()

    async def run(self, session: SpdySession) -> None:
        waiting = asyncio.ensure_future(self.ready.wait())
        gone = asyncio.ensure_future(session.closed.wait())
        try:
            done, _ = await asyncio.wait([waiting, gone], timeout=STREAM_CREATION_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            gone.cancel()
        if not self.ready.is_set():
            log.info("exec: timed out waiting for client to create streams")
            return
        inbound = [asyncio.ensure_future(self._stdin())] if "stdin" in self.streams else []
        if "resize" in self.streams:
            inbound.append(asyncio.ensure_future(self._resize()))
        outbound = asyncio.ensure_future(self._from_agent())
        gone = asyncio.ensure_future(session.closed.wait())
        try:
            await asyncio.wait([outbound, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*inbound, outbound, gone):
                task.cancel()
            for task in (*inbound, outbound):
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task

    async def _stdin(self) -> None:
        stream = self.streams["stdin"]
        while data := await stream.read(RELAY_CHUNK):
            await self.agent.send(0, data)
        if stream.reset_status is None and not stream.session.is_closed:
            await self.agent.close_stdin()

    async def _resize(self) -> None:
        stream, buf = self.streams["resize"], ""
        decoder = json.JSONDecoder()
        while data := await stream.read():
            buf += data.decode("utf-8", "replace")
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    size, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # an incomplete object: wait for more
                buf = buf[end:]
                if isinstance(size, dict):
                    await self.agent.send(4, orjson.dumps({"Width": int(size.get("Width") or 0),
                                                           "Height": int(size.get("Height") or 0)}))

    async def _from_agent(self) -> None:
        status = None
        while (msg := await self.agent.receive()) is not None:
            channel, data = msg
            if channel == 3:
                status = data
                break
            stream = self.streams.get({1: "stdout", 2: "stderr"}.get(channel, ""))
            if stream is None or stream.local_closed:
                continue
            stream.write(data)
            await stream.drain()
        for name in ("stdout", "stderr"):
            if name in self.streams:
                self.streams[name].close_write()
        error = self.streams["error"]
        payload = status_for(self.protocol, status if status is not None else lost_agent_status())
        if payload:
            error.write(payload)
        error.close_write()
        await error.drain()


async def serve_spdy_exec(request: web.Request, pod: dict, container: str, opts, *,
                          relay=None) -> web.StreamResponse:
    relay = relay or _relay()
    offered = spdy_conn.offered_protocols(request)
    protocol = spdy_conn.negotiate(offered, PROTOCOLS)
    if protocol is None:
        return spdy_conn.handshake_refusal(offered, PROTOCOLS)
    try:  # the agent first: its refusal (no such container...) is the client's upgrade failure
        agent = await relay.open_exec(request, pod, container, command=list(opts.command), stdin=opts.stdin,
                                      stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty,
                                      attach=opts.attach)
    except relay.AgentError as e:
        return e.response()
    session = None
    try:
        exec_session = ExecSession(protocol, opts, agent)
        resp, session = await spdy_conn.accept_raw(request, protocol, exec_session.on_stream)
        await exec_session.run(session)
    except ConnectionError:
        pass  # the client went away
    except Exception:  # noqa: BLE001 - after the upgrade no Status can be answered: log, close
        log.exception("SPDY exec stream of %s/%s failed", pod["metadata"]["namespace"], pod["metadata"]["name"])
    finally:
        with contextlib.suppress(Exception):
            await agent.close()
        if session is not None:
            await _drain_and_close(session)
    if session is None:
        raise ConnectionResetError("the client went away during the upgrade")
    return resp


async def _drain_and_close(session: SpdySession) -> None:
    """GOAWAY and close once what was written is on its way (the client reads to EOF)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session._drain_transport(), 10)
    session.close()
