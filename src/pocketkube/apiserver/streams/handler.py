"""Entry point of the streaming subresources (filled in by issue 11)."""

from __future__ import annotations

from aiohttp import web

from pocketkube.api import errors


async def serve_stream(request: web.Request, registry, t) -> web.StreamResponse:
    raise errors.BadRequest(f"pods/{t.subresource} is not served yet")
