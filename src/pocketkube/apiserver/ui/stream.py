"""GET /ui/api/v1/stream: one Server-Sent Events stream per page (spec §2).

`retry`, then a full `snapshot`; then `topology` (the whole small model again, debounced ~100 ms
after a change that may affect it, sent only when it differs), `traffic` once per collector tick
and a keepalive comment every 15 s. Every (re)connect starts from a snapshot, so the page never
patches stale state. Events go through the stream's bounded queue; a client that does not read
is dropped (its connection aborted), never buffered without end.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from pocketkube.api import errors
from pocketkube.apiserver.metrics import REGISTRY
from pocketkube.apiserver.ui import access, security, sse, topology

DEBOUNCE_SECONDS = 0.1
OPEN = Gauge("pocketkube_ui_streams", "Live map event streams open now.", registry=REGISTRY)
TOPOLOGY_DELAY = Histogram("pocketkube_ui_topology_delay_seconds",
                           "From a watched change to the topology event it caused being queued (debounce included).",
                           registry=REGISTRY, buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5))
CLOSED = Counter("pocketkube_ui_streams_closed_total", "Live map event streams the server closed, by reason "
                 "(client too slow, max age, server shutting down).", ["reason"], registry=REGISTRY)


def _comparable(model: dict) -> dict:
    return {k: v for k, v in model.items() if k != "resourceVersion"}


class _Session:
    """The state of one open stream: which Service it shows and the last model it sent."""

    def __init__(self, ui, stream: sse.Stream, namespace: str, name: str | None, port: str | None) -> None:
        self.ui, self.stream = ui, stream
        self.namespace, self.name, self.port = namespace, name, port
        self.model: dict = {}
        self._timer: asyncio.TimerHandle | None = None
        self._first_change = 0.0

    def build(self) -> dict:
        model = self.ui.model(self.namespace, self.name, self.port)
        svc = model.get("service")
        if self.name is None and svc is not None:  # the default Service, pinned once there is one
            self.namespace, self.name = svc["namespace"], svc["name"]
        return model

    def changed(self) -> None:
        if self._timer is None:
            self._first_change = time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(DEBOUNCE_SECONDS, self._rebuild)

    def _rebuild(self) -> None:
        self._timer = None
        model = self.build()
        if _comparable(model) != _comparable(self.model):
            self.model = model
            self.stream.put(sse.frame("topology", model, model["resourceVersion"]))
            if self._first_change:
                TOPOLOGY_DELAY.observe(time.monotonic() - self._first_change)
        self._first_change = 0.0

    def tick(self, _tick) -> None:
        if self.model.get("cluster", {}).get("dataplane") != self.ui.collector.aggregator.dataplane():
            self._rebuild()
        self.stream.put(sse.frame("traffic", self.ui.collector.aggregator.tick_for(self.model)))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _target(ui, request: web.Request) -> tuple[str, str | None]:
    """(namespace, service) the stream shows; with no service, the user's default choice."""
    ns, name = request.query.get("namespace", ""), request.query.get("service") or None
    if name:
        return ns or "default", name
    user, policy = access.user_of(request), ui.registry.policy
    readable = set(access.readable_namespaces(user, policy, ui._namespaces(), "", "services"))
    services = [s for s in ui.cache["services"].items(ns) if s["metadata"].get("namespace") in readable]
    svc = topology.default_service(services)
    if svc is None:
        return ns, None
    return svc["metadata"]["namespace"], svc["metadata"]["name"]


async def serve_stream(ui, request: web.Request) -> web.StreamResponse:
    await ui.cache.ready()
    namespace, name = _target(ui, request)
    if name is not None or namespace:
        ui.authorize_map(request, namespace)
    else:
        access.require(access.user_of(request), ui.registry.policy, access.NODE_NEEDS)
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # what a GET would answer, without opening a stream
        return web.Response(status=200, headers=headers)
    user = request["user"][0]
    stream = sse.Stream(user)
    if not ui.streams.add(stream):
        raise errors.TooManyRequests(f'too many open streams for user "{user}" '
                                     f"(at most {ui.streams.per_user}): close a tab")
    session = _Session(ui, stream, namespace, name, request.query.get("port") or None)
    unsubscribes = []
    OPEN.inc()
    resp = web.StreamResponse(status=200, headers=headers)
    security.secure_headers(resp.headers)
    try:
        await resp.prepare(request)
        # A client that stops reading: drop its connection so a blocked write ends too.
        stream.on_overflow = lambda: request.transport is not None and request.transport.abort()
        await ui.collector.read_once()  # so the snapshot has the data plane and current totals
        session.model = session.build()
        await resp.write(sse.retry() + sse.frame("snapshot", {
            "model": session.model, "traffic": ui.collector.aggregator.tick_for(session.model)},
            session.model["resourceVersion"]))
        key = (session.namespace, session.name) if session.name else ("*", "*")
        unsubscribes.append(ui.cache.subscribe(*key, session.changed))
        unsubscribes.append(ui.collector.subscribe(session.tick))
        await _pump(stream, resp)
        return resp
    except ConnectionResetError:  # the client went away (or was dropped): nothing more to send
        return resp
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()
        session.cancel()
        ui.streams.remove(stream)
        OPEN.dec()
        if stream.closed:
            CLOSED.labels(stream.closed).inc()


async def _pump(stream: sse.Stream, resp: web.StreamResponse) -> None:
    deadline = stream.opened + sse.MAX_AGE_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            stream.close("max age")
            break
        try:
            chunk = await asyncio.wait_for(stream.queue.get(), min(sse.KEEPALIVE_SECONDS, left))
        except TimeoutError:
            chunk = sse.comment("keepalive") if time.monotonic() < deadline else None
        if chunk is sse.CLOSE or chunk is None:
            break
        await resp.write(chunk)
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
