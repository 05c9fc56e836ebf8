"""The API server's Prometheus metrics, under Kubernetes' own names.

`apiserver_request_total{verb,group,resource,subresource,code}` counts requests the way
kube-apiserver does (LIST and WATCH apart from GET), so a relist storm after an outage shows up
as LIST counts; `apiserver_request_duration_seconds` times the non-streaming ones.
`apiserver_longrunning_requests{verb="WATCH",...}` is the number of watches open right now (the
counter only sees a watch when it ends), so a client's watches can be seen coming back.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pocketkube.api import errors
from pocketkube.apiserver.request import bool_param, parse_target

REGISTRY = CollectorRegistry()
REQUESTS = Counter("apiserver_request_total", "Requests, by verb, resource and HTTP code.",
                   ["verb", "group", "resource", "subresource", "code"], registry=REGISTRY)
DURATION = Histogram("apiserver_request_duration_seconds", "Latency of non-streaming requests.",
                     ["verb", "resource"], registry=REGISTRY,
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
LONGRUNNING = Gauge("apiserver_longrunning_requests", "Long-running requests (watches) open now.",
                    ["verb", "group", "resource", "subresource"], registry=REGISTRY)
# Streams are counted as kube-apiserver counts them: verb CONNECT, not timed (they last as long as the session).
_CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")
_VERBS = {"GET": "GET", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE"}


def _labels(request: web.Request) -> tuple[str, str, str, str]:
    try:
        target = parse_target(request.path)
    except errors.ApiError:
        target = None
    if target is None:
        return _VERBS.get(request.method, request.method), "", "", ""
    verb = _VERBS.get(request.method, request.method)
    if target.subresource in _CONNECT_SUBRESOURCES:
        return "CONNECT", target.res.group, target.res.plural, target.subresource
    if request.method == "GET":
        if target.legacy_watch or bool_param(request.query.get("watch")):
            verb = "WATCH"
        elif not target.name:
            verb = "LIST"
    elif request.method == "DELETE" and not target.name:
        verb = "DELETECOLLECTION"
    return verb, target.res.group, target.res.plural, target.subresource


@web.middleware
async def middleware(request: web.Request, handler):
    start = time.perf_counter()
    verb, group, resource, sub = _labels(request)
    open_watches = LONGRUNNING.labels(verb, group, resource, sub) if verb == "WATCH" else None
    if open_watches is not None:
        open_watches.inc()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as e:
        code = e.status
        raise
    finally:
        if open_watches is not None:
            open_watches.dec()
        REQUESTS.labels(verb, group, resource, sub, str(code)).inc()
        if verb not in ("WATCH", "CONNECT"):
            DURATION.labels(verb, resource).observe(time.perf_counter() - start)


def metrics_response() -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})
