"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics), what `kubectl top` reads.

Upstream serves this API from metrics-server, an aggregated API server that scrapes every
kubelet every 15 s and keeps the last samples. Here the API server itself asks the nodes when a
request comes (each node agent's /stats/summary, the kubelet's Summary API, which computes the
CPU rate from its previous sample): no extra process, no APIService proxying, and numbers that
are never older than the request. Nodes that do not answer within SCRAPE_TIMEOUT are left out,
as metrics-server leaves out nodes it could not scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.quantity import fmt
from pocketkube.api.selectors.labels import LabelSelector
from pocketkube.api.timestamps import now_rfc3339

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
SCRAPE_TIMEOUT = 5.0
RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]


def _endpoint(node: dict) -> tuple[str, int] | None:
    status = node.get("status") or {}
    ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    return (ip, port) if ip and port else None


async def _scrape(session, node: dict, token: str) -> dict | None:
    endpoint = _endpoint(node)
    if endpoint is None:
        return None
    import aiohttp

    try:
        async with session.get(f"http://{endpoint[0]}:{endpoint[1]}/stats/summary",
                               headers={"Authorization": f"Bearer {token}"},
                               timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as r:
            if r.status != 200:
                return None
            return orjson.loads(await r.read())
    except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
        return None


async def scrape(nodes: list[dict], node_token: Callable[[str], str]) -> dict[str, dict]:
    """Each reachable node's summary, by node name."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(_scrape(session, n, node_token(n["metadata"]["name"])) for n in nodes))
    return {n["metadata"]["name"]: s for n, s in zip(nodes, results, strict=True) if isinstance(s, dict)}


def usage(stats: dict) -> dict[str, str]:
    """The usage map of a Summary entry: cpu in nanocores, memory working set in bytes (BinarySI)."""
    cpu = int((stats.get("cpu") or {}).get("usageNanoCores") or 0)
    memory = int((stats.get("memory") or {}).get("workingSetBytes") or 0)
    return {"cpu": f"{cpu}n", "memory": fmt(Fraction(memory), binary=True)}


def _meta(obj: dict, now: str) -> dict:
    m = obj["metadata"]
    out = {"name": m["name"], "creationTimestamp": now}
    if m.get("namespace"):
        out["namespace"] = m["namespace"]
    if m.get("labels"):
        out["labels"] = m["labels"]
    return out


def node_metrics(node: dict, summary: dict, now: str) -> dict:
    stats = summary.get("node") or {}
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": _meta(node, now),
            "timestamp": (stats.get("cpu") or {}).get("time") or now, "window": summary.get("window", "1s"),
            "usage": usage(stats)}


def pod_metrics(pod: dict, entry: dict, window: str, now: str) -> dict:
    return {"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": _meta(pod, now),
            "timestamp": (entry.get("cpu") or {}).get("time") or now, "window": window,
            "containers": [{"name": c.get("name", ""), "usage": usage(c)} for c in entry.get("containers") or []]}


def _selector(request: web.Request) -> LabelSelector | None:
    text = request.query.get("labelSelector", "")
    if not text:
        return None
    try:
        return LabelSelector.parse(text)
    except ValueError as e:
        raise errors.BadRequest(str(e)) from None


def _list(kind: str, items: list[dict]) -> dict:
    return {"kind": kind + "List", "apiVersion": API_VERSION, "metadata": {}, "items": items}


def _one_or_list(kind: str, name: str, shown: str, items: list[dict]) -> dict:
    """The named object (404 as metrics-server words it when there is none), else the list."""
    if not name:
        return _list(kind, items)
    if not items:
        plural = kind.lower()
        raise errors.NotFound(f'{plural}.metrics.k8s.io "{shown}" not found',
                              {"name": name, "group": GROUP, "kind": plural})
    return items[0]


async def serve(request: web.Request, path: str, registry, node_token: Callable[[str], str]) -> web.Response:
    """GET /apis/metrics.k8s.io/v1beta1/{nodes[/name] | [namespaces/ns/]pods[/name]}."""
    rest = path.strip("/").split("/")[3:]
    if request.method != "GET":
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in ("nodes", "pods") or len(rest) > 2 or (namespace and rest[0] == "nodes"):
        raise errors.NotFound.path()
    if request.query.get("watch") in ("true", "1"):
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
    name = rest[1] if len(rest) == 2 else ""
    selector = _selector(request)
    now = now_rfc3339()
    if rest[0] == "nodes":
        return _respond(await _nodes(registry, name, selector, node_token, now))
    return _respond(await _pods(registry, namespace, name, selector, node_token, now))


def _respond(body: dict) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _matches(obj: dict, selector: LabelSelector | None) -> bool:
    return selector is None or selector.matches(obj["metadata"].get("labels") or {})


async def _nodes(registry, name: str, selector, node_token, now: str) -> dict:
    store = registry.store("", "nodes")
    nodes = [n for n in store.list_objects() if (not name or n["metadata"]["name"] == name) and _matches(n, selector)]
    summaries = await scrape(nodes, node_token)
    items = [node_metrics(n, summaries[n["metadata"]["name"]], now) for n in nodes if n["metadata"]["name"] in summaries]
    return _one_or_list("NodeMetrics", name, name, items)


async def _pods(registry, namespace: str, name: str, selector, node_token, now: str) -> dict:
    pods = [p for p in registry.store("", "pods").list_objects(namespace)
            if (not name or p["metadata"]["name"] == name) and _matches(p, selector)
            and (p.get("spec") or {}).get("nodeName") and (p.get("status") or {}).get("phase") == "Running"]
    wanted = {p["spec"]["nodeName"] for p in pods}
    nodes = [n for n in registry.store("", "nodes").list_objects() if n["metadata"]["name"] in wanted]
    summaries = await scrape(nodes, node_token)
    entries = {}
    for node_name, summary in summaries.items():
        for entry in summary.get("pods") or []:
            entries[(entry.get("podRef") or {}).get("uid")] = (entry, summary.get("window", "1s"), node_name)
    items = []
    for p in pods:
        found = entries.get(p["metadata"]["uid"])
        if found is not None and found[2] == p["spec"]["nodeName"]:
            items.append(pod_metrics(p, found[0], found[1], now))
    return _one_or_list("PodMetrics", name, f"{namespace}/{name}", items)
