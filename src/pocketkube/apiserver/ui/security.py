"""What every /ui response carries and every /ui request must pass (ui.md §5).

The page is read-only and same-origin: GET/HEAD only (405 with Allow otherwise), a strict CSP and
the framing/isolation headers on every answer (errors too), no CORS headers ever, and two checks
against cross-site use of a logged-in browser: the Host must be a name of this server (DNS
rebinding) and a present Origin must be that same host. The decisions are pure functions; the
aiohttp middleware only applies them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from pocketkube.api import errors

PREFIX = "/ui"
ALLOWED_METHODS = ("GET", "HEAD")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_CORS_PREFIX = "access-control-"
ALWAYS_ALLOWED_HOSTS = ("localhost",)


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def host_name(host_header: str) -> str:
    """The name in a Host header or an Origin's netloc, lower-cased, without port or brackets."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else ""
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def is_loopback(name: str) -> bool:
    if name in ALWAYS_ALLOWED_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    """localhost, any loopback address, or one of `allowed` (server addresses, node IPs, SANs)."""
    if not name:
        return False
    return is_loopback(name) or name in {a.lower() for a in allowed if a}


def check(method: str, host: str, origin: str | None, allowed: Iterable[str]) -> errors.ApiError | None:
    """The error a /ui request gets before any handler runs, or None.

    Origin is compared by host name, not port, and loopback names are one host: through
    `kubectl proxy` the page's origin is localhost:8001 or 127.0.0.1:8001 while the Host reaching
    the server is the server's own address (kubectl rewrites it)."""
    allowed = list(allowed)
    name = host_name(host)
    if not host_allowed(name, allowed):
        return errors.Forbidden(f'forbidden: host "{host}" is not a name of this server', {})
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        o_name = host_name(parts.netloc) if parts is not None and parts.scheme in ("http", "https") else ""
        same = o_name == name or (is_loopback(o_name) and is_loopback(name))
        if not o_name or not same or not host_allowed(o_name, allowed):
            return errors.Forbidden(f'forbidden: cross-origin request from "{origin}"', {})
    if method not in ALLOWED_METHODS:
        e = errors.MethodNotAllowed(f"the server does not allow this method on the requested resource: "
                                    f"{PREFIX} is read-only ({', '.join(ALLOWED_METHODS)})", {})
        e.headers = {"Allow": ", ".join(ALLOWED_METHODS)}
        return e
    return None


def secure_headers(headers) -> None:
    """Add the §5 headers and drop any CORS header (a mutable multidict of a response)."""
    for k in [k for k in headers if k.lower().startswith(_CORS_PREFIX)]:
        del headers[k]
    for k, v in HEADERS.items():
        headers[k] = v


def middleware(allowed_hosts: Callable[[], Iterable[str]], error_response: Callable[[errors.ApiError], web.Response]):
    """The /ui guard, placed outside the error middleware so Status answers get the headers too."""

    @web.middleware
    async def ui_security(request: web.Request, handler):
        if not is_ui_path(request.path):
            return await handler(request)
        problem = check(request.method, request.host, request.headers.get("Origin"), allowed_hosts())
        if problem is not None:
            resp = error_response(problem)
        else:
            resp = await handler(request)
        if not resp.prepared:  # a stream already sent its headers (see prepare_headers)
            secure_headers(resp.headers)
        return resp

    return ui_security
