"""Pod logs: served by the node agent that runs the pod; the API server relays them."""

from __future__ import annotations

from aiohttp import web

from pocketkube.api import errors
from pocketkube.apiserver import appkeys


def _container(pod: dict, requested: str | None) -> str:
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    init = [c.get("name", "") for c in spec.get("initContainers") or []]
    ephemeral = [c.get("name", "") for c in spec.get("ephemeralContainers") or []]
    name = pod["metadata"].get("name", "")
    if requested:
        if requested not in containers + init + ephemeral:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    if ephemeral:
        message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
    raise errors.BadRequest(message)


async def serve_pod_log(request: web.Request, registry, pod: dict) -> web.StreamResponse:
    container = _container(pod, request.query.get("container"))
    node = (pod.get("spec") or {}).get("nodeName")
    name = pod["metadata"]["name"]
    if not node:
        raise errors.BadRequest(f'container "{container}" in pod "{name}" is waiting to start: '
                                "the pod is not scheduled to a node yet, and logs are kept by the node")
    relay = request.app.get(appkeys.LOG_RELAY)
    if relay is None:
        raise errors.BadRequest(f'container "{container}" in pod "{name}" has no logs here: logs are kept '
                                f'by the node agent of node "{node}", which this server cannot reach')
    return await relay(request, pod, container, node)


def node_endpoint(registry, node: str, purpose: str = "") -> tuple[str, int]:
    """The address of a node's agent endpoint (logs, exec, attach, port-forward): its Node's
    InternalIP and daemonEndpoints.kubeletEndpoint.Port."""
    node_obj = registry.store("", "nodes").try_get("", node)
    if node_obj is None:
        raise errors.NotFound.object("nodes", node)
    status = node_obj.get("status") or {}
    ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port"))
    if not ip or not port:
        raise errors.BadRequest(f'node "{node}" does not publish a kubelet endpoint' + (f" {purpose}" if purpose else ""))
    return ip, int(port)


def make_log_relay(pki):
    """A relay from `GET pods/x/log` to the kubelet log server of the pod's node.

    The node's address and port come from its Node object (InternalIP and
    daemonEndpoints.kubeletEndpoint.Port); the request carries that node's own token, which the
    kubelet accepts.
    """
    import aiohttp

    async def relay(request: web.Request, pod: dict, container: str, node: str) -> web.StreamResponse:
        ip, port = node_endpoint(request.app[appkeys.REGISTRY], node, "for logs")
        params = {k: request.query[k] for k in ("follow", "tailLines", "previous", "timestamps", "sinceSeconds",
                                                 "sinceTime", "limitBytes") if k in request.query}
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        url = f"http://{ip}:{port}/containerLogs/{ns}/{name}/{container}"
        headers = {"Authorization": f"Bearer {pki.node_token(node)}"}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url, params=params, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as upstream:
                    if upstream.status != 200:
                        body = await upstream.read()
                        try:
                            import orjson

                            st = orjson.loads(body)
                            msg = st.get("message") or body.decode(errors="replace")
                        except Exception:  # noqa: BLE001 - a plain-text kubelet error
                            msg = body.decode(errors="replace")
                        raise errors.BadRequest(msg.strip())
                    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
                    resp.enable_chunked_encoding()
                    await resp.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                    return resp
        except (aiohttp.ClientConnectionError, OSError) as e:
            raise errors.ServiceUnavailable(f'cannot reach the kubelet of node "{node}" at {ip}:{port}: {e}') \
                from None

    return relay
