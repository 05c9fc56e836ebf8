"""LIST paging and resourceVersion semantics through a real API server: kubectl's --chunk-size,
the official Python client's limit/_continue, 410/504/422/400 Statuses as upstream writes them."""

from __future__ import annotations

import threading
import urllib.parse

from apiclient import Api, pod, wait_until

from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.requires import require_module

MERGE = "application/merge-patch+json"


def _ns(api: Api, name: str) -> str:
    reply = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert reply.status in (201, 409), reply.body[:300]
    return f"/api/v1/namespaces/{name}"


def _configmap(name: str) -> dict:
    """An Endpoints object (the server alone makes none of its own, unlike kube-root-ca.crt ConfigMaps)."""
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name}}


def _query(**params) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


class _Relabeler:
    """Bumps the `gen` label of the last pod, then the first, then the last, ...: at any one
    revision gen(last) - gen(first) is 0 or 1. Pages read at different revisions (the first page
    early, the last late) see a larger gap as soon as the last pod was written twice meanwhile."""

    def __init__(self, server: ServerProcess, base: str, first: str, last: str) -> None:
        self.api = Api(server)
        self.base = base
        self.order = [last, first]
        self.stop = threading.Event()
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            name, gen = self.order[self.writes % 2], self.writes // 2 + 1
            reply = self.api.request("PATCH", f"{self.base}/pods/{name}",
                                     {"metadata": {"labels": {"gen": str(gen)}}}, content_type=MERGE)
            assert reply.status == 200, reply.body[:300]
            self.writes += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.api.close()


def test_kubectl_chunked_get_lists_every_pod_from_one_snapshot(server, kubectl, connect):
    api = connect(server)
    ns = "paging-" + kubectl.version.replace(".", "-")
    base = _ns(api, ns)
    for i in range(5):
        assert api.post(f"{base}/pods", pod(f"p{i}", {"gen": "0"})).status == 201
    out = kubectl.ok("get", "pods", "-n", ns, "--chunk-size=2", "-o", "name", "-v=6")
    assert out.split() == [f"pod/p{i}" for i in range(5)]
    chunked = kubectl.run("get", "pods", "-n", ns, "--chunk-size=2", "-v=6")
    requests = [line for line in chunked.stderr.splitlines() if "GET" in line and "/pods?" in line]
    assert len(requests) == 3 and all("limit=2" in r for r in requests), chunked.stderr
    assert sum("continue=" in r for r in requests) == 2
    # 30 pods in 15 pages, written meanwhile: every listing is one revision's state
    for i in range(5, 30):
        assert api.post(f"{base}/pods", pod(f"p{i}", {"gen": "0"})).status == 201
    with _Relabeler(server, base, "p0", "p9") as writer:  # p9 sorts last
        for _ in range(5):
            rows = kubectl.ok("get", "pods", "-n", ns, "--chunk-size=2", "-L", "gen", "--no-headers")
            gens = {line.split()[0]: int(line.split()[-1]) for line in rows.splitlines()}
            assert len(gens) == 30
            assert gens["p9"] - gens["p0"] in (0, 1), f"pages from different revisions: {gens}"
    assert writer.writes > 10


def test_python_client_pages_with_limit_and_continue(server, connect):
    require_module("kubernetes")
    from kubernetes import client, config

    api = connect(server)
    base = _ns(api, "paging-python")
    for i in range(5):
        assert api.post(f"{base}/endpoints", _configmap(f"cm-{i}")).status == 201
    v1 = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
    first = v1.list_namespaced_endpoints("paging-python", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    # written between pages: the rest of the list is still the first page's snapshot
    assert api.post(f"{base}/endpoints", _configmap("cm-15")).status == 201
    assert api.request("DELETE", f"{base}/endpoints/cm-4").status == 200
    names, token, rvs = [], first.metadata._continue, {first.metadata.resource_version}
    while token:
        page = v1.list_namespaced_endpoints("paging-python", limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token, _ = page.metadata._continue, rvs.add(page.metadata.resource_version)
    assert names == ["cm-2", "cm-3", "cm-4"] and len(rvs) == 1
    latest = v1.list_namespaced_endpoints("paging-python")
    assert [c.metadata.name for c in latest.items] == ["cm-0", "cm-1", "cm-15", "cm-2", "cm-3"]
    old = v1.list_namespaced_endpoints("paging-python", resource_version=first.metadata.resource_version,
                                        resource_version_match="Exact")
    assert "cm-4" in [c.metadata.name for c in old.items]


def test_list_resource_version_errors_are_upstreams(server, connect):
    api = connect(server)
    base = _ns(api, "paging-errors")
    for i in range(3):
        assert api.post(f"{base}/endpoints", _configmap(f"cm-{i}")).status == 201
    listing = api.get(f"{base}/endpoints").json()
    rv = int(listing["metadata"]["resourceVersion"])

    future = api.get(f"{base}/endpoints?" + _query(resourceVersion=rv + 1000, resourceVersionMatch="NotOlderThan"))
    status = future.json()
    assert future.status == 504 and status["reason"] == "Timeout"
    assert status["message"].startswith(f"Timeout: Too large resource version: {rv + 1000}, current: ")
    assert status["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                           "message": "Too large resource version"}]

    unmatched = api.get(f"{base}/endpoints?resourceVersionMatch=Exact")
    assert unmatched.status == 422 and unmatched.json()["reason"] == "Invalid"
    assert unmatched.json()["message"] == ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: '
                                           "Forbidden: resourceVersionMatch is forbidden unless resourceVersion "
                                           "is provided")

    bad = api.get(f"{base}/endpoints?continue=bm90LWEtdG9rZW4")
    assert bad.status == 400 and bad.json()["message"].startswith("invalid continue token: continue key is not valid")

    page = api.get(f"{base}/endpoints?limit=1").json()
    both = api.get(f"{base}/endpoints?" + _query(limit=1, resourceVersion=rv, **{"continue": page["metadata"]["continue"]}))
    assert both.status == 400
    assert both.json()["message"] == "specifying resource version is not allowed when using continue"

    full = api.get(f"{base}/endpoints?limit=1").json()
    assert full["metadata"]["remainingItemCount"] == 2
    table = api.request("GET", f"{base}/endpoints?limit=1", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert table["kind"] == "Table" and table["metadata"]["remainingItemCount"] == 2
    assert len(table["rows"]) == 1 and table["metadata"]["continue"]




def test_a_compacted_snapshot_is_410_with_a_token_to_go_on(compacting_server, connect):
    api = connect(compacting_server)
    base = _ns(api, "paging-compacted")
    for i in range(4):
        assert api.post(f"{base}/endpoints", _configmap(f"cm-{i}")).status == 201
    first = api.get(f"{base}/endpoints?limit=2").json()
    rv = first["metadata"]["resourceVersion"]
    assert api.post(f"{base}/endpoints", _configmap("cm-9")).status == 201

    def expired():
        reply = api.get(f"{base}/endpoints?" + _query(limit=2, **{"continue": first["metadata"]["continue"]}))
        return reply if reply.status == 410 else None
    reply = wait_until(expired, timeout=5, interval=0.1)
    assert reply is not None, "the first page's revision was never compacted"
    status = reply.json()
    assert status["reason"] == "Expired" and status["message"].startswith(
        "The provided continue parameter is too old to display a consistent list result.")
    rest = api.get(f"{base}/endpoints?" + _query(limit=10, **{"continue": status["metadata"]["continue"]}))
    assert rest.status == 200
    assert [o["metadata"]["name"] for o in rest.json()["items"]] == ["cm-2", "cm-3", "cm-9"]
    exact = api.get(f"{base}/endpoints?" + _query(resourceVersion=rv, resourceVersionMatch="Exact"))
    assert exact.status == 410 and exact.json()["message"] == "The resourceVersion for the provided list is too old."
