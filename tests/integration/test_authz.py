"""Authorization against a real server: nodes get the Node authorizer's rules and
NodeRestriction; everyone else but system:masters is refused with Kubernetes' 403; the
self-reviews answer `kubectl auth can-i` and `kubectl auth whoami`."""

import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from apiclient import PODS, Api, pod

from pocketkube.apiserver.authz import User, denial, request_attributes
from pocketkube.apiserver.pki import PKI, kubeconfig, write_kubeconfig
from pocketkube.testing.procs import Kubectl, ServerProcess, kubectl_binaries

NODES = "/api/v1/nodes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def server():
    """A server whose data dir already holds two node credentials (as `up` prepares them)."""
    root = Path(tempfile.mkdtemp(prefix="pk-authz-"))
    s = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    s.data_dir.mkdir()
    pki = PKI(s.data_dir)
    pki.ensure(["127.0.0.1"])
    s.node_tokens = {n: pki.node_token(n) for n in ("node-1", "node-2")}
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def node1(server, connect) -> Api:
    api = connect(server)
    api.token = server.node_tokens["node-1"]
    return api


def node_obj(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def lease(name: str, namespace: str = "kube-node-lease") -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"holderIdentity": name}}


def bound_pod(api: Api, name: str, node: str) -> None:
    body = pod(name)
    body["spec"]["nodeName"] = node
    r = api.post(PODS, body)
    assert r.status == 201, r.body


def forbidden(r, message: str, name: str, kind: str, group: str = "") -> None:
    assert r.status == 403, r.body
    st = r.json()
    assert st["reason"] == "Forbidden" and st["code"] == 403
    assert st["message"] == message
    details = {k: v for k, v in (("name", name), ("group", group), ("kind", kind)) if v}  # omitempty
    assert st["details"] == details


# ---- request attributes (unit) ----

@pytest.mark.parametrize("method,path,watch,expect", [
    ("GET", "/api/v1/namespaces/default/pods", False, ("list", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", True, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods/p", False, ("watch", "", "pods", "", "ns", "p")),
    ("PATCH", "/api/v1/namespaces/ns/pods/p/status", False, ("patch", "", "pods", "status", "ns", "p")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", False, ("deletecollection", "apps", "deployments", "",
                                                                   "ns", "")),
    ("GET", "/api/v1/namespaces/kube-system", False, ("get", "", "namespaces", "", "kube-system", "kube-system")),
    ("PUT", "/api/v1/namespaces/x/finalize", False, ("update", "", "namespaces", "finalize", "x", "x")),
    ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", False,
     ("create", "coordination.k8s.io", "leases", "", "kube-node-lease", "")),
])
def test_request_attributes(method, path, watch, expect):
    a = request_attributes(User("u", ()), method, path, watch)
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expect


def test_non_resource_denial_message():
    a = request_attributes(User("system:node:n", ("system:nodes",)), "GET", "/metrics", False)
    assert a.path == "/metrics" and not a.is_resource_request
    e = denial(a)
    assert e.message == 'forbidden: User "system:node:n" cannot get path "/metrics"' and e.details == {}


# ---- nodes: what they may do ----

def test_node_registers_itself_and_renews_its_lease(node1):
    r = node1.post(NODES, node_obj("node-1"))
    assert r.status == 201, r.body
    r = node1.request("PATCH", f"{NODES}/node-1/status", {"status": {"capacity": {"cpu": "2"}}},
                      content_type=MERGE)
    assert r.status == 200, r.body
    r = node1.post(LEASES, lease("node-1"))
    assert r.status == 201, r.body
    r = node1.request("PATCH", f"{LEASES}/node-1", {"spec": {"leaseDurationSeconds": 40}}, content_type=MERGE)
    assert r.status == 200, r.body
    for path in (NODES, PODS, "/api/v1/services", "/api/v1/endpoints", "/api/v1/namespaces",
                 "/apis/discovery.k8s.io/v1/endpointslices", f"{LEASES}/node-1", "/api", "/apis/apps/v1"):
        assert node1.get(path).status == 200, path


def test_node_writes_status_and_deletes_only_its_own_pods(api, node1):
    bound_pod(api, "mine", "node-1")
    bound_pod(api, "theirs", "node-2")
    r = node1.request("PATCH", f"{PODS}/mine/status", {"status": {"phase": "Running"}}, content_type=MERGE)
    assert r.status == 200, r.body
    r = node1.request("PATCH", f"{PODS}/theirs/status", {"status": {"phase": "Running"}}, content_type=MERGE)
    forbidden(r, 'pods "theirs" is forbidden: node "node-1" can only update pod status for pods with '
                 'spec.nodeName set to itself', "theirs", "pods")
    r = node1.request("DELETE", f"{PODS}/theirs")
    forbidden(r, 'pods "theirs" is forbidden: node "node-1" can only delete pods with spec.nodeName set to itself',
              "theirs", "pods")
    assert node1.request("DELETE", f"{PODS}/mine").status == 200
    assert node1.request("DELETE", f"{PODS}/gone").status == 404


def test_node_creates_and_patches_events(node1):
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
          "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"}, "reason": "Started"}
    assert node1.post("/api/v1/namespaces/default/events", ev).status == 201
    r = node1.request("PATCH", "/api/v1/namespaces/default/events/e1", {"count": 2}, content_type=MERGE)
    assert r.status == 200, r.body


# ---- nodes: what they may not do ----

def test_node_may_not_touch_another_node(api, node1):
    assert api.post(NODES, node_obj("node-2")).status == 201
    msg = 'nodes "node-2" is forbidden: node "node-1" is not allowed to modify node "node-2"'
    forbidden(node1.post(NODES, node_obj("node-2")), msg, "node-2", "nodes")
    forbidden(node1.request("PATCH", f"{NODES}/node-2", {"metadata": {"labels": {"a": "b"}}},
                            content_type=MERGE), msg, "node-2", "nodes")
    forbidden(node1.request("PATCH", f"{NODES}/node-2/status", {"status": {}}, content_type=MERGE),
              msg, "node-2", "nodes")
    forbidden(node1.request("DELETE", f"{NODES}/node-2"), msg, "node-2", "nodes")
    assert api.get(f"{NODES}/node-2").status == 200


def test_node_may_not_steer_workloads_to_itself(api, node1):
    api.post(NODES, node_obj("node-1"))  # registered already, or now
    labels = {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "example.com/ok": "1"}}}
    forbidden(node1.request("PATCH", f"{NODES}/node-1", labels, content_type=MERGE),
              'nodes "node-1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane',
              "node-1", "nodes")
    taints = {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}
    forbidden(node1.request("PATCH", f"{NODES}/node-1", taints, content_type=MERGE),
              'nodes "node-1" is forbidden: node "node-1" is not allowed to modify taints', "node-1", "nodes")
    current = node1.get(f"{NODES}/node-1").json()
    current.setdefault("spec", {})["taints"] = taints["spec"]["taints"]
    assert node1.request("PUT", f"{NODES}/node-1", current).status == 403
    allowed = {"metadata": {"labels": {"kubernetes.io/hostname": "node-1", "node.kubernetes.io/instance-type": "x",
                                       "example.com/ok": "1"}}}
    r = node1.request("PATCH", f"{NODES}/node-1", allowed, content_type=MERGE)
    assert r.status == 200, r.body
    assert api.request("PATCH", f"{NODES}/node-1", taints, content_type=MERGE).status == 200  # the admin may
    r = node1.request("PATCH", f"{NODES}/node-1/status", {"status": {"phase": "Running"}}, content_type=MERGE)
    assert r.status == 200, r.body  # a status write keeps the taints it cannot change
    api.request("DELETE", f"{NODES}/node-1")
    r = node1.post(NODES, {**node_obj("node-1"), "metadata": {
        "name": "node-1", "labels": {"node-restriction.kubernetes.io/pool": "a", "kubernetes.io/os": "linux"}}})
    forbidden(r, 'nodes "node-1" is forbidden: node "node-1" is not allowed to set the following labels: '
                 "node-restriction.kubernetes.io/pool", "node-1", "nodes")
    assert node1.post(NODES, node_obj("node-1")).status == 201


def test_node_leases_are_its_own_and_in_the_lease_namespace(node1):
    group = "coordination.k8s.io"
    forbidden(node1.post(LEASES, lease("node-2")),
              'leases.coordination.k8s.io "node-2" is forbidden: can only access node lease with the same name '
              "as the requesting node", "node-2", "leases", group)
    r = node1.post("/apis/coordination.k8s.io/v1/namespaces/default/leases", lease("node-1", "default"))
    forbidden(r, 'leases.coordination.k8s.io "node-1" is forbidden: can only access leases in the '
                 '"kube-node-lease" system namespace', "node-1", "leases", group)


def test_node_rbac_denials_read_like_kubernetes(api, node1):
    bound_pod(api, "victim", "node-1")
    r = node1.request("PUT", f"{PODS}/victim", pod("victim"))
    forbidden(r, 'pods "victim" is forbidden: User "system:node:node-1" cannot update resource "pods" in API '
                 'group "" in the namespace "default"', "victim", "pods")
    r = node1.post("/apis/apps/v1/namespaces/default/deployments", {})
    forbidden(r, 'deployments.apps is forbidden: User "system:node:node-1" cannot create resource "deployments" '
                 'in API group "apps" in the namespace "default"', "", "deployments", "apps")
    r = node1.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    forbidden(r, 'namespaces is forbidden: User "system:node:node-1" cannot create resource "namespaces" in API '
                 'group "" at the cluster scope', "", "namespaces")
    r = node1.request("DELETE", "/api/v1/namespaces/default/services/kubernetes")
    forbidden(r, 'services "kubernetes" is forbidden: User "system:node:node-1" cannot delete resource '
                 '"services" in API group "" in the namespace "default"', "kubernetes", "services")
    r = node1.request("DELETE", PODS)
    assert r.status == 403 and "cannot deletecollection resource" in r.json()["message"]
    r = node1.post(f"{PODS}/victim/binding", {"target": {"name": "node-1"}})
    assert r.status == 403 and 'cannot create resource "pods/binding"' in r.json()["message"]
    r = node1.post(PODS, pod("made-by-node"))
    forbidden(r, 'pods "made-by-node" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
                 'node "node-1" can only create mirror pods', "made-by-node", "pods")
    assert node1.get(f"{PODS}/victim/log").status == 403
    assert api.get(f"{PODS}/victim").status == 200


def test_node_may_not_use_a_forbidden_body_to_hide_the_name(node1):
    r = node1.post(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"generateName": "node-"}})
    forbidden(r, 'nodes is forbidden: node "node-1" is not allowed to modify node ""', "", "nodes")
    r = node1.post(NODES, b"{not json")
    assert r.status == 400


def test_unauthenticated_and_wrong_token(api):
    assert api.request("GET", PODS, token="").status == 401
    assert api.request("GET", PODS, token="nope").status == 401
    assert api.request("GET", "/healthz", token="").status == 200


# ---- self reviews ----

def test_self_subject_access_review(api, node1):
    def review(client: Api, attrs: dict) -> dict:
        r = client.post(SSAR, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                               "spec": {"resourceAttributes": attrs}})
        assert r.status == 201, r.body
        body = r.json()
        assert body["kind"] == "SelfSubjectAccessReview" and body["spec"]["resourceAttributes"] == attrs
        return body["status"]
    assert review(api, {"verb": "delete", "resource": "nodes"})["allowed"] is True
    assert review(node1, {"verb": "delete", "resource": "nodes"})["allowed"] is True  # RBAC; admission narrows
    assert review(node1, {"verb": "create", "resource": "deployments", "group": "apps"})["allowed"] is False
    assert review(node1, {"verb": "patch", "resource": "pods", "subresource": "status",
                          "namespace": "default"})["allowed"] is True
    r = api.post(SSAR, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {}})
    assert r.status == 422 and r.json()["reason"] == "Invalid"
    assert api.get(f"{PODS}").status == 200  # nothing stored, nothing broken


@pytest.fixture
def node_kubeconfig(server, tmp_path) -> Path:
    path = tmp_path / "node-1.kubeconfig"
    write_kubeconfig(path, kubeconfig(server.url, server.ca_file.read_text(), server.node_tokens["node-1"]))
    return path


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_kubectl_auth_can_i_and_whoami(server, node_kubeconfig, binary, tmp_path):
    admin = Kubectl(kubectl_binaries()[binary], server.kubeconfig, cwd=tmp_path)
    node = Kubectl(kubectl_binaries()[binary], node_kubeconfig, cwd=tmp_path)
    try:
        cp = admin.run("auth", "can-i", "create", "pods")
        assert (cp.returncode, cp.stdout.strip()) == (0, "yes"), cp.stderr
        cp = node.run("auth", "can-i", "create", "deployments")
        assert (cp.returncode, cp.stdout.strip()) == (1, "no"), cp.stderr
        cp = node.run("auth", "can-i", "patch", "pods", "--subresource=status")
        assert (cp.returncode, cp.stdout.strip()) == (0, "yes"), cp.stderr
        cp = node.run("auth", "can-i", "--list")
        assert cp.returncode == 0, cp.stderr
        assert "leases.coordination.k8s.io" in cp.stdout and "selfsubjectaccessreviews" in cp.stdout
        cp = node.run("auth", "whoami", "-o", "yaml")
        assert cp.returncode == 0, cp.stderr
        info = yaml.safe_load(cp.stdout)["status"]["userInfo"]
        assert info == {"username": "system:node:node-1", "groups": ["system:nodes", "system:authenticated"]}
        as_node = ("--as=system:node:node-1", "--as-group=system:nodes")
        cp = admin.run("auth", "can-i", "create", "deployments", *as_node)
        assert (cp.returncode, cp.stdout.strip()) == (1, "no"), cp.stderr
        cp = admin.run("auth", "can-i", "get", "nodes", *as_node)
        assert (cp.returncode, cp.stdout.strip()) == (0, "yes"), cp.stderr
        cp = admin.run("get", "deployments", *as_node)
        assert cp.returncode == 1 and 'User "system:node:node-1" cannot list resource "deployments"' in cp.stderr
        cp = node.run("get", "pods", "--as=kubernetes-admin", "--as-group=system:masters")
        assert cp.returncode == 1 and 'User "system:node:node-1" cannot impersonate resource "users"' in cp.stderr
        cp = node.run("delete", "service", "kubernetes")
        assert cp.returncode == 1
        assert 'Error from server (Forbidden): services "kubernetes" is forbidden: User "system:node:node-1" ' \
               'cannot delete resource "services" in API group "" in the namespace "default"' in cp.stderr
    finally:
        admin.close()
        node.close()
