"""Service-account tokens against a real server: `kubectl create token` (1.32 and the bundled
kubectl), tokens used as bearer credentials (`kubectl --token ... auth whoami`), the 401s for
expired, not-yet-valid, wrong-audience, forged and orphaned tokens, TokenReview, the ServiceAccount
admission at pod create, and the official Python client (TokenRequest, in-cluster config)."""

import base64
import json
import shutil
import tempfile
import time
from pathlib import Path

import jwt
import pytest
import yaml
from apiclient import Api
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pocketkube.apiserver.pki import PKI
from pocketkube.apiserver.satoken import ISSUER
from pocketkube.testing.procs import Kubectl, ServerProcess, kubectl_binaries
from pocketkube.testing.requires import require_module

SAS = "/api/v1/namespaces/default/serviceaccounts"
PODS = "/api/v1/namespaces/default/pods"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-tokens-"))
    s = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    s.data_dir.mkdir()
    pki = PKI(s.data_dir)
    pki.ensure(["127.0.0.1"])
    s.node_token = pki.node_token("node-1")
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def service_account(api: Api, name: str) -> dict:
    r = api.post(SAS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    assert r.status in (201, 409), r.body
    return api.get(f"{SAS}/{name}").json()


def request_token(api: Api, sa: str, spec: dict | None = None) -> str:
    r = api.post(f"{SAS}/{sa}/token", {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                       "spec": spec or {}})
    assert r.status == 201, r.body
    return r.json()["status"]["token"]


def whoami(api: Api, token: str):
    return api.post(SSR, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, token=token)


def mint(server: ServerProcess, sa: dict, key=None, **overrides) -> str:
    """A token signed with the cluster's key (or `key`), its claims overridden: what TokenRequest
    cannot produce (an expired one: the minimum lifetime is ten minutes)."""
    if key is None:
        key = serialization.load_pem_private_key((server.data_dir / "pki" / "sa.key").read_bytes(), None)
    now = int(time.time())
    m = sa["metadata"]
    claims = {"aud": [ISSUER], "exp": now + 600, "iat": now, "iss": ISSUER, "nbf": now, "jti": "t",
              "sub": f"system:serviceaccount:{m['namespace']}:{m['name']}",
              "kubernetes.io": {"namespace": m["namespace"],
                                "serviceaccount": {"name": m["name"], "uid": m["uid"]}}}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256")


def test_token_request_and_bearer_authentication(server, connect):
    api = connect(server)
    sa = service_account(api, "robot")
    token = request_token(api, "robot")
    c = claims_of(token)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER] and c["exp"] - c["iat"] == 3600
    assert c["sub"] == "system:serviceaccount:default:robot"
    assert c["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": sa["metadata"]["uid"]}
    r = whoami(api, token)
    assert r.status == 201, r.body
    info = r.json()["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:robot" and info["uid"] == sa["metadata"]["uid"]
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    assert info["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={c['jti']}"]
    # Authenticated, but no rule lets a service account list pods: 403 naming it.
    r = api.request("GET", PODS, token=token)
    assert r.status == 403 and 'User "system:serviceaccount:default:robot" cannot list' in r.json()["message"]


def test_rejected_tokens_are_401(server, connect):
    api = connect(server)
    sa = service_account(api, "victim")
    now = int(time.time())
    bad = {
        "expired": mint(server, sa, exp=now - 120, iat=now - 800, nbf=now - 800),
        "not yet valid": mint(server, sa, nbf=now + 300, iat=now + 300, exp=now + 900),
        "wrong audience": mint(server, sa, aud=["https://elsewhere"]),
        "forged": mint(server, sa, key=ec.generate_private_key(ec.SECP256R1())),
        "other issuer": mint(server, sa, iss="https://elsewhere"),
        "garbage": "a.b.c",
    }
    assert whoami(api, mint(server, sa)).status == 201
    for what, token in bad.items():
        r = whoami(api, token)
        assert r.status == 401, what
        assert r.json()["reason"] == "Unauthorized"
    # The service account deleted, then recreated under the same name: a new uid.
    token = request_token(api, "victim")
    assert whoami(api, token).status == 201
    assert api.request("DELETE", f"{SAS}/victim").status == 200
    assert whoami(api, token).status == 401
    service_account(api, "victim")
    assert whoami(api, token).status == 401


def test_pod_bound_token_dies_with_its_pod(server, connect):
    api = connect(server)
    service_account(api, "binder")
    r = api.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
                        "spec": {"serviceAccountName": "binder", "containers": [{"name": "c", "image": "busybox"}]}})
    assert r.status == 201, r.body
    pod = r.json()
    vol = pod["spec"]["volumes"][0]
    assert vol["name"].startswith("kube-api-access-") and vol["projected"]["sources"][0] == {
        "serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": vol["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "bound"}
    token = request_token(api, "binder", {"boundObjectRef": ref})
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "bound", "uid": pod["metadata"]["uid"]}
    info = whoami(api, token).json()["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["bound"]
    # The kubelet's projected token (3607 s) lives a year, marked to warn after the asked time.
    kubelet = claims_of(request_token(api, "binder", {"boundObjectRef": ref, "expirationSeconds": 3607}))
    assert kubelet["exp"] - kubelet["iat"] == 365 * 24 * 3600 and kubelet["kubernetes.io"]["warnafter"]
    r = api.post(f"{SAS}/binder/token", {"spec": {"boundObjectRef": {**ref, "uid": "0000"}}})
    assert r.status == 409 and "does not match the UID in record" in r.json()["message"]
    assert api.request("DELETE", f"{PODS}/bound").status == 200
    assert whoami(api, token).status == 401


def test_token_request_bad_input(server, connect):
    api = connect(server)
    service_account(api, "picky")
    r = api.post(f"{SAS}/picky/token", {"spec": {"expirationSeconds": 599}})
    assert r.status == 422
    assert r.json()["message"] == ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                                   'Invalid value: 599: may not specify a duration less than 10 minutes')
    r = api.post(f"{SAS}/nobody/token", {"spec": {}})
    assert r.status == 404 and r.json()["message"] == 'serviceaccounts "nobody" not found'
    r = api.post(f"{SAS}/picky/token", {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                                     "name": "nope"}}})
    assert r.status == 404 and r.json()["message"] == 'pods "nope" not found'
    r = api.post(f"{SAS}/picky/token", {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "ConfigMap",
                                                                     "name": "x"}}})
    assert r.status == 400 and "cannot bind token to object of type /v1, Kind=ConfigMap" in r.json()["message"]
    for body in (b"{", b"[]", b'{"spec": {"expirationSeconds": "10m"}}'):
        assert api.post(f"{SAS}/picky/token", body).status == 400
    assert api.get(f"{SAS}/picky/token").status == 405


def test_token_review(server, connect):
    api = connect(server)
    service_account(api, "reviewed")
    token = request_token(api, "reviewed")
    r = api.post(TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                 "spec": {"token": token}})
    assert r.status == 201, r.body
    status = r.json()["status"]
    assert status["authenticated"] is True and status["user"]["username"] == "system:serviceaccount:default:reviewed"
    r = api.post(TOKEN_REVIEWS, {"spec": {"token": token, "audiences": ["vault"]}})
    assert r.status == 201 and "authenticated" not in r.json()["status"] and r.json()["status"]["error"]
    # A service account may not review tokens (only the control plane and admins may).
    r = api.post(TOKEN_REVIEWS, {"spec": {"token": token}}, token=token)
    assert r.status == 403


def test_pod_naming_a_missing_service_account_is_forbidden(server, connect):
    api = connect(server)
    r = api.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
                        "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox"}]}})
    assert r.status == 403
    assert r.json()["message"] == ('pods "orphan" is forbidden: error looking up service account default/ghost: '
                                   'serviceaccount "ghost" not found')
    assert api.get(f"{PODS}/orphan").status == 404
    r = api.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-token"},
                        "spec": {"automountServiceAccountToken": False,
                                 "containers": [{"name": "c", "image": "busybox"}]}})
    assert r.status == 201 and "volumes" not in r.json()["spec"]


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_kubectl_create_token(server, connect, binary, tmp_path):
    api = connect(server)
    k = Kubectl(kubectl_binaries()[binary], server.kubeconfig, cwd=tmp_path)
    try:
        sa = f"kubectl-{binary.replace('.', '-')}"
        k.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                                      "metadata": {"name": sa}}))
        token = k.ok("create", "token", sa).strip()
        assert claims_of(token)["sub"] == f"system:serviceaccount:default:{sa}"
        out = yaml.safe_load(k.ok("--token", token, "auth", "whoami", "-o", "yaml"))
        assert out["status"]["userInfo"]["username"] == f"system:serviceaccount:default:{sa}"
        as_sa = yaml.safe_load(k.ok("auth", "whoami", "-o", "yaml", f"--as=system:serviceaccount:default:{sa}"))
        assert as_sa["status"]["userInfo"] == {
            "username": f"system:serviceaccount:default:{sa}",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]}
        table = k.ok("--token", token, "auth", "whoami")
        assert f"system:serviceaccount:default:{sa}" in table and "credential-id" in table
        other = k.ok("create", "token", sa, "--audience", "https://vault.example", "--duration", "20m").strip()
        c = claims_of(other)
        assert c["aud"] == ["https://vault.example"] and c["exp"] - c["iat"] == 1200
        cp = k.run("--token", other, "get", "pods")
        assert cp.returncode == 1 and "Unauthorized" in cp.stderr, cp.stderr
        cp = k.run("--token", mint(server, api.get(f"{SAS}/{sa}").json(), exp=int(time.time()) - 120,
                                   iat=int(time.time()) - 800, nbf=int(time.time()) - 800), "get", "pods")
        assert cp.returncode == 1 and "Unauthorized" in cp.stderr, cp.stderr
        cp = k.run("create", "token", sa, "--duration", "5m")
        assert cp.returncode == 1 and "may not specify a duration less than 10 minutes" in cp.stderr, cp.stderr
        cp = k.run("create", "token", "nobody")
        assert cp.returncode == 1 and 'serviceaccounts "nobody" not found' in cp.stderr, cp.stderr
        pod = f"{sa}-pod"
        k.ok("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]}}))
        bound = k.ok("create", "token", sa, "--bound-object-kind", "Pod", "--bound-object-name", pod).strip()
        assert claims_of(bound)["kubernetes.io"]["pod"]["name"] == pod
        assert "pod-name" in k.ok("--token", bound, "auth", "whoami")
        k.ok("delete", "pod", pod)
        cp = k.run("--token", bound, "auth", "whoami")
        assert cp.returncode == 1 and "Unauthorized" in cp.stderr, cp.stderr
    finally:
        k.close()


def test_python_client_token_request_and_in_cluster_config(server, tmp_path):
    require_module("kubernetes")
    from kubernetes import client, config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    admin = config.new_client_from_config(str(server.kubeconfig))
    v1 = client.CoreV1Api(admin)
    v1.create_namespaced_service_account("default", client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="py-robot")))
    req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    answer = v1.create_namespaced_service_account_token("py-robot", "default", req)
    assert answer.status.token and answer.spec.expiration_seconds == 600
    # What a pod sees: the token and ca.crt files, KUBERNETES_SERVICE_HOST/PORT.
    (tmp_path / "token").write_text(answer.status.token)
    shutil.copy(server.ca_file, tmp_path / "ca.crt")
    cfg = client.Configuration()
    InClusterConfigLoader(token_filename=str(tmp_path / "token"), cert_filename=str(tmp_path / "ca.crt"),
                          environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                   "KUBERNETES_SERVICE_PORT": str(server.port)}).load_and_set(cfg)
    as_pod = client.ApiClient(cfg)
    review = client.AuthenticationV1Api(as_pod).create_self_subject_review(
        client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()))
    assert review.status.user_info.username == "system:serviceaccount:default:py-robot"
    with pytest.raises(client.ApiException) as e:
        client.CoreV1Api(as_pod).list_namespaced_pod("default")
    assert e.value.status == 403
    cfg.api_key = {"BearerToken": "Bearer " + answer.status.token[:-4] + "AAAA"}
    cfg.refresh_api_key_hook = None
    with pytest.raises(client.ApiException) as e:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod("default")
    assert e.value.status == 401


def test_a_node_requests_tokens_only_for_its_own_pods(server, connect):
    api = connect(server)
    service_account(api, "workload")
    uids = {}
    for name, node in (("mine", "node-1"), ("theirs", "node-2")):
        r = api.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                            "spec": {"serviceAccountName": "workload", "nodeName": node,
                                     "containers": [{"name": "c", "image": "busybox"}]}})
        assert r.status == 201, r.body
        uids[name] = r.json()["metadata"]["uid"]

    def ask(ref):
        spec = {"expirationSeconds": 3607, **({"boundObjectRef": ref} if ref else {})}
        return api.post(f"{SAS}/workload/token", {"spec": spec}, token=server.node_token)
    refusals = {
        None: "node requested token not bound to a pod",
        ("mine", ""): "node requested token with a pod binding without a uid",
        ("theirs", uids["theirs"]): "node requested token bound to a pod scheduled on a different node",
        ("mine", "0000"): "does not match the UID in record",
    }
    for key, message in refusals.items():
        r = ask(key and {"apiVersion": "v1", "kind": "Pod", "name": key[0], "uid": key[1]})
        assert r.status == 403 and message in r.json()["message"], (key, r.body)
        assert r.json()["message"].startswith('serviceaccounts "workload" is forbidden: ')
    r = ask({"apiVersion": "v1", "kind": "Pod", "name": "mine", "uid": uids["mine"]})
    assert r.status == 201, r.body
    token = r.json()["status"]["token"]
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "mine", "uid": uids["mine"]}
    assert whoami(api, token).json()["status"]["userInfo"]["username"] == "system:serviceaccount:default:workload"


def test_issuer_discovery_verifies_tokens(server, connect):
    api = connect(server)
    service_account(api, "oidc")
    token = request_token(api, "oidc", {"audiences": ["https://vault.example"]})
    admin_token = request_token(api, "oidc")
    r = api.request("GET", "/.well-known/openid-configuration", token=admin_token)
    assert r.status == 200, r.body
    conf = r.json()
    assert conf["issuer"] == ISSUER and conf["jwks_uri"] == f"https://127.0.0.1:{server.port}/openid/v1/jwks"
    assert conf["id_token_signing_alg_values_supported"] == ["ES256"]
    r = api.request("GET", "/openid/v1/jwks", token=admin_token)
    assert r.status == 200 and r.header_values("Content-Type") == ["application/jwk-set+json"]
    (key,) = r.json()["keys"]
    assert key["kid"] == jwt.get_unverified_header(token)["kid"]
    # What a third party does with them: verify the token offline.
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience="https://vault.example",
                        issuer=conf["issuer"])
    assert claims["sub"] == "system:serviceaccount:default:oidc"
    # Bound to service accounts (system:service-account-issuer-discovery); a node is refused.
    assert api.request("GET", "/openid/v1/jwks", token=server.node_token).status == 403
