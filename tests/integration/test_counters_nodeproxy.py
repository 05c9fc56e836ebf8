"""nodes/proxy on a real API server: `GET /api/v1/nodes/<node>/proxy/metrics` relayed to the node's
agent endpoint with the node's token; HEAD too; other methods 405; authorized as `get nodes/proxy`
(cluster-admin yes, view no); only the agent's read endpoints are relayed."""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from apiclient import Api

from pocketkube.apiserver.pki import PKI
from pocketkube.testing.procs import ServerProcess

NODE = "ctr-proxy-node"
METRICS = b'pocketkube_proxy_entry_connections_total{node="ctr-proxy-node"} 3.0\n'


def fake_agent(token: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's spelling
            ok = self.headers.get("Authorization") == f"Bearer {token}"
            body = (METRICS if self.path == "/metrics" else b'{"node": "x"}') if ok else b"Unauthorized"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "text/plain; version=0.0.4" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def env() -> Iterator[tuple[Api, str]]:
    root = Path(tempfile.mkdtemp(prefix="pk-nodeproxy-"))
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir()
    pki = PKI(server.data_dir)
    pki.ensure(["127.0.0.1"])
    viewer = pki.user_token("viewer")
    agent = fake_agent(pki.node_token(NODE))
    try:
        server.start()
        api = Api(server)
        try:
            r = api.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
            assert r.status == 201, r.body
            node = r.json()
            node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.server_address[1]}}}
            assert api.request("PUT", f"/api/v1/nodes/{NODE}/status", node).status == 200
            binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": "viewer-view"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}]}
            assert api.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding).status == 201
            yield api, viewer
        finally:
            api.close()
            server.stop()
    finally:
        agent.shutdown()
        agent.server_close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def proxied():
    with env() as pair:
        yield pair


def test_get_and_head_relay_the_agents_metrics(proxied):
    api, _ = proxied
    r = api.get(f"/api/v1/nodes/{NODE}/proxy/metrics")
    assert r.status == 200 and r.body == METRICS
    assert dict(r.headers)["Content-Type"].startswith("text/plain")
    head = api.request("HEAD", f"/api/v1/nodes/{NODE}/proxy/metrics")
    assert head.status == 200 and head.body == b""
    assert api.get(f"/api/v1/nodes/{NODE}/proxy/proxy/traffic").status == 200


def test_other_methods_paths_and_nodes_are_refused_with_a_status(proxied):
    api, _ = proxied
    r = api.post(f"/api/v1/nodes/{NODE}/proxy/metrics", {})
    assert r.status == 405 and r.json()["reason"] == "MethodNotAllowed"
    assert dict(r.headers)["Allow"] == "GET, HEAD"
    assert api.get(f"/api/v1/nodes/{NODE}/proxy/containerLogs/default/p/c").status == 404
    r = api.get("/api/v1/nodes/no-such-node/proxy/metrics")
    assert r.status == 404 and r.json()["message"] == 'nodes "no-such-node" not found'


def test_view_may_not_get_nodes_proxy(proxied):
    api, viewer = proxied
    r = api.request("GET", f"/api/v1/nodes/{NODE}/proxy/metrics", token=viewer)
    assert r.status == 403
    assert 'cannot get resource "nodes/proxy"' in r.json()["message"]


def test_discovery_lists_nodes_proxy(proxied):
    api, _ = proxied
    resources = {r["name"]: r for r in api.get("/api/v1").json()["resources"]}
    assert resources["nodes/proxy"]["verbs"] == ["get"] and resources["nodes/proxy"]["kind"] == "NodeProxyOptions"
