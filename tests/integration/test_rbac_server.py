"""RBAC against a real server: the bootstrap policy is there at start; a user bound to a Role
may do what it grants and nothing else (403s worded as upstream's); escalation is refused;
bad RBAC objects are 422; access reviews and `kubectl auth can-i` answer from RBAC."""

import shutil
import tempfile
from pathlib import Path

import pytest
from apiclient import PODS, Api, pod

from pocketkube.apiserver.pki import PKI, kubeconfig, write_kubeconfig
from pocketkube.testing.procs import Kubectl, ServerProcess, kubectl_binaries

G = "rbac.authorization.k8s.io"
RBAC = f"/apis/{G}/v1"
NS = "default"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-rbac-"))
    s = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    s.data_dir.mkdir()
    pki = PKI(s.data_dir)
    pki.ensure(["127.0.0.1"])
    s.user_tokens = {u: pki.user_token(u, ["devs"]) for u in ("alice", "carol")}
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def as_user(server, connect, name: str) -> Api:
    api = connect(server)
    api.token = server.user_tokens[name]
    return api


@pytest.fixture
def alice(server, connect) -> Api:
    return as_user(server, connect, "alice")


def rule(verbs: str, resources: str, group: str = "") -> dict:
    return {"verbs": verbs.split(), "apiGroups": [group], "resources": resources.split()}


def role(name: str, rules: list[dict]) -> dict:
    return {"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules}


def binding(name: str, ref_kind: str, ref: str, subjects: list[dict], kind: str = "RoleBinding") -> dict:
    return {"apiVersion": f"{G}/v1", "kind": kind, "metadata": {"name": name},
            "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref}, "subjects": subjects}


def ensure(api: Api, path: str, obj: dict) -> None:
    r = api.post(path, obj)
    assert r.status in (201, 409), r.body


def test_bootstrap_policy_exists(api):
    r = api.get(f"{RBAC}/clusterroles/cluster-admin")
    assert r.status == 200
    obj = r.json()
    assert obj["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"
    assert obj["rules"][0] == {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    crb = api.get(f"{RBAC}/clusterrolebindings/cluster-admin").json()
    assert crb["subjects"] == [{"apiGroup": G, "kind": "Group", "name": "system:masters"}]
    names = {i["metadata"]["name"] for i in api.get(f"{RBAC}/clusterroles").json()["items"]}
    assert {"admin", "edit", "view", "system:kube-scheduler", "system:controller:deployment-controller"} <= names


def test_a_role_grants_what_it_says_and_nothing_else(api, alice):
    r = alice.get(f"/api/v1/namespaces/{NS}/pods")
    assert r.status == 403
    assert r.json()["message"] == ('pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
                                   'in the namespace "default"')
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("pod-reader", [rule("get list watch", "pods")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("alice-reads", "Role", "pod-reader", [{"kind": "User", "name": "alice"}]))
    assert api.post(PODS, pod("p1")).status in (201, 409)
    assert alice.get(f"/api/v1/namespaces/{NS}/pods").status == 200
    assert alice.get(f"/api/v1/namespaces/{NS}/pods/p1").status == 200
    assert alice.get("/api/v1/namespaces/kube-system/pods").status == 403
    r = alice.request("DELETE", f"/api/v1/namespaces/{NS}/pods/p1")
    assert r.status == 403
    assert r.json()["message"] == ('pods "p1" is forbidden: User "alice" cannot delete resource "pods" in API '
                                   'group "" in the namespace "default"')
    # removing the binding takes the rights away at once
    assert api.request("DELETE", f"{RBAC}/namespaces/{NS}/rolebindings/alice-reads").status == 200
    assert alice.get(f"/api/v1/namespaces/{NS}/pods").status == 403


def test_escalation_is_refused(api, connect, server):
    carol = as_user(server, connect, "carol")
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("role-writer", [rule("get create update", "roles", G),
                                                                       rule("create", "rolebindings", G),
                                                                       rule("get", "pods")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("carol-writes", "Role", "role-writer", [{"kind": "User", "name": "carol"}]))
    r = carol.post(f"{RBAC}/namespaces/{NS}/roles", role("too-much", [rule("get delete", "pods")]))
    assert r.status == 403, r.body
    assert r.json()["message"] == (
        'roles.rbac.authorization.k8s.io "too-much" is forbidden: user "carol" (groups=["devs" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    r = carol.post(f"{RBAC}/namespaces/{NS}/roles", role("just-right", [rule("get", "pods")]))
    assert r.status in (201, 409), r.body
    r = carol.post(f"{RBAC}/namespaces/{NS}/rolebindings",
                   binding("to-admin", "ClusterRole", "cluster-admin", [{"kind": "User", "name": "carol"}]))
    assert r.status == 403 and "attempting to grant RBAC permissions not currently held" in r.json()["message"]
    r = carol.post(f"{RBAC}/namespaces/{NS}/rolebindings",
                   binding("to-reader", "Role", "just-right", [{"kind": "User", "name": "carol"}]))
    assert r.status in (201, 409), r.body


def test_bad_rbac_objects_are_422(api):
    r = api.post(f"{RBAC}/namespaces/{NS}/roles", role("bad", [{"apiGroups": [""], "resources": ["pods"]}]))
    assert r.status == 422
    assert r.json()["message"] == ('Role.rbac.authorization.k8s.io "bad" is invalid: rules[0].verbs: Required '
                                   'value: verbs must contain at least one value')
    b = binding("bad", "Role", "x", [{"kind": "Robot", "name": "r"}])
    r = api.post(f"{RBAC}/namespaces/{NS}/rolebindings", b)
    assert r.status == 422 and 'subjects[0].kind: Unsupported value: "Robot"' in r.json()["message"]
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings", binding("fixed", "Role", "x", []))
    r = api.request("PATCH", f"{RBAC}/namespaces/{NS}/rolebindings/fixed", {"roleRef": {"name": "y"}},
                    content_type="application/merge-patch+json")
    assert r.status == 422 and "roleRef: Invalid value" in r.json()["message"] and "cannot change roleRef" in r.json()["message"]


def test_subject_access_review(api, alice):
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("sa-reader", [rule("get", "configmaps")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("sa-reads", "Role", "sa-reader", [{"kind": "ServiceAccount", "name": "robot"}]))
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": "system:serviceaccount:default:robot",
                       "groups": ["system:serviceaccounts", "system:serviceaccounts:default"],
                       "resourceAttributes": {"verb": "get", "resource": "configmaps", "namespace": NS}}}
    r = api.post(SAR, review)
    assert r.status == 201 and r.json()["status"]["allowed"] is True
    review["spec"]["resourceAttributes"]["verb"] = "delete"
    assert api.post(SAR, review).json()["status"]["allowed"] is False
    assert alice.post(SAR, review).status == 403  # only who may create SubjectAccessReviews asks about others
    r = api.post(SAR, {"spec": {"resourceAttributes": {"verb": "get"}}})
    assert r.status == 422 and "at least one of user or group must be specified" in r.json()["message"]


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_kubectl_auth_can_i(server, api, binary, tmp_path):
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("pod-getter", [rule("get", "pods")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("builder-gets", "Role", "pod-getter", [{"kind": "ServiceAccount", "name": "builder"}]))
    path = tmp_path / "alice.kubeconfig"
    write_kubeconfig(path, kubeconfig(server.url, server.ca_file.read_text(), server.user_tokens["alice"]))
    admin = Kubectl(kubectl_binaries()[binary], server.kubeconfig, cwd=tmp_path)
    alice = Kubectl(kubectl_binaries()[binary], path, cwd=tmp_path)
    sa = "--as=system:serviceaccount:default:builder"
    try:
        cp = admin.run("auth", "can-i", "get", "pods", sa)
        assert (cp.returncode, cp.stdout.strip()) == (0, "yes"), cp.stderr
        cp = admin.run("auth", "can-i", "delete", "pods", sa)
        assert (cp.returncode, cp.stdout.strip()) == (1, "no"), cp.stderr
        cp = admin.run("auth", "can-i", "get", "pods", "-n", "kube-system", sa)
        assert (cp.returncode, cp.stdout.strip()) == (1, "no"), cp.stderr
        cp = admin.run("auth", "can-i", "get", "pods", "--as=dave", "--as-group=system:masters")
        assert (cp.returncode, cp.stdout.strip()) == (0, "yes"), cp.stderr
        cp = admin.run("get", "pods", sa)
        assert cp.returncode == 1 and 'User "system:serviceaccount:default:builder" cannot list resource "pods"' \
            in cp.stderr
        cp = admin.run("auth", "can-i", "--list", sa)
        assert cp.returncode == 0, cp.stderr
        assert any(line.split()[:1] == ["pods"] and "[get]" in line for line in cp.stdout.splitlines()), cp.stdout
        cp = alice.run("auth", "can-i", "get", "pods")
        assert (cp.returncode, cp.stdout.strip()) == (1, "no"), cp.stderr
        cp = alice.run("get", "pods", "--as=system:serviceaccount:default:builder")
        assert cp.returncode == 1 and 'User "alice" cannot impersonate resource "serviceaccounts"' in cp.stderr
        cp = admin.run("get", "roles", "-o", "wide")
        assert cp.returncode == 0 and cp.stdout.split("\n")[0].split() == ["NAME", "CREATED", "AT"], cp.stdout
        cp = admin.run("get", "rolebindings", "-o", "wide")
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.split("\n")[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        assert any(line.split()[:2] == ["builder-gets", "Role/pod-getter"] and "/builder" in line
                   for line in cp.stdout.splitlines()), cp.stdout
    finally:
        admin.close()
        alice.close()


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_kubectl_create_rbac_objects(server, api, binary, tmp_path):
    """kubectl's generators send these as protobuf; what is stored is what JSON would give."""
    admin = Kubectl(kubectl_binaries()[binary], server.kubeconfig, cwd=tmp_path)
    tag = binary.replace(".", "-").replace("kubectl-", "")
    try:
        admin.ok("create", "role", f"reader-{tag}", "--verb=get,list", "--resource=pods,deployments.apps",
                 "--resource-name=p1")
        r = api.get(f"{RBAC}/namespaces/{NS}/roles/reader-{tag}").json()
        assert r["rules"] == [
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"]},
            {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["p1"]}]
        admin.ok("create", "clusterrole", f"urls-{tag}", "--verb=get", "--non-resource-url=/logs/*")
        r = api.get(f"{RBAC}/clusterroles/urls-{tag}").json()
        assert r["rules"] == [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]
        admin.ok("create", "clusterrole", f"agg-{tag}", "--aggregation-rule=team=a")
        r = api.get(f"{RBAC}/clusterroles/agg-{tag}").json()
        assert r["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"team": "a"}}]}
        admin.ok("create", "rolebinding", f"rb-{tag}", f"--role=reader-{tag}", "--user=u1", "--group=g1",
                 "--serviceaccount=default:sa1")
        r = api.get(f"{RBAC}/namespaces/{NS}/rolebindings/rb-{tag}").json()
        assert r["roleRef"] == {"apiGroup": G, "kind": "Role", "name": f"reader-{tag}"}
        assert r["subjects"] == [{"kind": "User", "apiGroup": G, "name": "u1"},
                                 {"kind": "Group", "apiGroup": G, "name": "g1"},
                                 {"kind": "ServiceAccount", "name": "sa1", "namespace": "default"}]
        admin.ok("create", "clusterrolebinding", f"crb-{tag}", f"--clusterrole=urls-{tag}", "--user=u2")
        out = admin.ok("get", "clusterrolebinding", f"crb-{tag}", "-o", "wide")
        assert out.split("\n")[1].split()[:2] == [f"crb-{tag}", f"ClusterRole/urls-{tag}"] and "u2" in out
        manifest = tmp_path / "rbac.yaml"
        manifest.write_text(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reconciled-{tag}, namespace: default}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reconciled-{tag}, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reconciled-{tag}}}
subjects: [{{kind: User, name: u3, apiGroup: rbac.authorization.k8s.io}}]
""")
        out = admin.ok("auth", "reconcile", "-f", str(manifest))
        assert f"role.rbac.authorization.k8s.io/reconciled-{tag} reconciled" in out, out
        cp = admin.run("auth", "can-i", "get", "configmaps", "--as=u3")
        assert cp.stdout.strip() == "yes", cp.stderr
        cp = admin.run("create", "role", f"bad-{tag}", "--verb=get", "--resource=pods", "--dry-run=server",
                       "--as=nobody")
        assert cp.returncode == 1 and "Forbidden" in cp.stderr
        cp = admin.run("create", "clusterrolebinding", f"bad-{tag}", f"--clusterrole=urls-{tag}",
                       "--serviceaccount=nons")
        assert cp.returncode == 1
    finally:
        admin.close()


def test_escalation_through_patch_and_apply_is_refused(api, connect, server):
    carol = as_user(server, connect, "carol")
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("role-patcher", [rule("get create patch", "roles", G),
                                                                        rule("get", "pods")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("carol-patches", "Role", "role-patcher", [{"kind": "User", "name": "carol"}]))
    ensure(carol, f"{RBAC}/namespaces/{NS}/roles", role("mine", [rule("get", "pods")]))
    r = carol.request("PATCH", f"{RBAC}/namespaces/{NS}/roles/mine", {"rules": [rule("get delete", "pods")]},
                      content_type="application/merge-patch+json")
    assert r.status == 403 and "attempting to grant RBAC permissions not currently held" in r.json()["message"]
    applied = role("applied", [rule("*", "*")])
    r = carol.request("PATCH", f"{RBAC}/namespaces/{NS}/roles/applied?fieldManager=carol", applied,
                      content_type="application/apply-patch+yaml")
    assert r.status == 403 and "attempting to grant RBAC permissions not currently held" in r.json()["message"]
    assert api.get(f"{RBAC}/namespaces/{NS}/roles/applied").status == 404


def test_the_policy_index_is_rebuilt_at_a_restart(server, api, connect):
    """(Last in the module: it restarts the shared server.) The index is rebuilt from storage."""
    ensure(api, f"{RBAC}/namespaces/{NS}/roles", role("svc-reader", [rule("get", "services")]))
    ensure(api, f"{RBAC}/namespaces/{NS}/rolebindings",
           binding("devs-read-services", "Role", "svc-reader", [{"kind": "Group", "name": "devs"}]))
    api.close()
    server.stop()
    server.start(port=0)
    alice = as_user(server, connect, "alice")
    assert alice.get(f"/api/v1/namespaces/{NS}/services/kubernetes").status == 200
    assert alice.get("/api/v1/namespaces/kube-system/services").status == 403
