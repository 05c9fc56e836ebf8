"""The node's log endpoint, as the kubelet's /containerLogs: the API server relays `kubectl logs` here.

The same server (the node's token, as /stats/summary) serves the Service proxy's traffic counts:
`GET /proxy/traffic` (api/traffic.py's JSON snapshot, read by the API server for the live map)
and `GET /metrics` (Prometheus text: the `pocketkube_proxy_*` and `kubeproxy_*` families, what
`/api/v1/nodes/<node>/proxy/metrics` relays).

GET http://<node IP>:<port>/containerLogs/<namespace>/<pod>/<container>
    ?follow=true&tailLines=N&limitBytes=N&previous=true&timestamps=true&sinceSeconds=N&sinceTime=T
with `Authorization: Bearer <this node's token>`. The body is the container's output as
text/plain; with follow it streams new output until the container exits.

Two log formats, as the runtime's record says: "cri" (a CRI runtime's timestamped lines, decoded
by agent.crilog, so timestamps and since work) and "raw" (the process runtime's bytes as written,
which carry no timestamps: timestamps and since do not apply).

As upstream, a request reads the live log file only, not the rotated ones (the kubelet's log
rotation renames the file and has the runtime reopen the path); with follow it goes on into the
reopened file once the renamed one is read to its end (FollowedLog).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import gzip
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from aiohttp import web

from pocketkube.agent import crilog, logrotation
from pocketkube.agent.runtime.interface import ContainerRecord
from pocketkube.agent.streaming.server import StreamingEndpoints
from pocketkube.api.traffic import TrafficSnapshot

if TYPE_CHECKING:
    from pocketkube.agent.kubelet import Kubelet

CHUNK = 64 * 1024
FOLLOW_POLL = 0.1
# After the path names a new file, how long the renamed one may still receive output: containerd
# opens the new file before it closes the old writer, whose last buffered lines land just after.
ROTATION_GRACE = 0.5


def tail_offset(path: str, lines: int) -> int:
    """The file offset where the last `lines` lines start."""
    size = os.path.getsize(path)
    if lines <= 0:
        return size
    with open(path, "rb") as f:
        pos, newlines = size, 0
        # A trailing newline ends the last line; it does not start another one.
        f.seek(max(0, size - 1))
        if size and f.read(1) == b"\n":
            pos -= 1
        while pos > 0:
            step = min(CHUNK, pos)
            f.seek(pos - step)
            block = f.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i:i + 1] == b"\n":
                    newlines += 1
                    if newlines == lines:
                        return pos - step + i + 1
            pos -= step
    return 0


def _open_log(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


class FollowedLog:
    """A log file read while it is written, across rotations. When the live file is renamed (the
    runtime then reopens the path), the follower reads it to its end, then every later rotation
    in order (gzipped ones too, if it fell that far behind) and then the new live file, so nothing
    is skipped. Reads never block; b"" means nothing more for now."""

    def __init__(self, path: str, f: BinaryIO, *, grace: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.f, self.clock = path, f, clock
        self.name = path  # the name of the file being read, once known as a rotation
        self.grace = ROTATION_GRACE if grace is None else grace
        self._rotated_at: float | None = None  # when our file was first seen rotated

    def read(self, size: int, *, final: bool = False) -> bytes:
        """Up to `size` bytes. `final`: the writer is gone (the container exited), so the newest
        rotation gets nothing more and there is no grace to wait for."""
        while True:
            if self.name == self.path and self._path_moved():
                # Learn our file's rotated name now, while it is still plain (the next rotation
                # compresses it), even if we are far from its end.
                self.name = self._own_name(self._rotated()) or self.path
            data = self.f.read(size)
            if data or not self._path_moved():
                return data
            names = self._rotated()
            # Without our file's name (compressed or removed already) the live file is all we know.
            following = self.path if self.name == self.path else logrotation.next_log(self.path, names, self.name)
            if following == self.path and not final:
                # After the newest rotation: containerd opens the new file before it closes the old
                # one's writer, whose last buffered lines land in the old file just after.
                now = self.clock()
                if self._rotated_at is None:
                    self._rotated_at = now
                if now - self._rotated_at < self.grace:
                    return b""
            if not self._switch(following):
                return b""

    def _switch(self, name: str) -> bool:
        """Go on with the file `name`; False when it is gone (compressed or removed meanwhile:
        the next read looks again)."""
        try:
            new = gzip.open(name, "rb") if name.endswith(logrotation.COMPRESS_SUFFIX) else open(name, "rb")
        except FileNotFoundError:
            return False
        self.f.close()
        self.f, self.name, self._rotated_at = new, name, None
        return True

    def close(self) -> None:
        self.f.close()

    def _rotated(self) -> list[str]:
        return glob.glob(glob.escape(self.path) + ".*")

    def _own_name(self, names: list[str]) -> str | None:
        """Which rotation our file became (by inode)."""
        own = os.fstat(self.f.fileno())
        for name in names:
            with contextlib.suppress(OSError):
                st = os.stat(name)
                if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                    return name
        return None

    def _path_moved(self) -> bool:
        """Whether the file being read is no longer the live one."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:  # renamed, not reopened yet: nothing newer to go on with
            return False
        own = os.fstat(self.f.fileno())
        return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)


@dataclass(frozen=True)
class LogOptions:
    tail: int = -1  # lines; -1: all
    limit: int = -1  # bytes; -1: no limit
    follow: bool = False
    timestamps: bool = False
    since_ns: int | None = None


def log_options(query, previous: bool, now: float | None = None) -> LogOptions:
    """The request's options; ValueError with the message for a bad value."""
    try:
        tail = int(query["tailLines"]) if "tailLines" in query else -1
        limit = int(query["limitBytes"]) if "limitBytes" in query else -1
    except ValueError:
        raise ValueError("tailLines and limitBytes must be integers") from None
    since_ns = None
    if "sinceTime" in query:
        parsed = crilog.parse_timestamp(query["sinceTime"])
        if parsed is None:
            raise ValueError(f"sinceTime must be an RFC 3339 time: {query['sinceTime']!r}")
        since_ns = parsed.ns
    if "sinceSeconds" in query:
        try:
            seconds = int(query["sinceSeconds"])
        except ValueError:
            raise ValueError("sinceSeconds must be an integer") from None
        since_ns = int(((time.time() if now is None else now) - seconds) * 1e9)
    return LogOptions(tail=tail, limit=limit, follow=query.get("follow") == "true" and not previous,
                      timestamps=query.get("timestamps") == "true", since_ns=since_ns)


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


class TrafficSource(Protocol):
    """The node's Service proxy, as far as this server needs it (pocketkube.nodeagent wires it in)."""

    async def traffic(self) -> TrafficSnapshot: ...

    async def prometheus_text(self) -> bytes: ...


class LogServer:
    def __init__(self, kubelet: Kubelet, host: str, port: int, token: str) -> None:
        self.kubelet = kubelet
        self.host = host
        self.port = port
        self.token = token
        self.proxy: TrafficSource | None = None  # set once the Service proxy runs
        self._runner: web.AppRunner | None = None
        # Checks a bearer token other than `token` (a joined node's TokenReview); one that passes
        # becomes the token accepted from then on.
        self.review: Callable[[str], Awaitable[bool]] | None = None

    async def start(self) -> int:
        """Listen; returns the port (the chosen one when asked for port 0)."""
        app = web.Application(middlewares=[self._learn_token])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/stats/summary", self.stats_summary)
        app.router.add_get("/proxy/traffic", self.proxy_traffic)
        app.router.add_get("/metrics", self.metrics)
        StreamingEndpoints(self.kubelet, self._authorized).add_routes(app)  # exec, attach, portForward
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _learn_token(self, request: web.Request, handler):
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        if token and self.review is not None and not hmac.compare_digest(token, self.token) \
                and await self.review(token):
            self.token = token
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), self.token)

    async def stats_summary(self, request: web.Request) -> web.Response:
        """The kubelet's Summary API: this node's and its pods' CPU and memory (kubectl top)."""
        if not self._authorized(request):
            return _text(401, "Unauthorized")
        return web.json_response(await self.kubelet.stats_summary())

    async def proxy_traffic(self, request: web.Request) -> web.Response:
        """The Service data plane's cumulative traffic counts (api/traffic.py's wire format)."""
        if not self._authorized(request):
            return _text(401, "Unauthorized")
        if self.proxy is None:
            return _text(503, "the Service proxy of this node is not running yet")
        return web.json_response((await self.proxy.traffic()).to_json())

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text of the node's Service proxy, its traffic counts read now."""
        if not self._authorized(request):
            return _text(401, "Unauthorized")
        body = await self.proxy.prometheus_text() if self.proxy is not None else b""
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _text(401, "Unauthorized")
        ns, pod_name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        q = request.query
        pod = self.kubelet.find_pod(ns, pod_name)
        if pod is None:
            return _text(404, f'pod "{pod_name}" in namespace "{ns}" not found on this node')
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        if container not in names:
            return _text(400, f"container {container} is not valid for pod {pod_name}")
        history = self.kubelet.runtime.history(pod["metadata"]["uid"], container)
        previous = q.get("previous") == "true"
        record = (history.last if previous else history.current) if history else None
        if record is None or not record.log_path:
            if previous:
                return _text(400, f'previous terminated container "{container}" in pod "{pod_name}" not found')
            worker = self.kubelet.workers.get(pod["metadata"]["uid"])
            waiting = worker.waiting.get(container) if worker else None
            reason = waiting.reason if waiting else "ContainerCreating"
            return _text(400, f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}')
        try:
            opts = log_options(q, previous)
        except ValueError as e:
            return _text(400, str(e))
        return await self._stream(request, record, opts)

    async def _stream(self, request: web.Request, record: ContainerRecord, opts: LogOptions) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        f = _open_log(record.log_path)
        if f is None:
            await resp.write_eof()
            return resp
        cri = record.log_format == "cri"
        decoder = crilog.CriDecoder(opts.timestamps, opts.since_ns) if cri else None
        remaining = opts.limit if opts.limit >= 0 else None

        async def emit(data: bytes) -> bool:
            """Write what the limit allows; False once it is reached."""
            nonlocal remaining
            if remaining is not None:
                data = data[:remaining]
                remaining -= len(data)
            if data:
                await resp.write(data)
            return remaining is None or remaining > 0

        if opts.tail >= 0:
            f.seek(crilog.tail_offset(f, opts.tail) if cri else tail_offset(record.log_path, opts.tail))
        followed = FollowedLog(record.log_path, f)
        try:
            while remaining is None or remaining > 0:
                chunk = followed.read(CHUNK) if opts.follow else f.read(CHUNK)
                if chunk:
                    if not await emit(decoder.feed(chunk) if decoder else chunk):
                        break
                    continue
                if not opts.follow or not record.running:
                    # What was written between the last read and the exit, rotated files included.
                    last = b"".join(iter(lambda: followed.read(CHUNK, final=True), b"")) if opts.follow else b""
                    out = (decoder.feed(last) + decoder.flush()) if decoder else last
                    await emit(out)
                    break
                await asyncio.sleep(FOLLOW_POLL)
        finally:
            followed.close()
        await resp.write_eof()
        return resp
