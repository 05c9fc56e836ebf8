"""The /ui guard: methods, Host allowlist, Origin check, the §5 headers on every answer (errors
included) and no CORS header, as pure decisions and through an aiohttp app."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pocketkube.api import errors
from pocketkube.apiserver.ui import security

ALLOWED = ["10.0.0.5", "pk.example"]


@pytest.mark.parametrize("host", ["localhost", "localhost:6443", "127.0.0.1:6443", "127.5.6.7", "[::1]:6443",
                                  "10.0.0.5:6443", "PK.example:443", "pk.example."])
def test_allowed_hosts(host):
    assert security.check("GET", host, None, ALLOWED) is None


@pytest.mark.parametrize("host", ["evil.com", "10.0.0.6:6443", "", "[::2]:1", "localhost.evil.com", "127.0.0.1.nip.io"])
def test_foreign_hosts_are_refused(host):
    e = security.check("GET", host, None, ALLOWED)
    assert isinstance(e, errors.Forbidden) and "is not a name of this server" in e.message


@pytest.mark.parametrize("origin", ["https://127.0.0.1:6443", "http://127.0.0.1:8001", "http://localhost:8001"])
def test_same_host_origin_passes_whatever_the_port(origin):
    assert security.check("GET", "127.0.0.1:6443", origin, ALLOWED) is None


@pytest.mark.parametrize("origin", ["https://evil.com", "null", "file://", "ftp://127.0.0.1", "https://10.0.0.5",
                                    "http://127.0.0.1.evil.com"])
def test_cross_origin_is_refused(origin):
    e = security.check("GET", "127.0.0.1:6443", origin, ALLOWED)
    assert isinstance(e, errors.Forbidden) and "cross-origin" in e.message


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_writes_are_405_with_allow(method):
    e = security.check(method, "127.0.0.1", None, ALLOWED)
    assert isinstance(e, errors.MethodNotAllowed) and e.headers == {"Allow": "GET, HEAD"}


def test_ui_paths():
    assert security.is_ui_path("/ui") and security.is_ui_path("/ui/static/x.js")
    assert not security.is_ui_path("/uix") and not security.is_ui_path("/api/v1/ui")


def _status(e: errors.ApiError) -> web.Response:
    return web.json_response(e.status(), status=e.code, headers=e.headers or None)


@pytest.fixture
async def client():
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/ui/boom":
            return _status(errors.NotFound("nope", {}))
        return web.Response(text="ok", headers={"Access-Control-Allow-Origin": "*"})

    app = web.Application(middlewares=[security.middleware(lambda: ALLOWED, _status)])
    app.router.add_route("*", "/{tail:.*}", handler)
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    yield c
    await c.close()


def _secured(resp) -> None:
    for k, v in security.HEADERS.items():
        assert resp.headers[k] == v
    assert not [k for k in resp.headers if k.lower().startswith("access-control-")]


async def test_middleware_headers_on_every_ui_answer(client):
    for method, path, headers, code in [("GET", "/ui/", {}, 200), ("HEAD", "/ui/", {}, 200),
                                        ("GET", "/ui/boom", {}, 404), ("POST", "/ui/", {}, 405),
                                        ("DELETE", "/ui/api/v1/services", {}, 405),
                                        ("GET", "/ui/", {"Host": "evil.com"}, 403),
                                        ("GET", "/ui/", {"Origin": "https://evil.com"}, 403)]:
        r = await client.request(method, path, headers=headers)
        assert r.status == code, (method, path, headers)
        _secured(r)
        if code == 405:
            assert r.headers["Allow"] == "GET, HEAD"


async def test_other_paths_untouched(client):
    r = await client.post("/api/v1/pods")
    assert r.status == 200 and "Content-Security-Policy" not in r.headers
