"""The node's log endpoint, as the kubelet's /containerLogs: the API server relays `kubectl logs` here.

GET http://<node IP>:<port>/containerLogs/<namespace>/<pod>/<container>
    ?follow=true&tailLines=N&limitBytes=N&previous=true
with `Authorization: Bearer <this node's token>`. The body is the container's output as
text/plain; with follow it streams new output until the container exits.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import TYPE_CHECKING, BinaryIO

from aiohttp import web

from pocketkube.agent.runtime.interface import ContainerRecord

if TYPE_CHECKING:
    from pocketkube.agent.kubelet import Kubelet

CHUNK = 64 * 1024
FOLLOW_POLL = 0.1


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


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain")


class LogServer:
    def __init__(self, kubelet: Kubelet, host: str, port: int, token: str) -> None:
        self.kubelet = kubelet
        self.host = host
        self.port = port
        self.token = token
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the port (the chosen one when asked for port 0)."""
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), self.token)

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
            tail = int(q["tailLines"]) if "tailLines" in q else -1
            limit = int(q["limitBytes"]) if "limitBytes" in q else -1
        except ValueError:
            return _text(400, "tailLines and limitBytes must be integers")
        follow = q.get("follow") == "true" and not previous
        return await self._stream(request, record, tail, limit, follow)

    async def _stream(self, request: web.Request, record: ContainerRecord, tail: int, limit: int,
                      follow: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        f = _open_log(record.log_path)
        if f is None:
            await resp.write_eof()
            return resp
        with f:
            if tail >= 0:
                f.seek(tail_offset(record.log_path, tail))
            remaining = limit if limit >= 0 else None
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if chunk:
                    if remaining is not None:
                        remaining -= len(chunk)
                    await resp.write(chunk)
                    continue
                if not follow or not record.running:
                    if follow and (last := f.read()):
                        await resp.write(last[:remaining] if remaining is not None else last)
                    break
                await asyncio.sleep(FOLLOW_POLL)
        await resp.write_eof()
        return resp
