"""`/api/v1/nodes/<node>/proxy/<path>`: the nodes/proxy subresource, relayed to the node agent.

As `kubectl get --raw /api/v1/nodes/node-1/proxy/metrics` reaches a kubelet's metrics, it reaches
the node agent's: the agent's endpoint comes from the Node (InternalIP and kubeletEndpoint, as
for logs) and the request carries that node's token. Authorized as `get nodes/proxy` (RBAC:
cluster-admin has it; admin, edit and view do not, as upstream). Read-only here: GET and HEAD;
and only the agent's read endpoints are relayed (its token also opens exec and logs, which have
their own subresources and permissions).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys
from pocketkube.apiserver.logs import node_endpoint

METHODS = ("GET", "HEAD")
RELAYED = ("metrics", "proxy/traffic", "stats/summary")  # what the node agent serves to readers
TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
_PASSED_HEADERS = ("Content-Type",)


def agent_path(tail: str) -> str:
    """The agent path for the part after `proxy/`; NotFound for what is not relayed."""
    path = tail.strip("/")
    if path not in RELAYED:
        raise errors.NotFound.path()
    return "/" + path


async def serve(request: web.Request, node: str, tail: str) -> web.StreamResponse:
    if request.method not in METHODS:
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource",
                                      {}, {"Allow": ", ".join(METHODS)})
    path = agent_path(tail)
    ip, port = node_endpoint(request.app[appkeys.REGISTRY], node, "for nodes/proxy")
    headers = {"Authorization": f"Bearer {request.app[appkeys.NODE_TOKEN](node)}"}
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.request(request.method, f"http://{ip}:{port}{path}", params=request.query,
                                headers=headers) as upstream:
            body = await upstream.read()
            passed = {k: upstream.headers[k] for k in _PASSED_HEADERS if k in upstream.headers}
            return web.Response(status=upstream.status, body=body if request.method == "GET" else None,
                                headers=passed)
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise errors.ServiceUnavailable(f'cannot reach the node agent of node "{node}" at {ip}:{port}: {e}') \
            from None
