"""The API server: TLS, authentication, routing, and Status errors around the REST handlers.

It serves a Registry it is handed: which storage backend lies beneath (and how it was opened)
is the wiring's business (pocketkube/server.py), so nothing here imports storage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys, authn, authz, discovery, event_ttl, metrics
from pocketkube.apiserver.flowcontrol import FlowControl
from pocketkube.apiserver.handlers import Handlers, json_response, status_body
from pocketkube.apiserver.pki import PKI, kubeconfig, serving_hosts, write_kubeconfig
from pocketkube.apiserver.request import parse_target
from pocketkube.apiserver.ui.security import is_ui_path
from pocketkube.registry.registry import Registry

log = logging.getLogger(__name__)
_TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
_OIDC_CONFIGURATION = "/.well-known/openid-configuration"
_OIDC_JWKS = "/openid/v1/jwks"
_PUBLIC_PATHS = {"/version", "/healthz", "/livez", "/readyz", authn.CACERTS_PATH}
_UI_LOGIN = "/ui/login"  # public: it authenticates by its one-time token
BOOTSTRAP_INTERVAL = 10.0
# How often the live API servers are looked at (their leases are renewed every 10 s and expire
# 15 s after their last renewal): a dead server leaves the `kubernetes` endpoints within ~17 s.
MASTER_LEASE_CHECK = 2.0
COMPACT_INTERVAL = 60.0
COMPACT_KEEP = 10_000  # revisions of history kept for watch resumption
# Tests shorten compaction through these to exercise 410 Expired.
COMPACT_INTERVAL_ENV = "POCKETKUBE_COMPACT_INTERVAL"
COMPACT_KEEP_ENV = "POCKETKUBE_COMPACT_KEEP"
# The shared range records' repair (ClusterIPs, NodePorts on etcd) runs this often in every API
# server (upstream's 3 min); a leak is released after 3 runs. Tests shorten it.
RANGE_REPAIR_INTERVAL = 180.0
RANGE_REPAIR_INTERVAL_ENV = "POCKETKUBE_RANGE_REPAIR_INTERVAL"


@dataclass
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    extra_sans: list[str] = field(default_factory=list)
    # A socket already listening, inherited from `pocketkube up`: clients can connect (and wait
    # in its backlog) before this process has even imported its modules.
    listen_fd: int | None = None
    # Where pods reach the server (kube-apiserver's --advertise-address): the `kubernetes`
    # endpoints point there and the server listens there too, on the same port. Empty: `host`.
    advertise_address: str = ""
    advertise_listen_fd: int | None = None  # that second socket, inherited from `up` likewise


class APIServer:
    def __init__(self, cfg: ServerConfig, registry: Registry) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir)
        self.pki = PKI(self.data_dir)
        self.registry = registry
        self._registry_started = False
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self.port = cfg.port
        self._identities: dict[str, tuple[str, list[str]]] = {}
        self._servers: list[str] = []  # the live API servers' addresses (master leases)
        self.ui = None  # the live map under /ui (apiserver/ui), built with the app

    @property
    def url(self) -> str:
        return f"https://{self.cfg.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.data_dir / "kubeconfig"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pki.ensure(serving_hosts(self.cfg.host, self.cfg.advertise_address,
                                      self.registry.allocator.first_ip(), self.cfg.extra_sans))
        self._identities = self.pki.identities()
        self._init_tokens()
        event_ttl_seconds = float(os.environ.get(event_ttl.EVENT_TTL_ENV, event_ttl.EVENT_TTL))
        self.registry.expire_events_after(event_ttl_seconds)
        problems = await self.registry.start()
        self._registry_started = True
        for problem in problems:
            log.warning("allocation repair: %s", problem)
        app = self.make_app()
        # handler_cancellation: a watch whose client went away ends at once instead of lingering
        # until its next event; shutdown_timeout bounds how long open streams delay a stop.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        sock = self._listening_socket()
        self.port = sock.getsockname()[1]
        socks = [sock, *self._advertise_socket()]
        # System namespaces and the `kubernetes` Service exist before the first request is served:
        # agents started alongside the server may already be waiting in the socket's backlog.
        from pocketkube.apiserver.bootstrap import bootstrap

        await bootstrap(self.registry, self.cfg.host, self.port, self.cfg.advertise_address,
                        await self._live_servers())
        from pocketkube.apiserver.rbac.reconcile import reconcile

        await reconcile(self.registry)  # the bootstrap RBAC policy (upstream's post-start hook)
        ctx = authn.serving_context(str(self.pki.server_cert), str(self.pki.server_key), str(self.pki.ca_cert))
        for s in socks:
            await web.SockSite(self._runner, s, ssl_context=ctx, backlog=1024).start()
        self._tasks.append(asyncio.create_task(self._compact_loop(), name="compactor"))
        if self.registry.allocator.shared:
            self._tasks.append(asyncio.create_task(self._range_repair_loop(), name="range-repair"))
        self._tasks.append(asyncio.create_task(self._bootstrap_loop(), name="bootstrap-reconciler"))
        self._tasks.append(asyncio.create_task(self._master_lease_loop(), name="master-leases"))
        from pocketkube.apiserver.apiservices import APIServiceController

        # Autoregistration and availability of APIServices (kube-apiserver's aggregator controllers).
        self._tasks.append(asyncio.create_task(APIServiceController(self.registry).run(), name="apiservices"))
        self._tasks.append(asyncio.create_task(event_ttl.expire_unleased(self.registry.events, event_ttl_seconds),
                                               name="event-ttl"))
        self._tasks.append(asyncio.create_task(_trim_memory_loop(), name="malloc-trim"))
        write_kubeconfig(self.kubeconfig_path, kubeconfig(self.url, self.pki.ca_cert.read_text(),
                                                          self.pki.admin_token()))

    def _listening_socket(self) -> socket.socket:
        """The socket inherited from `pocketkube up` (already listening), or a new one."""
        if self.cfg.listen_fd is not None:
            return socket.socket(fileno=self.cfg.listen_fd)
        return socket.create_server((self.cfg.host, self.cfg.port), backlog=1024)

    def _advertise_socket(self) -> list[socket.socket]:
        """The socket on the advertise address (on the main socket's port, which `--port 0`
        chose at random), unless the main socket listens there already (or on every address)."""
        if not self.cfg.advertise_address or self.cfg.advertise_address == self.cfg.host \
                or self.cfg.host in ("0.0.0.0", "::"):
            return []
        if self.cfg.advertise_listen_fd is not None:
            return [socket.socket(fileno=self.cfg.advertise_listen_fd)]
        return [socket.create_server((self.cfg.advertise_address, self.port), backlog=1024)]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._registry_started and self._runner is not None:
            await self._leave()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.ui is not None:
            await self.ui.stop()
        if self._registry_started:
            await self.registry.close()

    async def _bootstrap_loop(self) -> None:
        """Recreate the system namespaces and the `kubernetes` Service if someone deletes them,
        as the Kubernetes apiserver's bootstrap controller does."""
        from pocketkube.apiserver.bootstrap import bootstrap

        while True:
            await asyncio.sleep(BOOTSTRAP_INTERVAL)
            try:
                await bootstrap(self.registry, self.cfg.host, self.port, self.cfg.advertise_address,
                                self._servers or None)
            except errors.ApiError as e:
                log.warning("bootstrap reconcile failed: %s", e.message)
            except Exception:  # noqa: BLE001 - the store may be down for a while; try again next tick
                log.exception("bootstrap reconcile failed")

    def _endpoint_address(self) -> str:
        from pocketkube.apiserver.bootstrap import endpoint_address

        return endpoint_address(self.cfg.host, self.cfg.advertise_address)

    async def _live_servers(self, renew: bool = True) -> list[str]:
        """Renew this server's master lease; the addresses of every live API server on our port
        (upstream's lease endpoint reconciler: all API servers serve on one port)."""
        own = self._endpoint_address()
        leases = self.registry.master_leases
        if renew:
            await leases.renew(own, self.port)
        self._servers = sorted({own, *(m.ip for m in await leases.live() if m.port == self.port)})
        return self._servers

    async def _master_lease_loop(self) -> None:
        """Renew our master lease every RENEW_INTERVAL; look at the others' every
        MASTER_LEASE_CHECK and update the `kubernetes` endpoints when the set changes."""
        from pocketkube.apiserver.bootstrap import bootstrap
        from pocketkube.registry.masterleases import RENEW_INTERVAL

        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(min(MASTER_LEASE_CHECK, BOOTSTRAP_INTERVAL))
            try:
                before = list(self._servers)
                renew = loop.time() - renewed >= RENEW_INTERVAL - MASTER_LEASE_CHECK / 2
                servers = await self._live_servers(renew)
                if renew:
                    renewed = loop.time()
                if servers != before:
                    await bootstrap(self.registry, self.cfg.host, self.port, self.cfg.advertise_address, servers)
            except Exception:  # noqa: BLE001 - the store may be down for a while; try again next tick
                log.exception("master lease reconcile failed")

    async def _leave(self) -> None:
        """A clean stop: drop our master lease and, if other servers live, our endpoint."""
        from pocketkube.apiserver.bootstrap import bootstrap

        own = self._endpoint_address()
        try:
            await self.registry.master_leases.remove(own)
            others = [m.ip for m in await self.registry.master_leases.live() if m.ip != own and m.port == self.port]
            if others:
                await bootstrap(self.registry, self.cfg.host, self.port, self.cfg.advertise_address, others)
        except Exception:  # noqa: BLE001 - stopping goes on; the others expire our lease in 15 s
            log.exception("leaving the API server endpoints failed")

    async def _compact_loop(self) -> None:
        interval = float(os.environ.get(COMPACT_INTERVAL_ENV, COMPACT_INTERVAL))
        keep = int(os.environ.get(COMPACT_KEEP_ENV, COMPACT_KEEP))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.registry.compact(keep)
            except Exception:  # noqa: BLE001 - compaction failing must not stop the server
                log.exception("compaction failed")

    async def _range_repair_loop(self) -> None:
        interval = float(os.environ.get(RANGE_REPAIR_INTERVAL_ENV, RANGE_REPAIR_INTERVAL))
        while True:
            await asyncio.sleep(interval)
            try:
                for problem in await self.registry.repair_ranges():
                    log.warning("allocation repair: %s", problem)
            except Exception:  # noqa: BLE001 - the store may be down for a while; the next run repairs
                log.exception("allocation repair failed")

    def _init_tokens(self) -> None:
        from pocketkube.apiserver.satoken.authenticator import ServiceAccountAuthenticator
        from pocketkube.apiserver.satoken.signer import Signer

        self.signer = Signer.from_file(self.pki.sa_key)
        self.sa_authenticator = ServiceAccountAuthenticator(self.registry, self.signer.public_key,
                                                            self.signer.issuer, self.signer.audiences)

    def reload_identities(self) -> None:
        self._identities = self.pki.identities()

    # ---- HTTP ----
    def make_app(self) -> web.Application:
        from pocketkube.apiserver.ui.handlers import UIServer

        cfg = self.cfg
        self.ui = UIServer(self.registry, data_dir=self.data_dir, server_url=lambda: self.url,
                           node_token=self.pki.node_token, admin=self._identities[self.pki.admin_token()],
                           allowed_hosts=lambda: [cfg.host, cfg.advertise_address, *cfg.extra_sans])
        app = web.Application(middlewares=[metrics.middleware, self.ui.middleware(_status_response), self._errors,
                                           self._authenticate, FlowControl().middleware, authz.authorize],
                              client_max_size=4 * 1024 * 1024)
        app.on_shutdown.append(self.ui.on_shutdown)
        app[appkeys.REGISTRY] = self.registry
        from pocketkube.apiserver.logs import make_log_relay

        app[appkeys.LOG_RELAY] = make_log_relay(self.pki)
        app[appkeys.NODE_TOKEN] = self.pki.node_token
        handlers = Handlers(self.registry)
        app[appkeys.HANDLERS] = handlers
        app[appkeys.TOKEN_SIGNER] = self.signer
        app[appkeys.SA_AUTHENTICATOR] = self.sa_authenticator
        # Node tokens are made on first use (pki.node_token): a review reads the file again.
        app[appkeys.STATIC_TOKENS] = lambda token: self._identities.get(token) or \
            authn.bootstrap_identity(self.registry, token) or self.pki.identities().get(token)
        # [\s\S]: a path may hold a (percent-encoded) newline; `.` would leave it to aiohttp's own 404.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._route)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        # A Status body ends with a newline, as Go's json.Encoder writes it: clients quote it verbatim.
        try:
            return await handler(request)
        except errors.ApiError as e:
            return _status_response(e)
        except web.HTTPRequestEntityTooLarge:
            e = errors.RequestEntityTooLarge("Request entity too large: limit is 3145728")
            return web.Response(body=status_body(e), status=e.code, content_type="application/json")
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence: log it, answer a Status
            log.exception("internal error serving %s %s", request.method, request.path)
            e = errors.InternalError(f"{type(exc).__name__}: {exc}")
            return web.Response(body=status_body(e), status=500, content_type="application/json")

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):
        if request.path not in _PUBLIC_PATHS and request.path != _UI_LOGIN:
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            ident = self._identities.get(token) if token else None
            if ident is None and token:
                ident = authn.bootstrap_identity(self.registry, token)
            if ident is None and token:
                sa = self.sa_authenticator.authenticate(token)
                if sa is not None:
                    ident = (sa.name, sa.groups)
                    request["user_info"] = {"uid": sa.uid, "extra": sa.extra}
            if ident is None and not token and request.transport is not None:
                ident = authn.certificate_identity(request.transport.get_extra_info("peercert"))
            if ident is None and not token and is_ui_path(request.path):
                ident = self.ui.session_identity(request)  # the browser's login cookie, for /ui only
            if ident is None:
                raise errors.Unauthorized()
            request["user"] = ident
        return await handler(request)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        if is_ui_path(request.path):
            return await self.ui.serve(request)
        path = request.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.version_info())
        if path == authn.CACERTS_PATH and request.method == "GET":
            return web.Response(body=self.pki.ca_cert.read_bytes(), content_type="text/plain")
        if path == "/metrics" and request.method == "GET":
            return metrics.metrics_response()
        if request.method == "GET":
            if path == "/api":
                if discovery.wants_aggregated(accept):
                    return _aggregated(discovery.aggregated(True))
                return json_response(discovery.api_versions(f"{self.cfg.host}:{self.port}"))
            if path == "/apis":
                if discovery.wants_aggregated(accept):
                    return _aggregated(discovery.aggregated(False))
                return json_response(discovery.api_group_list())
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) == 2:
                doc = discovery.api_resource_list("", parts[1])
                if doc is None:
                    raise errors.NotFound.path()
                return json_response(doc)
            if parts[0] == "apis" and len(parts) in (2, 3):
                doc = discovery.api_group(parts[1]) if len(parts) == 2 else \
                    discovery.api_resource_list(parts[1], parts[2])
                if doc is None:
                    raise errors.NotFound.path()
                return json_response(doc)
            if parts[0] == "openapi":
                return self._openapi(path)
        if request.method == "GET" and path in (_OIDC_CONFIGURATION, _OIDC_JWKS):
            return self._issuer_discovery(path)
        if path == _TOKEN_REVIEWS and request.method == "POST":
            from pocketkube.apiserver.satoken.http import serve_token_review

            return await serve_token_review(request)
        if path.startswith("/apis/metrics.k8s.io/v1beta1/"):
            from pocketkube.apiserver import resource_metrics

            return await resource_metrics.serve(request, path, self.registry, self.pki.node_token)
        target = parse_target(path)
        if target is None:
            raise errors.NotFound.path()
        return await request.app[appkeys.HANDLERS].dispatch(request, target)

    def _issuer_discovery(self, path: str) -> web.Response:
        from pocketkube.apiserver.satoken import discovery as oidc

        if path == _OIDC_JWKS:
            return web.Response(body=orjson.dumps(oidc.jwks(self.signer)),
                                headers={"Content-Type": oidc.JWKS_CONTENT_TYPE})
        host = self.cfg.advertise_address or self.cfg.host
        return json_response(oidc.openid_configuration(self.signer, f"https://{host}:{self.port}"))

    def _openapi(self, path: str) -> web.Response:
        from pocketkube.apiserver.openapi import openapi_v3_document_bytes, openapi_v3_root

        if path == "/openapi/v3":
            return json_response(openapi_v3_root())
        if path.startswith("/openapi/v3/"):
            doc = openapi_v3_document_bytes(path.removeprefix("/openapi/v3/"))
            if doc is not None:
                return json_response(doc)
        raise errors.NotFound.path()


async def _trim_memory_loop(interval: float = 5.0) -> None:
    """Give freed heap back to the OS now and then. A 10,000-object LIST builds tens of MB of
    short-lived buffers; glibc keeps such freed memory in its arenas, and the server's RSS would
    keep the high-water mark of its largest responses rather than what it holds."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    while True:
        await asyncio.sleep(interval)
        trim(0)


def _status_response(e: errors.ApiError) -> web.Response:
    return web.Response(body=status_body(e), status=e.code, content_type="application/json",
                        headers=e.headers or None)


def _aggregated(body: dict) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=200,
                        headers={"Content-Type": discovery.AGGREGATED_CONTENT_TYPE})
