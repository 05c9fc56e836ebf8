"""Service-account tokens: claims, signing, the time/audience checks, TokenRequest's spec
validation, the authenticator's bound-object checks, and the TokenRequest protobuf message."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from protobuf_writer import body, num, sub

from pocketkube.api import errors
from pocketkube.apiserver.protobuf import decode_body
from pocketkube.apiserver.satoken import API_AUDIENCES, ISSUER
from pocketkube.apiserver.satoken import claims as c
from pocketkube.apiserver.satoken.authenticator import ServiceAccountAuthenticator
from pocketkube.apiserver.satoken.signer import Signer
from pocketkube.apiserver.satoken.tokenrequest import create_token, read_spec, review_token

NOW = 1_800_000_000
SA = {"metadata": {"name": "robot", "namespace": "ns1", "uid": "sa-uid"}}
POD = {"metadata": {"name": "p", "namespace": "ns1", "uid": "pod-uid"},
       "spec": {"serviceAccountName": "robot", "nodeName": "node-1"}}
NODE = {"metadata": {"name": "node-1", "uid": "node-uid"}}
KEY = ec.generate_private_key(ec.SECP256R1())


def test_claims_as_upstream():
    cl = c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW, pod=POD, node=NODE,
                       jti="j1")
    assert cl == {"aud": ["a"], "exp": NOW + 600, "iat": NOW, "iss": ISSUER, "jti": "j1", "nbf": NOW,
                  "sub": "system:serviceaccount:ns1:robot",
                  "kubernetes.io": {"namespace": "ns1", "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                    "pod": {"name": "p", "uid": "pod-uid"},
                                    "node": {"name": "node-1", "uid": "node-uid"}}}
    with pytest.raises(ValueError):
        c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW, pod=POD, secret=POD)


def test_signed_token_verifies_and_names_its_key():
    token = c.sign(c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW), KEY)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": c.key_id(KEY.public_key())}
    claims = c.verify_signature(token, KEY.public_key(), ISSUER)
    v = c.check_claims(claims, ["a", "b"], NOW + 10)
    assert (v.namespace, v.name, v.uid) == ("ns1", "robot", "sa-uid")
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(c.TokenInvalid, match="invalid bearer token"):
        c.verify_signature(token, other.public_key(), ISSUER)
    with pytest.raises(c.TokenInvalid, match="issuer"):
        c.verify_signature(token, KEY.public_key(), "https://elsewhere")


@pytest.mark.parametrize("now,audiences,message", [
    (NOW + 600 + c.LEEWAY + 1, ["a"], "has expired"),
    (NOW - c.LEEWAY - 1, ["a"], "not valid yet"),
    (NOW, ["other"], "is invalid for the target audiences"),
])
def test_time_and_audience_checks(now, audiences, message):
    cl = c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW)
    with pytest.raises(c.TokenInvalid, match=message):
        c.check_claims(cl, audiences, now)


def test_within_leeway_still_valid():
    cl = c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW)
    c.check_claims(cl, ["a"], NOW + 600 + c.LEEWAY - 1)
    c.check_claims(cl, ["a"], NOW - c.LEEWAY + 1)


def test_subject_must_match_private_claims():
    cl = c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW)
    cl["sub"] = "system:serviceaccount:ns1:admin"
    with pytest.raises(c.TokenInvalid):
        c.check_claims(cl, ["a"], NOW)


def test_user_extra_and_groups():
    cl = c.make_claims(SA, issuer=ISSUER, audiences=["a"], expiration_seconds=600, now=NOW, pod=POD, node=NODE,
                       jti="j1")
    v = c.check_claims(cl, ["a"], NOW)
    assert c.user_extra(v) == {c.EXTRA_POD_NAME: ["p"], c.EXTRA_POD_UID: ["pod-uid"],
                               c.EXTRA_NODE_NAME: ["node-1"], c.EXTRA_NODE_UID: ["node-uid"],
                               c.EXTRA_CREDENTIAL_ID: ["JTI=j1"]}
    assert c.groups("ns1") == ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"]


# ---- TokenRequest ----

@pytest.mark.parametrize("spec,message", [
    ({"expirationSeconds": 599}, "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than "
                                 "10 minutes"),
    ({"expirationSeconds": (1 << 32) + 1}, "may not specify a duration larger than 2^32 seconds"),
])
def test_expiration_out_of_range_is_422(spec, message):
    with pytest.raises(errors.Invalid) as e:
        read_spec({"spec": spec})
    assert e.value.code == 422 and message in e.value.message
    assert e.value.message.startswith('TokenRequest.authentication.k8s.io "" is invalid: ')


@pytest.mark.parametrize("spec", [{"audiences": "a"}, {"expirationSeconds": "600"}, {"boundObjectRef": []}, []])
def test_malformed_spec_is_400(spec):
    with pytest.raises(errors.BadRequest):
        read_spec({"spec": spec})


def test_defaults():
    assert read_spec({}) == ([], 3600, None)


class _Store:
    def __init__(self, objs: dict, plural: str) -> None:
        self.objs, self.plural = objs, plural

    def try_get(self, namespace, name):
        return self.objs.get((namespace, name))

    def get(self, namespace, name):
        obj = self.try_get(namespace, name)
        if obj is None:
            raise errors.NotFound.object(self.plural, name)
        return obj


class _Registry:
    def __init__(self, **by_plural) -> None:
        self.by_plural = by_plural

    def store(self, group, plural):
        return _Store(self.by_plural.get(plural, {}), plural)


def _registry(**extra):
    objs = {"serviceaccounts": {("ns1", "robot"): SA}, "pods": {("ns1", "p"): POD},
            "nodes": {("", "node-1"): NODE}, "secrets": {}}
    objs.update(extra)
    return _Registry(**objs)


def test_token_request_bound_to_a_pod_carries_its_node():
    signer = Signer(KEY)
    out, warnings = create_token(_registry(), signer, "ns1", "robot",
                                 {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}},
                                 now=NOW)
    assert warnings == []
    assert out["spec"] == {"audiences": list(API_AUDIENCES), "expirationSeconds": 3600,
                           "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}
    assert out["status"]["expirationTimestamp"] == "2027-01-15T09:00:00Z"
    claims = jwt.decode(out["status"]["token"], KEY.public_key(), algorithms=["ES256"], options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                        audience=ISSUER)
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": "pod-uid"}
    assert claims["kubernetes.io"]["node"] == {"name": "node-1", "uid": "node-uid"}
    assert claims["exp"] - claims["iat"] == 3600


def test_kubelet_token_is_extended_with_warnafter():
    out, _ = create_token(_registry(), Signer(KEY), "ns1", "robot",
                          {"spec": {"expirationSeconds": 3607, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                                                  "name": "p"}}}, now=NOW)
    claims = jwt.decode(out["status"]["token"], options={"verify_signature": False})
    assert claims["exp"] - NOW == 365 * 24 * 3600 and claims["kubernetes.io"]["warnafter"] == NOW + 3607
    assert out["spec"]["expirationSeconds"] == 3607  # the status reports what was asked


def test_max_expiration_caps_with_a_warning():
    out, warnings = create_token(_registry(), Signer(KEY, max_expiration_seconds=7200), "ns1", "robot",
                                 {"spec": {"expirationSeconds": 100000}}, now=NOW)
    assert out["spec"]["expirationSeconds"] == 7200
    assert warnings == ["requested expiration of 100000 seconds shortened to 7200 seconds"]


@pytest.mark.parametrize("req,error,message", [
    ({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "gone"}}}, errors.NotFound,
     'pods "gone" not found'),
    ({"spec": {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}}, errors.BadRequest,
     "cannot bind token to object of type /v1, Kind=ConfigMap"),
    ({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "old"}}}, errors.Conflict,
     "the UID in the bound object reference (old) does not match the UID in record"),
    ({"metadata": {"name": "other"}}, errors.Invalid, "must match the service account name if specified"),
])
def test_token_request_refusals(req, error, message):
    with pytest.raises(error) as e:
        create_token(_registry(), Signer(KEY), "ns1", "robot", req, now=NOW)
    assert message in e.value.message


def test_pod_running_as_another_account():
    pod = {**POD, "spec": {"serviceAccountName": "default"}}
    with pytest.raises(errors.BadRequest, match='to pod running with serviceaccount "default"'):
        create_token(_registry(pods={("ns1", "p"): pod}), Signer(KEY), "ns1", "robot",
                     {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}})


def test_missing_service_account_is_404():
    with pytest.raises(errors.NotFound, match='serviceaccounts "nobody" not found'):
        create_token(_registry(), Signer(KEY), "ns1", "nobody", {})


# ---- the authenticator ----

def _token(**kw) -> str:
    import time

    return c.sign(c.make_claims(SA, issuer=ISSUER, audiences=list(API_AUDIENCES), expiration_seconds=600,
                                now=int(time.time()), **kw), KEY)


def test_authenticator_user_and_bound_object_checks():
    reg = _registry()
    auth = ServiceAccountAuthenticator(reg, KEY.public_key(), ISSUER, API_AUDIENCES)
    ident = auth.authenticate(_token(pod=POD, jti="j"))
    assert ident is not None and ident.name == "system:serviceaccount:ns1:robot" and ident.uid == "sa-uid"
    assert ident.extra[c.EXTRA_POD_NAME] == ["p"]
    reg.by_plural["pods"] = {}
    with pytest.raises(c.TokenInvalid, match="pod ns1/p not found"):
        auth.review(_token(pod=POD))
    reg.by_plural["serviceaccounts"] = {("ns1", "robot"): {"metadata": {**SA["metadata"], "uid": "new"}}}
    with pytest.raises(c.TokenInvalid, match="does not match claim"):
        auth.review(_token())
    reg.by_plural["serviceaccounts"] = {("ns1", "robot"): {"metadata": {
        **SA["metadata"], "deletionTimestamp": "2020-01-01T00:00:00Z"}}}
    assert auth.authenticate(_token()) is None
    assert auth.authenticate("not-a-jwt") is None


def test_token_review():
    auth = ServiceAccountAuthenticator(_registry(), KEY.public_key(), ISSUER, API_AUDIENCES)
    out = review_token(auth.review, {"spec": {"token": _token()}}, API_AUDIENCES)
    assert out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == "system:serviceaccount:ns1:robot"
    assert out["status"]["audiences"] == list(API_AUDIENCES)
    out = review_token(auth.review, {"spec": {"token": _token(), "audiences": ["x"]}}, API_AUDIENCES)
    assert "authenticated" not in out["status"] and "invalid for the target audiences" in out["status"]["error"]
    with pytest.raises(errors.BadRequest):
        review_token(auth.review, {"spec": {}}, API_AUDIENCES)


# ---- protobuf: what `kubectl create token` sends ----

def test_token_request_protobuf():
    ref = sub(1, "Pod") + sub(2, "v1") + sub(3, "p")
    spec = sub(1, "aud1") + sub(1, "aud2") + num(4, 1200) + sub(3, ref)
    raw = sub(1, b"") + sub(2, spec) + sub(3, b"")
    got = decode_body(body("authentication.k8s.io/v1", "TokenRequest", raw))
    assert got["spec"] == {"audiences": ["aud1", "aud2"], "expirationSeconds": 1200,
                           "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}
    assert got["kind"] == "TokenRequest"


# ---- legacy (Secret-based) tokens ----

def test_legacy_tokens_authenticate_while_their_secret_holds_them():
    import base64

    token = c.sign(c.legacy_claims(SA, "robot-token"), KEY)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "ns1",
                      "kubernetes.io/serviceaccount/secret.name": "robot-token",
                      "kubernetes.io/serviceaccount/service-account.name": "robot",
                      "kubernetes.io/serviceaccount/service-account.uid": "sa-uid",
                      "sub": "system:serviceaccount:ns1:robot"}
    secret = {"metadata": {"name": "robot-token", "namespace": "ns1"},
              "data": {"token": base64.b64encode(token.encode()).decode()}}
    reg = _registry(secrets={("ns1", "robot-token"): secret})
    auth = ServiceAccountAuthenticator(reg, KEY.public_key(), ISSUER, API_AUDIENCES)
    assert auth.review(token).name == "system:serviceaccount:ns1:robot"
    with pytest.raises(c.TokenInvalid, match="invalid for the target audiences"):
        auth.review(token, ["vault"])
    secret["data"]["token"] = base64.b64encode(b"other").decode()
    with pytest.raises(c.TokenInvalid, match="does not match secret"):
        auth.review(token)
    reg.by_plural["secrets"] = {}
    with pytest.raises(c.TokenInvalid, match="invalidated"):
        auth.review(token)


def test_secret_and_node_bound_tokens():
    secret = {"metadata": {"name": "s", "namespace": "ns1", "uid": "secret-uid"}}
    reg = _registry(secrets={("ns1", "s"): secret})
    out, _ = create_token(reg, Signer(KEY), "ns1", "robot",
                          {"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}})
    token = out["status"]["token"]
    assert jwt.decode(token, options={"verify_signature": False})["kubernetes.io"]["secret"] == {
        "name": "s", "uid": "secret-uid"}
    auth = ServiceAccountAuthenticator(reg, KEY.public_key(), ISSUER, API_AUDIENCES)
    assert auth.review(token).extra == {c.EXTRA_CREDENTIAL_ID: [f"JTI={jwt.decode(token, options={'verify_signature': False})['jti']}"]}
    reg.by_plural["secrets"] = {}
    with pytest.raises(c.TokenInvalid, match="secret ns1/s not found"):
        auth.review(token)
    out, _ = create_token(reg, Signer(KEY), "ns1", "robot",
                          {"spec": {"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "node-1"}}})
    token = out["status"]["token"]
    assert auth.review(token).extra[c.EXTRA_NODE_NAME] == ["node-1"]
    reg.by_plural["nodes"] = {}
    with pytest.raises(c.TokenInvalid, match="node node-1 not found"):
        auth.review(token)
