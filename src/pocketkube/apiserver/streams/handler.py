"""Entry point of pods/exec, pods/attach and pods/portforward: checks the pod and the request as
kube-apiserver does, then hands the connection to the termination of the client's protocol.

- WebSocket with a `*channel.k8s.io` subprotocol (or none): ws_exec / ws_portforward here;
- WebSocket with `SPDY/3.1+portforward.k8s.io` on portforward (kubectl >= 1.31): the SPDY
  tunnel, and `Upgrade: SPDY/3.1` (kubectl's fallback): the SPDY terminations. Those modules
  are imported lazily: without them the answer is 400 "SPDY is not supported".
Authorization happened before (authz.py: these subresources need `create`, GET included).
"""

from __future__ import annotations

from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver.logs import _container
from pocketkube.apiserver.streams.options import parse_exec_options, parse_ports
from pocketkube.streams import wschannel as wc

TUNNELED_PORTFORWARD = "SPDY/3.1+portforward.k8s.io"
SPDY_UPGRADE = "spdy/3.1"


def is_websocket(request: web.Request) -> bool:
    connection = [v.strip().lower() for v in request.headers.get("Connection", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


def check_pod(pod: dict, kind: str) -> None:
    """The pod must be on a node and, for exec and attach, not finished; port-forward needs it Running
    (kubectl's wording, which upstream checks on the client side)."""
    name = pod["metadata"]["name"]
    if not (pod.get("spec") or {}).get("nodeName"):
        raise errors.BadRequest(f"pod {name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if kind == "portforward":
        if phase != "Running":
            raise errors.BadRequest(f"unable to forward port because pod is not running. Current status={phase}")
    elif phase in ("Succeeded", "Failed"):
        verb = "attach to" if kind == "attach" else "exec into"
        raise errors.BadRequest(f"cannot {verb} a container in a completed pod; current phase is {phase}")


def _negotiate(request: web.Request, supported: tuple[wc.Protocol, ...]) -> wc.Protocol:
    try:
        return wc.negotiate(wc.offered(request.headers.get("Sec-WebSocket-Protocol", "")), supported)
    except wc.NegotiationError as e:
        raise errors.BadRequest(str(e)) from None


def _spdy_unsupported(e: ModuleNotFoundError) -> errors.BadRequest:
    """Without the SPDY terminations (their modules absent), a 400; any other missing import is a bug."""
    if not (e.name or "").startswith("pocketkube.apiserver.streams.spdy"):
        raise e
    return errors.BadRequest("SPDY is not supported")


async def serve_stream(request: web.Request, registry, t) -> web.StreamResponse:
    kind = t.subresource
    if request.method not in ("GET", "POST"):
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
    pod = registry.store("", "pods").get(t.namespace, t.name)
    container = "" if kind == "portforward" else _container(pod, request.query.get("container"))
    check_pod(pod, kind)
    websocket = is_websocket(request)
    spdy = request.headers.get("Upgrade", "").lower().startswith(SPDY_UPGRADE)
    if not websocket and not spdy:
        raise errors.BadRequest("Upgrade request required")
    if kind == "portforward":
        return await _portforward(request, pod, websocket)
    opts = parse_exec_options(request.query, attach=kind == "attach")
    if websocket:
        from pocketkube.apiserver.streams.ws_exec import serve_ws_exec

        return await serve_ws_exec(request, pod, container, opts, _negotiate(request, wc.EXEC_PROTOCOLS))
    try:
        from pocketkube.apiserver.streams.spdy_exec import serve_spdy_exec
    except ModuleNotFoundError as e:
        raise _spdy_unsupported(e) from None
    return await serve_spdy_exec(request, pod, container, opts)


async def _portforward(request: web.Request, pod: dict, websocket: bool) -> web.StreamResponse:
    if websocket and TUNNELED_PORTFORWARD in wc.offered(request.headers.get("Sec-WebSocket-Protocol", "")):
        try:
            from pocketkube.apiserver.streams.spdy_portforward import serve_tunneled_portforward
        except ModuleNotFoundError as e:
            raise _spdy_unsupported(e) from None
        return await serve_tunneled_portforward(request, pod)
    if websocket:
        from pocketkube.apiserver.streams.ws_portforward import serve_ws_portforward

        ports = parse_ports(request.query)
        return await serve_ws_portforward(request, pod, ports, _negotiate(request, wc.PORTFORWARD_PROTOCOLS))
    try:
        from pocketkube.apiserver.streams.spdy_portforward import serve_spdy_portforward
    except ModuleNotFoundError as e:
        raise _spdy_unsupported(e) from None
    return await serve_spdy_portforward(request, pod)
