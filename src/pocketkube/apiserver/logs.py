"""Pod logs: served by the node agent that runs the pod; the API server relays them."""

from __future__ import annotations

from aiohttp import web

from pocketkube.api import errors


def _container(pod: dict, requested: str | None) -> str:
    containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    name = pod["metadata"].get("name", "")
    if requested:
        if requested not in containers:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    raise errors.BadRequest(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")


async def serve_pod_log(request: web.Request, registry, pod: dict) -> web.StreamResponse:
    container = _container(pod, request.query.get("container"))
    node = (pod.get("spec") or {}).get("nodeName")
    name = pod["metadata"]["name"]
    if not node:
        raise errors.BadRequest(f'container "{container}" in pod "{name}" is waiting to start: '
                                "the pod is not scheduled to a node yet, and logs are kept by the node")
    relay = request.app.get("log_relay")
    if relay is None:
        raise errors.BadRequest(f'container "{container}" in pod "{name}" has no logs here: logs are kept '
                                f'by the node agent of node "{node}", which this server cannot reach')
    return await relay(request, pod, container, node)
