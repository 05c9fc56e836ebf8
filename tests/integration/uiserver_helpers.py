"""Helpers for the live map's server tests: an SSE reader over raw HTTPS and fake node agents that
serve scripted traffic snapshots (the counters' wire format, pocketkube.api.traffic)."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from pocketkube.api.traffic import EndpointCount, EntryCount, TrafficSnapshot


@dataclass
class Event:
    name: str
    data: dict
    id: str | None
    at: float  # time.monotonic() when it arrived


class SSE:
    """A stream opened with http.client; events are read by a thread into a queue."""

    def __init__(self, port: int, ca: str, path: str, headers: dict[str, str]) -> None:
        ctx = ssl.create_default_context(cafile=ca)
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.events: queue.Queue[Event] = queue.Queue()
        self.retry = None
        self.ended = threading.Event()  # set when the server ended the stream
        if self.resp.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name, data, eid = "message", [], None
        try:
            while line := self.resp.readline():
                text = line.decode().rstrip("\n")
                if not text:
                    if data:
                        self.events.put(Event(name, json.loads("\n".join(data)), eid, time.monotonic()))
                    name, data, eid = "message", [], None
                elif text.startswith("retry: "):
                    self.retry = int(text[7:])
                elif text.startswith("event: "):
                    name = text[7:]
                elif text.startswith("id: "):
                    eid = text[4:]
                elif text.startswith("data: "):
                    data.append(text[6:])
        except (OSError, ValueError, AttributeError):  # closed under the reader (http.client drops its fp)
            pass
        self.ended.set()

    def next(self, name: str, timeout: float = 5.0, where=lambda e: True) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} event within {timeout} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e.name == name and where(e):
                return e

    def close(self) -> None:
        # Shut the socket down first: closing the response would wait for the reader thread's
        # readline (until the next event arrives).
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()


@dataclass
class FakeAgent:
    """A node agent's /proxy/traffic on ip:port, answering the snapshot built from `counts`."""
    node: str
    ip: str
    token: str
    service: tuple[str, str, str, str] = ("default", "web", "", "TCP")
    counts: dict[str, int] = field(default_factory=dict)  # "entry" | endpoint ip -> connections
    node_port: int = 30008
    port: int = 0
    requests: int = 0

    def snapshot(self) -> dict:
        ns, svc, port_name, proto = self.service
        entries = (EntryCount(ns, svc, port_name, proto, "NodePort", self.ip, self.node_port, self.counts.get("entry", 0)),)
        eps = tuple(EndpointCount(ns, svc, port_name, proto, ip, 80, f"pod-{ip}", n)
                    for ip, n in self.counts.items() if ip != "entry")
        return TrafficSnapshot(self.node, "nftables", time.time(), entries, eps).to_json()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        return web.json_response(self.snapshot())

    def start(self) -> FakeAgent:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/proxy/traffic", self._handle)
            self.runner = web.AppRunner(app, access_log=None)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, self.ip, 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def node_object(self) -> dict:
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node},
                "status": {"addresses": [{"type": "InternalIP", "address": self.ip}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
