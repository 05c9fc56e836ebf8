"""A scripted stand-in for the API server's /ui endpoints, so the page is tested without a cluster.

It serves the real static files with the real security headers (spec12 §2, ui.md §5), and JSON and
Server-Sent Events whose content the test sets and pushes: `set_model()` for a Service's MODEL,
`tick()` for a TRAFFIC event (totals and rates kept here as the real aggregator would),
`topology()` for a topology event, `drop_streams()` / `refuse_streams` for reconnects.
The server runs its own event loop in a thread, so sync Playwright tests drive it directly.

`python -m pocketkube.testing.ui_fake_server [--port 8780]` serves the seed scenario with random
traffic, for working on the page by hand.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import random
import threading
import time
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parents[1] / "apiserver" / "ui" / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
         ".svg": "image/svg+xml", ".json": "application/json"}
WINDOW = 10


# ---- scenario builders (MODEL and TRAFFIC per spec12 §2) -----------------------------------------

def seed_model(nodes: int = 3, pods_per_node: int | list[int] = 1, *, namespace: str = "default",
               name: str = "myapp-service", node_port: int = 30008, dataplane: str = "nftables",
               not_ready_nodes: tuple[str, ...] = (), problem: str | None = None) -> dict:
    """The seed's picture: `nodes` nodes 127.0.1.N, each with its pods 10.244.N.x:80, a NodePort."""
    counts = pods_per_node if isinstance(pods_per_node, list) else [pods_per_node] * nodes
    node_list = [{"name": f"node-{n}", "ip": f"127.0.1.{n}", "ready": f"node-{n}" not in not_ready_nodes}
                 for n in range(1, nodes + 1)]
    endpoints = []
    for n, count in enumerate(counts, start=1):
        for i in range(count):
            endpoints.append(endpoint(f"myapp-{n}{_suffix(i)}", f"10.244.{n}.{10 + i}", f"node-{n}", namespace))
    port = {"name": "", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": node_port}
    model = {
        "cluster": {"dataplane": dataplane, "server": "https://127.0.0.1:6443"},
        "resourceVersion": "100",
        "service": {"namespace": namespace, "name": name, "type": "NodePort", "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"], "sessionAffinity": "None", "affinityTimeoutSeconds": None,
                    "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                    "loadBalancerIPs": [], "externalIPs": [], "selector": {"app": "myapp"},
                    "ports": [port], "port": port, "readyEndpoints": 0, "totalEndpoints": 0, "problem": problem},
        "error": None,
        "entries": [{"id": f"NodePort/{n['ip']}:{node_port}", "kind": "NodePort", "node": n["name"], "ip": n["ip"],
                     "port": node_port, "ready": n["ready"], "curl": f"curl http://{n['ip']}:{node_port}"}
                    for n in node_list],
        "nodes": node_list,
        "endpoints": endpoints,
        "expectedShare": None,
    }
    return recount(model)


def _suffix(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i % 26] + (str(i // 26) if i >= 26 else "")


def endpoint(pod: str, ip: str, node: str, namespace: str = "default", state: str = "Ready") -> dict:
    return {"key": f"{ip}:80", "ip": ip, "port": 80, "pod": pod, "namespace": namespace, "node": node,
            "state": state, "ready": state == "Ready"}


def recount(model: dict) -> dict:
    """Derived fields after a test edits endpoints: ready counts, expected share, sort order."""
    eps = sorted(model["endpoints"], key=lambda e: (e["node"] or "~", e["pod"], e["key"]))
    model["endpoints"] = eps
    ready = sum(1 for e in eps if e["ready"])
    if model.get("service"):
        model["service"]["readyEndpoints"] = ready
        model["service"]["totalEndpoints"] = len(eps)
    model["expectedShare"] = round(1 / ready, 4) if ready else None
    return model


def unknown_model(namespace: str, name: str, dataplane: str = "nftables") -> dict:
    return {"cluster": {"dataplane": dataplane, "server": "https://127.0.0.1:6443"}, "resourceVersion": "100",
            "service": None, "error": f'services "{name}" not found in namespace "{namespace}"',
            "entries": [], "nodes": [], "endpoints": [], "expectedShare": None}


class Ticker:
    """Keeps a Service port's cumulative totals and 10 s rates, as the API server's aggregator does."""

    def __init__(self, rejected_counted: bool = True):
        self.totals: dict[str, int] = collections.defaultdict(int)
        self.history: collections.deque = collections.deque(maxlen=WINDOW)
        self.rejected_counted = rejected_counted
        self.t = 1733400000.0

    def traffic(self, model: dict, entries: dict | None = None, endpoints: dict | None = None,
                rejected: int = 0, active: dict | None = None, unavailable: tuple[str, ...] = ()) -> dict:
        self.t += 1.0
        deltas = {**{"e:" + k: v for k, v in (entries or {}).items()},
                  **{"p:" + k: v for k, v in (endpoints or {}).items()}, "r": rejected}
        for k, v in deltas.items():
            self.totals[k] += v
        self.history.append(deltas)

        def rate(k: str) -> float:
            return round(sum(h.get(k, 0) for h in self.history) / WINDOW, 3)

        def item(k: str, **extra) -> dict:
            return {"delta": deltas.get(k, 0), "total": self.totals[k], "rate": rate(k), **extra}

        return {"t": self.t, "windowSeconds": WINDOW, "available": not unavailable, "unavailableNodes": list(unavailable),
                "entries": [{"id": e["id"], **item("e:" + e["id"])} for e in model["entries"]],
                "endpoints": [{"key": e["key"], **item("p:" + e["key"], active=(active or {}).get(e["key"]))}
                              for e in model["endpoints"]],
                "rejected": {**item("r"), "counted": self.rejected_counted}}


# ---- the server ------------------------------------------------------------------------------------

class FakeUiServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.models: dict[tuple[str, str], dict] = {}
        self.tickers: dict[tuple[str, str], Ticker] = {}
        self.last_traffic: dict[tuple[str, str], dict] = {}
        self.default: tuple[str, str] | None = None
        self.overview: dict = {"nodes": [], "services": [], "events": []}
        self.describe: dict[tuple[str, str, str], dict] = {}
        self.refuse_streams: int | None = None     # e.g. 503: new streams get that status
        self.forbidden: str | None = None          # a 403 Status message for streams and maps
        self.streams_opened = 0
        self.stream_queries: list[dict[str, str]] = []   # each stream's query, in order
        self._streams: list[tuple[tuple[str, str], asyncio.Queue]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- scripting (any thread) --
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/ui/"

    def set_model(self, model: dict, *, default: bool = True) -> None:
        svc = model["service"]
        key = (svc["namespace"], svc["name"])
        self.models[key] = copy.deepcopy(model)
        self.tickers.setdefault(key, Ticker(rejected_counted=model["cluster"]["dataplane"] != "userspace"))
        if default:
            self.default = key

    def topology(self, model: dict) -> None:
        """Replaces a Service's model and sends it to the streams showing that Service."""
        recount(model)
        self.set_model(model, default=False)
        svc = model["service"]
        self._send((svc["namespace"], svc["name"]), "topology", model)

    def tick(self, namespace: str = "default", name: str = "myapp-service", **deltas) -> dict:
        """One traffic event: keyword args as `Ticker.traffic` (entries=, endpoints=, rejected=)."""
        key = (namespace, name)
        traffic = self.tickers[key].traffic(self.models[key], **deltas)
        self.last_traffic[key] = traffic
        self._send(key, "traffic", traffic)
        return traffic

    def drop_streams(self) -> None:
        self._call(lambda: [q.put_nowait(None) for _, q in self._streams])

    def open_streams(self) -> int:
        return len(self._streams)

    def _send(self, key: tuple[str, str], event: str, data: dict) -> None:
        frame = sse(event, data)
        self._call(lambda: [q.put_nowait(frame) for k, q in self._streams if k == key])

    def _call(self, fn) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # -- lifecycle --
    def start(self) -> FakeUiServer:
        ready = threading.Event()

        def main():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), handle_signals=False)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="fake-ui-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake UI server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self.drop_streams()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeUiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP --
    def app(self) -> web.Application:
        app = web.Application(middlewares=[security_headers])
        r = app.router
        r.add_get("/ui", self.redirect)
        r.add_get("/ui/", self.index)
        r.add_get("/ui/static/{path:.+}", self.static)
        r.add_get("/ui/api/v1/services", self.services)
        r.add_get("/ui/api/v1/services/{ns}/{name}/map", self.map)
        r.add_get("/ui/api/v1/stream", self.stream)
        r.add_get("/ui/api/v1/overview", self.get_overview)
        r.add_get("/ui/api/v1/describe/{resource}/{ns}/{name}", self.describe_one)
        return app

    async def redirect(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/ui/")

    async def get_overview(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.overview)

    async def index(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        path = (STATIC / request.match_info["path"]).resolve()
        if STATIC not in path.parents or not path.is_file():
            return status(404, "NotFound", "not found")
        ctype = TYPES.get(path.suffix, "application/octet-stream")
        return web.Response(body=path.read_bytes(), headers={"Content-Type": ctype, "Cache-Control": "no-cache"})

    async def services(self, _request: web.Request) -> web.StreamResponse:
        items = []
        for (ns, name), m in sorted(self.models.items()):
            s = m["service"]
            items.append({"namespace": ns, "name": name, "type": s["type"], "clusterIP": s["clusterIP"],
                          "ports": s["ports"], "creationTimestamp": "2026-12-05T10:00:00Z",
                          "readyEndpoints": s["readyEndpoints"], "totalEndpoints": s["totalEndpoints"]})
        return web.json_response({"items": items})

    async def map(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["ns"], request.match_info["name"])
        if self.forbidden:
            return status(403, "Forbidden", self.forbidden)
        if key not in self.models:
            return status(404, "NotFound", f'services "{key[1]}" not found')
        return web.json_response({"model": self.models[key], "traffic": self.last_traffic.get(key)})

    async def describe_one(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        data = self.describe.get((m["resource"], m["ns"], m["name"]))
        if data is None:
            return status(404, "NotFound", f'{m["resource"]} "{m["name"]}" not found')
        return web.json_response(data)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self.forbidden:
            return status(403, "Forbidden", self.forbidden)
        if self.refuse_streams:
            return status(self.refuse_streams, "ServiceUnavailable", "the API server is restarting")
        self.stream_queries.append(dict(request.query))
        ns, name = request.query.get("namespace", "default"), request.query.get("service")
        key = (ns, name) if name else (self.default or ("", ""))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.streams_opened += 1
        await resp.write(b"retry: 2000\n\n")
        model = self.models.get(key) or unknown_model(*key)
        if not name and not self.default:
            model = {**unknown_model("", ""), "error": "no Services yet"}
        await resp.write(sse("snapshot", {"model": model, "traffic": self.last_traffic.get(key)},
                             event_id=model["resourceVersion"]))
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)
        entry = (key, queue)
        self._streams.append(entry)
        try:
            while (frame := await queue.get()) is not None:
                await resp.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.remove(entry)
        return resp


def sse(event: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code}, status=code)


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        resp: web.StreamResponse = web.Response(status=405, text="method not allowed", headers={"Allow": "GET, HEAD"})
    else:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            resp = exc
    resp.headers.update(SECURITY_HEADERS)
    return resp


def main() -> None:  # pragma: no cover - a hand tool
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8780)
    args = parser.parse_args()
    server = FakeUiServer(port=args.port).start()
    model = seed_model()
    server.set_model(model)
    print(f"serving {server.url}", flush=True)
    try:
        while True:
            time.sleep(1)
            picks = collections.Counter(random.choice(model["endpoints"])["key"] for _ in range(random.randint(0, 6)))
            entry = model["entries"][0]["id"]
            server.tick(entries={entry: sum(picks.values())}, endpoints=dict(picks))
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
