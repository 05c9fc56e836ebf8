"""TLS bootstrap against a real server (with its controllers): bootstrap tokens authenticate
(and an expired or wrong one is a 401), /cacerts is public, a node's CSR is auto-approved and
signed, the node's client certificate authenticates it under the Node authorizer, and kubectl
creates, lists, approves and denies CSRs."""

from __future__ import annotations

import asyncio
import base64
import datetime
import shutil
import ssl
import tempfile
import urllib.request
from pathlib import Path

import pytest
from apiclient import Api

from pocketkube.agent.join import JoinError, bootstrap, credential_paths
from pocketkube.api import bootstraptoken
from pocketkube.testing.procs import ServerProcess, preferred_kubectl
from pocketkube.testing.waits import wait_for
from pocketkube.util import certs

pytestmark = pytest.mark.integration
SECRETS = "/api/v1/namespaces/kube-system/secrets"
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-join-"))
    s = ServerProcess(root / "data")
    s.data_dir.mkdir()
    s.start(port=0)
    s.root = root
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def api(server):
    return Api(server)


def make_token(api: Api, ttl: int = 3600, now: datetime.datetime | None = None) -> tuple[str, str]:
    token_id, secret = bootstraptoken.generate()
    r = api.post(SECRETS, bootstraptoken.token_secret(token_id, secret, ttl, now=now))
    assert r.status == 201, r.body
    return token_id, secret


def status_with(server: ServerProcess, path: str, token: str = "", method: str = "GET",
                cert: tuple[Path, Path] | None = None) -> int:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    if cert:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(server.url + path, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_cacerts_is_public_and_is_the_ca(server):
    with urllib.request.urlopen(server.url + "/cacerts", context=ssl._create_unverified_context()) as resp:
        assert resp.read() == server.ca_file.read_bytes()


def test_bootstrap_token_authenticates_until_it_expires(server, api):
    token_id, secret = make_token(api)
    assert status_with(server, CSRS, f"{token_id}.{secret}") == 200  # system:node-bootstrapper
    assert status_with(server, "/api/v1/pods", f"{token_id}.{secret}") == 403
    assert status_with(server, CSRS, f"{token_id}.{'x' * 16}") == 401  # wrong secret
    old_id, old_secret = make_token(api, ttl=60, now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    assert status_with(server, CSRS, f"{old_id}.{old_secret}") == 401


def test_tokencleaner_deletes_expired_tokens(server, api):
    old_id, _ = make_token(api, ttl=60, now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    wait_for(lambda: api.get(f"{SECRETS}/bootstrap-token-{old_id}").status == 404, timeout=15)


def join(server, token: str, node: str, data_dir: Path):
    return asyncio.run(bootstrap(server.url, token, node, data_dir, timeout=20))


def test_join_gets_a_node_certificate_that_the_node_authorizer_restricts(server, api):
    token_id, secret = make_token(api)
    ca = server.ca_file.read_bytes()
    data = server.root / "agent-a"
    creds = join(server, str(bootstraptoken.JoinToken(certs.ca_hash(ca), token_id, secret)), "join-a", data)
    subject, not_after = certs.certificate_subject(creds.cert_file.read_bytes())
    assert subject.common_name == "system:node:join-a" and subject.organizations == ("system:nodes",)
    left = not_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < left <= datetime.timedelta(days=366)
    assert creds.key_file.stat().st_mode & 0o777 == 0o600
    csrs = api.get(CSRS).json()["items"]
    mine = [c for c in csrs if c["spec"]["username"] == f"system:bootstrap:{token_id}"]
    assert mine and mine[0]["spec"]["groups"] == ["system:bootstrappers", "system:authenticated"]
    assert [c["reason"] for c in mine[0]["status"]["conditions"]] == ["AutoApproved"]
    cert = (creds.cert_file, creds.key_file)
    assert status_with(server, "/api/v1/nodes", cert=cert) == 200  # Node authorizer: nodes may list nodes
    assert status_with(server, "/api/v1/namespaces/default/secrets", cert=cert) == 403
    # A restart reuses the certificate (no new CSR).
    again = join(server, str(bootstraptoken.JoinToken(certs.ca_hash(ca), token_id, secret)), "join-a", data)
    assert again.cert_file.read_bytes() == creds.cert_file.read_bytes()
    assert len(api.get(CSRS).json()["items"]) == len(csrs)


def test_join_errors_are_clear(server, api):
    ca_hash = certs.ca_hash(server.ca_file.read_bytes())
    with pytest.raises(JoinError, match=r"join token rejected by the server \(401\).*pocketkube token create"):
        join(server, f"K10{ca_hash}::abcdef.0123456789abcdef", "join-b", server.root / "agent-b")
    token_id, secret = make_token(api)
    with pytest.raises(JoinError, match="the server's CA does not match the token's hash"):
        join(server, f"K10{'0' * 64}::{token_id}.{secret}", "join-b", server.root / "agent-b")
    assert not credential_paths(server.root / "agent-b").cert_file.exists()


def test_kubectl_certificate_approve_and_deny(server, api):
    kubectl = preferred_kubectl(server.kubeconfig)
    try:
        for name in ("user-alice", "user-bob"):
            request = certs.build_request(certs.new_key(), name.removeprefix("user-"), ("devs",))
            manifest = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                        "metadata": {"name": name},
                        "spec": {"request": base64.b64encode(request).decode(), "expirationSeconds": 3600,
                                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}}
            r = api.post(CSRS, manifest)
            assert r.status == 201, r.body
        out = kubectl.ok("get", "csr", "user-alice")
        assert out.split("\n")[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                                              "CONDITION"]
        assert "kubernetes-admin" in out and "60m" in out and "Pending" in out
        kubectl.ok("certificate", "approve", "user-alice")
        kubectl.ok("certificate", "deny", "user-bob")
        wait_for(lambda: "Approved,Issued" in kubectl.ok("get", "csr", "user-alice"), timeout=15)
        assert "Denied" in kubectl.ok("get", "csr", "user-bob")
        cert = base64.b64decode(api.get(f"{CSRS}/user-alice").json()["status"]["certificate"])
        subject, not_after = certs.certificate_subject(cert)
        assert subject.common_name == "alice"
        assert not_after - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(hours=1)
    finally:
        kubectl.close()


def test_bad_csrs_are_422(server, api):
    bad = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "bad"},
           "spec": {"request": base64.b64encode(b"not a pem").decode(), "signerName": "nodomain",
                    "usages": ["client auth", "flying"], "expirationSeconds": 60}}
    r = api.post(CSRS, bad)
    assert r.status == 422, r.body
    message = r.json()["message"]
    assert "spec.request: Invalid value" in message and "PEM block type must be CERTIFICATE REQUEST" in message
    assert 'spec.usages[1]: Unsupported value: "flying"' in message
    assert "spec.signerName: Invalid value" in message
    assert "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds" in message


def test_approval_needs_approve_on_the_signer(server, api):
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "csr-updater"},
            "rules": [{"apiGroups": ["certificates.k8s.io"], "verbs": ["get", "list", "update", "patch"],
                       "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "csr-updater"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csr-updater"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]}
    assert api.post(f"{rbac}/clusterroles", role).status == 201
    assert api.post(f"{rbac}/clusterrolebindings", binding).status == 201
    request = certs.build_request(certs.new_key(), "dave", ())
    r = api.post(CSRS, {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                        "metadata": {"name": "user-dave"},
                        "spec": {"request": base64.b64encode(request).decode(), "usages": ["client auth"],
                                 "signerName": "kubernetes.io/kube-apiserver-client"}})
    assert r.status == 201, r.body
    kubectl = preferred_kubectl(server.kubeconfig)
    try:
        out = kubectl.run("--as", "carol", "certificate", "approve", "user-dave")
        assert out.returncode == 1
        assert ('user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"'
                in out.stderr), out.stderr
    finally:
        kubectl.close()


def test_no_masters_certificates_from_the_client_signer(server, api):
    request = certs.build_request(certs.new_key(), "mallory", ("system:masters",))
    r = api.post(CSRS, {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                        "metadata": {"name": "masters"},
                        "spec": {"request": base64.b64encode(request).decode(), "usages": ["client auth"],
                                 "signerName": "kubernetes.io/kube-apiserver-client"}})
    assert r.status == 403
    assert r.json()["message"] == ('certificatesigningrequests.certificates.k8s.io "masters" is forbidden: use of '
                                   "kubernetes.io/kube-apiserver-client signer with system:masters group is not "
                                   "allowed")


def test_token_create_prints_a_join_token(server, api):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pocketkube", "token", "create", "--data-dir", str(server.data_dir),
                          "--ttl", "1h30m"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    token = bootstraptoken.parse_join_token(out.stdout.strip())
    assert token.ca_hash == certs.ca_hash(server.ca_file.read_bytes())
    assert "pocketkube agent --server https://" in out.stderr
    secret = api.get(f"{SECRETS}/bootstrap-token-{token.token_id}").json()
    expiration = bootstraptoken.parse_time(bootstraptoken.secret_data(secret)["expiration"])
    left = expiration - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=85) < left <= datetime.timedelta(minutes=90)
    bad = subprocess.run([sys.executable, "-m", "pocketkube", "token", "create", "--data-dir", str(server.data_dir),
                          "--ttl", "soon"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "expected a duration like 24h" in bad.stderr


def test_server_prints_a_join_command(server):
    from pocketkube.testing.procs import read_until

    lines: list[str] = []
    assert read_until(server.proc, lambda line: lines.append(line) or line.startswith("join an agent:"), 10)
    args = lines[-1].split()
    token = bootstraptoken.parse_join_token(args[args.index("--token") + 1])
    assert token.ca_hash == certs.ca_hash(server.ca_file.read_bytes())
    assert args[args.index("--server") + 1] == server.url


def test_a_node_near_expiry_renews_with_its_own_certificate(server, api):
    """In the last fifth of its certificate's life a restarting agent posts a new CSR as itself
    (selfnodeclient), without needing a valid join token."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_pem = server.ca_file.read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((server.data_dir / "pki" / "ca.key").read_bytes(), None)
    creds = credential_paths(server.root / "agent-old")
    creds.ca_file.parent.mkdir(parents=True)
    creds.ca_file.write_bytes(ca_pem)
    key = certs.new_key()
    creds.key_file.write_bytes(certs.key_pem(key))
    now = datetime.datetime.now(datetime.UTC)
    request = x509.load_pem_x509_csr(certs.build_request(key, "system:node:join-old", ("system:nodes",)))
    old = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca.subject)
           .public_key(request.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(days=300)).not_valid_after(now + datetime.timedelta(minutes=30))
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    creds.cert_file.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    stale_token = f"K10{certs.ca_hash(ca_pem)}::abcdef.0123456789abcdef"  # not a valid bootstrap token
    renewed = join(server, stale_token, "join-old", server.root / "agent-old")
    _, not_after = certs.certificate_subject(renewed.cert_file.read_bytes())
    assert not_after - now > datetime.timedelta(days=300)
    mine = [c for c in api.get(CSRS).json()["items"] if c["spec"]["username"] == "system:node:join-old"]
    assert mine and mine[0]["status"]["conditions"][0]["reason"] == "AutoApproved"
