"""Join tokens, bootstrap-token authentication, CSR validation and the approver's and signer's
decisions, as pure functions."""

from __future__ import annotations

import base64
import datetime

import pytest

from pocketkube.agent.join import csr_body, csr_outcome, renewal_delay, reusable, stored_state
from pocketkube.api import bootstraptoken as bt
from pocketkube.apiserver.authn import certificate_identity
from pocketkube.apiserver.tables.certificates import csr_condition
from pocketkube.controllers.certificates import approval_checks, approved, node_client_problem, plan_signing
from pocketkube.controllers.tokencleaner import seconds_left
from pocketkube.registry.certificates import csr as csrs
from pocketkube.util import certs

pytestmark = pytest.mark.unit
NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)


def make_ca() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = certs.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), certs.key_pem(key)


def csr_obj(cn="system:node:n1", orgs=("system:nodes",), signer="kubernetes.io/kube-apiserver-client-kubelet",
            usages=("digital signature", "client auth"), username="system:bootstrap:abcdef", **spec) -> dict:
    request = certs.build_request(certs.new_key(), cn, orgs)
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "node-csr-x"},
            "spec": {"request": base64.b64encode(request).decode(), "signerName": signer, "usages": list(usages),
                     "username": username, "groups": ["system:bootstrappers"], **spec}}


# ---- join tokens and bootstrap tokens ----

def test_join_token_round_trip_and_bad_forms():
    text = "K10" + "a" * 64 + "::abcdef.0123456789abcdef"
    token = bt.parse_join_token(text)
    assert (token.ca_hash, token.token_id, token.token_secret) == ("a" * 64, "abcdef", "0123456789abcdef")
    assert str(token) == text and token.bearer == "abcdef.0123456789abcdef"
    for bad in ("", "abcdef.0123456789abcdef", "K10abc::abcdef.0123456789abcdef",
                "K10" + "a" * 64 + "::ABCDEF.0123456789abcdef", "K10" + "a" * 64 + "::abcdef.short"):
        with pytest.raises(ValueError, match="malformed join token: expected K10"):
            bt.parse_join_token(bad)


def test_generated_tokens_have_the_bootstrap_form():
    token_id, secret = bt.generate()
    assert bt.TOKEN_RE.match(f"{token_id}.{secret}")


def test_bootstrap_authentication_rules():
    secret = bt.token_secret("abcdef", "0123456789abcdef", 3600, now=NOW)
    assert bt.authenticate(secret, "abcdef", "0123456789abcdef", NOW) == ("system:bootstrap:abcdef",
                                                                        ["system:bootstrappers"])
    assert bt.authenticate(secret, "abcdef", "0123456789abcdefX"[:16].replace("0", "1"), NOW) is None
    assert bt.authenticate(secret, "abcdef", "0123456789abcdef", NOW + datetime.timedelta(hours=2)) is None
    assert bt.authenticate({**secret, "type": "Opaque"}, "abcdef", "0123456789abcdef", NOW) is None
    deleting = {**secret, "metadata": {**secret["metadata"], "deletionTimestamp": "2026-12-05T12:00:00Z"}}
    assert bt.authenticate(deleting, "abcdef", "0123456789abcdef", NOW) is None
    no_auth = {**secret, "data": {**secret["data"], "usage-bootstrap-authentication": base64.b64encode(b"false").decode()}}
    assert bt.authenticate(no_auth, "abcdef", "0123456789abcdef", NOW) is None
    extra = bt.token_secret("abcdef", "0123456789abcdef", 0, now=NOW, extra_groups=("system:bootstrappers:kubeadm:x",))
    assert bt.authenticate(extra, "abcdef", "0123456789abcdef", NOW)[1] == ["system:bootstrappers",
                                                                          "system:bootstrappers:kubeadm:x"]
    bad_group = bt.token_secret("abcdef", "0123456789abcdef", 0, now=NOW, extra_groups=("system:masters",))
    assert bt.authenticate(bad_group, "abcdef", "0123456789abcdef", NOW) is None


def test_tokencleaner_due_times():
    secret = bt.token_secret("abcdef", "0123456789abcdef", 600, now=NOW)
    assert seconds_left(secret, NOW) == 600
    assert seconds_left(secret, NOW + datetime.timedelta(hours=1)) < 0
    assert seconds_left(bt.token_secret("abcdef", "0123456789abcdef", 0, now=NOW), NOW) is None
    other_ns = {**secret, "metadata": {**secret["metadata"], "namespace": "default"}}
    assert seconds_left(other_ns, NOW) is None


def test_certificate_identity_from_peercert():
    peer = {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:n1"),))}
    assert certificate_identity(peer) == ("system:node:n1", ["system:nodes", "system:authenticated"])
    assert certificate_identity({}) is None and certificate_identity(None) is None
    assert certificate_identity({"subject": ((("organizationName", "x"),),)}) is None


# ---- CSR validation ----

def messages(errs) -> list[str]:
    return [str(e) for e in errs]


def test_valid_csr_passes_and_bad_fields_are_named():
    assert csrs.validate(csr_obj()) == []
    bad = csr_obj(signer="nodomain", usages=("client auth", "flying", "client auth"), expirationSeconds=599)
    bad["spec"]["request"] = base64.b64encode(b"garbage").decode()
    out = messages(csrs.validate(bad))
    assert any(m.startswith("spec.request: Invalid value") and "PEM block type must be CERTIFICATE REQUEST" in m
               for m in out)
    assert any(m.startswith('spec.usages[1]: Unsupported value: "flying"') for m in out)
    assert 'spec.usages[2]: Duplicate value: "client auth"' in out
    assert any(m.startswith('spec.signerName: Invalid value: "nodomain": must be a fully qualified domain') for m in out)
    assert "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds " \
           "(10 minutes)" in out
    assert messages(csrs.validate(csr_obj(usages=()))) == ["spec.usages: Required value"]
    legacy = messages(csrs.validate(csr_obj(signer="kubernetes.io/legacy-unknown")))
    assert legacy == ['spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is '
                      'not allowed via this API version']


def test_condition_rules():
    obj = csr_obj()
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"},
                                    {"type": "Failed", "status": "False"}, {"type": "Approved", "status": "True"}]}
    out = messages(csrs.validate(obj))
    assert 'status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually ' \
           'exclusive' in out
    assert any(m.startswith('status.conditions[2].status: Unsupported value: "False"') for m in out)
    assert 'status.conditions[3].type: Duplicate value: "Approved"' in out


def test_update_paths_guard_their_parts():
    old = csr_obj()
    old["metadata"]["resourceVersion"] = "1"
    new = {**old, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    assert 'status.conditions: Forbidden: updates may not add a condition of type "Approved"' in \
        messages(csrs.validate_update(new, old))
    ca, key = make_ca()
    cert = base64.b64encode(certs.sign(base64.b64decode(old["spec"]["request"]), ca, key, ["client auth"])).decode()
    with_cert = {**old, "status": {"certificate": cert}}
    assert "status.certificate: Forbidden: updates may not set certificate content" in \
        messages(csrs.validate_update(with_cert, old))
    approved_old = {**old, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    assert 'status.conditions: Forbidden: updates may not remove a condition of type "Approved"' in \
        messages(csrs.validate_update(old, approved_old))
    # the status endpoint keeps approval conditions and spec; the approval endpoint keeps the certificate
    merged = {**approved_old, "status": {"certificate": cert, "conditions": [{"type": "Failed", "status": "True"}]}}
    csrs._prepare_status(merged, approved_old)
    assert [c["type"] for c in merged["status"]["conditions"]] == ["Approved", "Failed"]
    approval = {**old, "status": {"certificate": cert, "conditions": [{"type": "Approved", "status": "True"}]}}
    csrs._prepare_approval(approval, old)
    assert "certificate" not in approval["status"] and approval["status"]["conditions"][0]["lastUpdateTime"]


def test_requester_comes_from_the_authenticated_user():
    obj = csr_obj(username="someone-else")
    obj["spec"]["extra"] = {"x": ["y"]}
    csrs.set_requester(obj, ("system:bootstrap:abcdef", ["system:bootstrappers", "system:authenticated"]))
    assert obj["spec"]["username"] == "system:bootstrap:abcdef" and "extra" not in obj["spec"]


# ---- approver and signer ----

def test_approver_checks_node_client_requests_only():
    assert approval_checks(csr_obj()) == ["nodeclient"]
    assert approval_checks(csr_obj(username="system:node:n1")) == ["selfnodeclient", "nodeclient"]
    assert approval_checks(csr_obj(orgs=("system:masters",))) == []
    assert approval_checks(csr_obj(cn="n1")) == []
    assert approval_checks(csr_obj(usages=("client auth", "server auth"))) == []
    assert approval_checks(csr_obj(signer="kubernetes.io/kube-apiserver-client")) == []
    assert approval_checks(approved(csr_obj())) == []
    assert node_client_problem(csr_obj(orgs=("system:nodes", "x"))) == 'organization must be ["system:nodes"]'
    cond = approved(csr_obj())["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Approved", "True", "AutoApproved")


def test_signer_plans():
    ca, key = make_ca()
    assert plan_signing(csr_obj(), ca, key).nothing  # not approved yet
    plan = plan_signing(approved(csr_obj(expirationSeconds=3600)), ca, key)
    subject, not_after = certs.certificate_subject(plan.certificate)
    assert subject.common_name == "system:node:n1" and subject.organizations == ("system:nodes",)
    assert datetime.timedelta(minutes=59) < not_after - datetime.datetime.now(datetime.UTC) <= \
        datetime.timedelta(hours=1)
    year = plan_signing(approved(csr_obj()), ca, key)
    assert certs.certificate_subject(year.certificate)[1] - datetime.datetime.now(datetime.UTC) > \
        datetime.timedelta(days=364)
    failed = plan_signing(approved(csr_obj(orgs=("system:masters",))), ca, key)
    assert failed.failure.startswith("invalid request for signer kubernetes.io/kube-apiserver-client-kubelet")
    assert plan_signing(approved(csr_obj(signer="example.com/other")), ca, key).nothing
    client = plan_signing(approved(csr_obj(cn="alice", orgs=("devs",), signer="kubernetes.io/kube-apiserver-client",
                                           usages=("client auth",))), ca, key)
    assert certs.certificate_subject(client.certificate)[0].common_name == "alice"


def test_table_condition_column():
    assert csr_condition(csr_obj()) == "Pending"
    assert csr_condition(approved(csr_obj())) == "Approved"
    assert csr_condition({"status": {"conditions": [{"type": "Approved"}], "certificate": "x"}}) == "Approved,Issued"
    assert csr_condition({"status": {"conditions": [{"type": "Denied"}]}}) == "Denied"
    assert csr_condition({"status": {"conditions": [{"type": "Approved"}, {"type": "Failed"}]}}) == "Approved,Failed"


# ---- the agent side ----

def test_agent_csr_and_outcomes(tmp_path):
    body = csr_body(certs.build_request(certs.new_key(), "system:node:n1", ("system:nodes",)))
    assert body["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert csrs.validate({**body, "metadata": {"name": "x"}}) == []
    pending = {"metadata": {"name": "c"}, "status": {}}
    assert csr_outcome(pending) == (None, None)
    assert csr_outcome({"metadata": {"name": "c"}, "status": {"certificate": base64.b64encode(b"PEM").decode()}}) == \
        (b"PEM", None)
    cert, why = csr_outcome({"metadata": {"name": "c"}, "status": {"conditions": [
        {"type": "Denied", "status": "True", "reason": "No", "message": "not you"}]}})
    assert cert is None and why == "the certificate request c was denied: No not you"


def test_stored_credentials_are_reused_only_for_this_node_and_ca(tmp_path):
    from pocketkube.agent.join import credential_paths

    ca, key = make_ca()
    creds = credential_paths(tmp_path)
    creds.ca_file.parent.mkdir(parents=True)
    creds.ca_file.write_bytes(ca)
    node_key = certs.new_key()
    creds.key_file.write_bytes(certs.key_pem(node_key))
    creds.cert_file.write_bytes(certs.sign(certs.build_request(node_key, "system:node:n1", ("system:nodes",)),
                                           ca, key, ["client auth"]))
    now = datetime.datetime.now(datetime.UTC)
    assert reusable(creds, "n1", certs.ca_hash(ca), now)
    assert not reusable(creds, "n2", certs.ca_hash(ca), now)
    assert not reusable(creds, "n1", "0" * 64, now)
    assert not reusable(creds, "n1", certs.ca_hash(ca), now + datetime.timedelta(days=366))
    assert stored_state(creds, "n1", certs.ca_hash(ca), now + datetime.timedelta(days=366)) == "none"
    # the last fifth of a year's certificate: renew with it
    assert stored_state(creds, "n1", certs.ca_hash(ca), now + datetime.timedelta(days=300)) == "renew"
    assert stored_state(creds, "n1", certs.ca_hash(ca), now) == "use"


def test_renewal_waits_for_the_last_fifth():
    ca, key = make_ca()
    cert = certs.sign(certs.build_request(certs.new_key(), "system:node:n1", ("system:nodes",)), ca, key,
                      ["client auth"], duration=1000 * 3600, now=NOW)
    # lifetime 1000 h + 5 min backdating: the window opens a fifth (200 h + 1 min) before the end
    assert renewal_delay(cert, NOW, cap=1e9) == pytest.approx((800 * 3600) - 60, abs=1)
    assert renewal_delay(cert, NOW) == 3600.0  # capped
    assert renewal_delay(cert, NOW + datetime.timedelta(hours=900)) == 0.0
