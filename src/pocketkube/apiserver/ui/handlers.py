"""The routes under /ui (spec §2): the page, its static files, the login exchange and the JSON API.
The event stream itself is in stream.py; the pure parts in topology/traffic/describe."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver.ui import access, describe, login, security, sse, topology
from pocketkube.apiserver.ui.collector import Collector
from pocketkube.apiserver.ui.watchcache import WatchCache

API = "/ui/api/v1/"
USAGE_TIMEOUT = 1.5
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png", ".txt": "text/plain",
                 ".woff2": "font/woff2", ".ico": "image/x-icon"}


def static_dir() -> Path:
    return Path(str(resources.files("pocketkube.apiserver.ui") / "static"))


def json_ok(body) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def static_file(root: Path, rel: str) -> Path | None:
    """The file `rel` names inside `root`, refusing anything that leaves it (.., symlinks out)."""
    rel = unquote(rel)
    if not rel or "\\" in rel or "\x00" in rel or any(p in ("", ".", "..") or p.startswith(".") for p in rel.split("/")):
        return None
    try:
        path = (root / rel).resolve(strict=True)
        path.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None


class UIServer:
    def __init__(self, registry, *, data_dir: Path, server_url: Callable[[], str], node_token: Callable[[str], str],
                 admin: tuple[str, list[str]], allowed_hosts: Callable[[], list[str]] | None = None,
                 static: Path | None = None, streams: sse.Streams | None = None) -> None:
        self.registry = registry
        self.server_url = server_url
        self.key = login.ensure_key(data_dir)
        self.nonces = login.UsedNonces()
        self.admin = admin
        self.static = static or static_dir()
        self.cache = WatchCache(registry)
        self.collector = Collector(lambda: self.cache["nodes"].items(), node_token)
        self.streams = streams or sse.Streams()
        self._extra_hosts = allowed_hosts or (lambda: [])

    # ---- wiring ----
    def allowed_hosts(self) -> list[str]:
        """Names a browser may reach this server by: its own addresses and every node's IP."""
        cached = self.cache["nodes"]
        nodes = cached.items() if cached.synced.is_set() else self.registry.store("", "nodes").list_objects()
        return [*self._extra_hosts(), *(topology.node_ip(n) for n in nodes)]

    def middleware(self, error_response):
        return security.middleware(self.allowed_hosts, error_response)

    def session_identity(self, request: web.Request) -> tuple[str, list[str]] | None:
        """The user of a valid session cookie (accepted on /ui paths only)."""
        cookie = request.cookies.get(login.COOKIE)
        return login.check_session(self.key, cookie) if cookie else None

    async def on_shutdown(self, _app: web.Application) -> None:
        self.streams.close_all()

    async def stop(self) -> None:
        self.streams.close_all()
        await self.collector.stop()
        await self.cache.stop()

    # ---- routing ----
    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/ui":
            return web.Response(status=301, headers={"Location": "/ui/"})
        if path == "/ui/":
            return self._file("index.html", cache="no-cache")
        if path.startswith("/ui/static/"):
            return self._file(path.removeprefix("/ui/static/"))
        if path == "/ui/login":
            return self._login(request)
        if path.startswith(API):
            parts = [unquote(p) for p in path.removeprefix(API).split("/")]
            return await self._api(request, parts)
        raise errors.NotFound.path()

    async def _api(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        if parts == ["services"]:
            return json_ok(await self.services(request))
        if len(parts) == 4 and parts[0] == "services" and parts[3] == "map":
            return json_ok(await self.map(request, parts[1], parts[2], request.query.get("port")))
        if parts == ["stream"]:
            from pocketkube.apiserver.ui.stream import serve_stream

            return await serve_stream(self, request)
        if parts == ["overview"]:
            return json_ok(await self.overview(request))
        if len(parts) == 4 and parts[0] == "describe":
            return json_ok(await self.describe(request, parts[1], parts[2], parts[3]))
        raise errors.NotFound.path()

    def _file(self, rel: str, cache: str = "no-cache") -> web.Response:
        path = static_file(self.static, rel)
        if path is None:
            if rel == "index.html":
                raise errors.NotFound("the live map's page is not installed (ui/static/index.html is missing)", {})
            raise errors.NotFound.path()
        ctype = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or \
            "application/octet-stream"
        return web.Response(body=path.read_bytes(), content_type=ctype.split(";")[0],
                            charset="utf-8" if ctype.startswith("text/") or ctype.endswith("+xml") else None,
                            headers={"Cache-Control": cache})

    def _login(self, request: web.Request) -> web.Response:
        try:
            login.check_login_token(self.key, request.query.get("token", ""), self.nonces, self.admin[0])
        except login.LoginError:
            return web.Response(status=401, text=login.EXPIRED_MESSAGE + "\n",
                                headers={"Cache-Control": "no-store"})
        cookie = login.make_session(self.key, *self.admin)
        return web.Response(status=303, headers={"Location": "/ui/", "Cache-Control": "no-store",
                                                 "Set-Cookie": login.cookie_header(cookie)})

    # ---- JSON ----
    def _namespaces(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.registry.store("", "namespaces").list_objects())

    async def services(self, request: web.Request) -> dict:
        await self.cache.ready()
        user, policy = access.user_of(request), self.registry.policy
        namespaces = set(access.readable_namespaces(user, policy, self._namespaces(), "", "services"))
        items = []
        for svc in self.cache["services"].items():
            ns = svc["metadata"].get("namespace", "")
            if ns in namespaces:
                ready, total = describe.endpoint_counts(self._slices(ns, svc["metadata"]["name"]))
                items.append(describe.service_summary(svc, ready, total))
        items.sort(key=lambda s: (s["namespace"], s["name"]))
        return {"items": items}

    def _slices(self, namespace: str, name: str) -> list[dict]:
        return topology.service_slices(self.cache["endpointslices"].items(namespace), name)

    def authorize_map(self, request: web.Request, namespace: str) -> None:
        user, policy = access.user_of(request), self.registry.policy
        access.require(user, policy, access.MAP_NEEDS, namespace)
        access.require(user, policy, access.NODE_NEEDS)

    def model(self, namespace: str, name: str | None, port: str | None) -> dict:
        """MODEL from the watch cache (name None: the default Service of the namespace, or of all)."""
        svc = None
        if name:
            svc = self.cache["services"].get(namespace, name)
        else:
            candidates = self.cache["services"].items(namespace)
            svc = topology.default_service(candidates)
            if svc is not None:
                namespace = svc["metadata"].get("namespace", namespace)
        return topology.build_model(
            namespace=namespace, name=name, service=svc, slices=self.cache["endpointslices"].items(namespace),
            pods=self.cache["pods"].items(namespace), nodes=self.cache["nodes"].items(), port=port,
            server=self.server_url(), dataplane=self.collector.aggregator.dataplane(),
            resource_version=str(self.cache.revision))

    async def map(self, request: web.Request, namespace: str, name: str, port: str | None) -> dict:
        self.authorize_map(request, namespace)
        await self.cache.ready()
        model = self.model(namespace, name, port)
        if model["service"] is None:
            raise errors.NotFound.object("services", name)
        await self.collector.read_once()
        model["cluster"]["dataplane"] = self.collector.aggregator.dataplane()
        return {"model": model, "traffic": self.collector.aggregator.tick_for(model)}

    async def overview(self, request: web.Request) -> dict:
        from pocketkube.apiserver.resource_metrics import scrape, usage

        user, policy = access.user_of(request), self.registry.policy
        access.require(user, policy, (("list", "", "nodes"),))
        await self.cache.ready()
        namespaces = self._namespaces()
        pod_ns = set(access.readable_namespaces(user, policy, namespaces, "", "pods"))
        svc_ns = set(access.readable_namespaces(user, policy, namespaces, "", "services"))
        ev_ns = set(access.readable_namespaces(user, policy, namespaces, "", "events"))
        nodes = self.cache["nodes"].items()
        node_token = self.collector.node_token
        try:
            summaries = await asyncio.wait_for(scrape([n for n in nodes if topology.node_ready(n)], node_token),
                                               USAGE_TIMEOUT)
        except TimeoutError:
            summaries = {}
        use = {name: usage(s.get("node") or {}) for name, s in summaries.items()}
        pods = [p for p in self.cache["pods"].items() if p["metadata"].get("namespace") in pod_ns]
        services = []
        for s in self.cache["services"].items():
            ns = s["metadata"].get("namespace", "")
            if ns in svc_ns:
                services.append((s, *describe.endpoint_counts(self._slices(ns, s["metadata"]["name"]))))
        events = [e for e in self.cache["events"].items() if e["metadata"].get("namespace") in ev_ns]
        return describe.overview(nodes, pods, services, events, use)

    async def describe(self, request: web.Request, resource: str, namespace: str, name: str) -> dict:
        if resource not in describe.RESOURCES:
            raise errors.NotFound.path()
        group, _, namespaced = describe.RESOURCES[resource]
        namespace = namespace if namespaced and namespace != "_" else ""
        user, policy = access.user_of(request), self.registry.policy
        access.require(user, policy, (("get", group, resource),), namespace, name)
        obj = self.registry.store(group, resource).try_get(namespace, name)
        if obj is None:
            raise errors.NotFound.object(resource, name, group)
        events = []
        if access.may(user, policy, "list", "", "events", namespace or "default"):
            await self.cache.ready()
            events = self.cache["events"].items(namespace or "default")
        return describe.describe(resource, obj, events)
