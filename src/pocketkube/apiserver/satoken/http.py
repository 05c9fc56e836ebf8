"""HTTP glue of TokenRequest (POST serviceaccounts/<name>/token) and TokenReview."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys, bodies
from pocketkube.apiserver.request import Target
from pocketkube.apiserver.satoken import tokenrequest
from pocketkube.registry.registry import Registry


def _decode(request: web.Request, body: bytes, kind: str) -> dict:
    obj = bodies.decode_object(request.headers.get("Content-Type", ""), body) if body.strip() else {}
    got = (obj.get("apiVersion"), obj.get("kind"))
    if got != (None, None) and got != (tokenrequest.API_VERSION, kind):
        raise errors.BadRequest(f"expected {kind} in {tokenrequest.API_VERSION}, got {got[1]} in {got[0]}")
    return obj


def _warnings(texts: list[str]) -> dict[str, str] | None:
    if not texts:
        return None
    from multidict import CIMultiDict

    from pocketkube.apiserver.openapi import go_quote

    return CIMultiDict(("Warning", f"299 - {go_quote(w)}") for w in texts)


async def serve_token_request(request: web.Request, registry: Registry, t: Target, body: bytes) -> web.Response:
    if request.method != "POST":
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
    req = _decode(request, body, "TokenRequest")
    out, warnings = tokenrequest.create_token(registry, request.app[appkeys.TOKEN_SIGNER], t.namespace, t.name,
                                              req)
    return web.Response(body=orjson.dumps(out), status=201, content_type="application/json",
                        headers=_warnings(warnings))


async def serve_token_review(request: web.Request) -> web.Response:
    body = await request.read()
    req = _decode(request, body, "TokenReview")
    auth = request.app[appkeys.SA_AUTHENTICATOR]
    static = request.app.get(appkeys.STATIC_TOKENS)

    def authenticate(token: str, audiences):
        # Static and bootstrap tokens are audience-agnostic: they answer reviews for the API only.
        ident = static(token) if static is not None and not audiences else None
        if ident is not None:
            return SimpleNamespace(name=ident[0], uid="", groups=list(ident[1]), extra={})
        return auth.review(token, audiences)
    out = tokenrequest.review_token(authenticate, req, auth.audiences)
    return web.Response(body=orjson.dumps(out), status=201, content_type="application/json")
