"""The claims of a bound service-account token and their checks (pure functions).

Upstream's pkg/serviceaccount/claims.go: public claims iss, sub, aud, exp, iat, nbf, jti; the
private `kubernetes.io` claim names the namespace, the service account and the object the token
is bound to (pod with its node, or secret, or node), each by name and uid. `warnafter` marks a
pod-bound token whose lifetime the server extended for a safe transition.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

ALGORITHM = "ES256"
# Clock skew tolerated on exp and nbf (upstream's NowLeeway).
LEEWAY = 60
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
# UserInfo.extra keys upstream sets for a service account's bound token.
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


class TokenInvalid(Exception):
    """A token that authenticates no one; the message says why (logs, TokenReview)."""


def username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def _ref(obj: dict) -> dict:
    m = obj.get("metadata") or {}
    return {"name": m.get("name", ""), "uid": m.get("uid", "")}


def make_claims(sa: dict, *, issuer: str, audiences: list[str], expiration_seconds: int, now: int,
                pod: dict | None = None, secret: dict | None = None, node: dict | None = None,
                warn_after: int = 0, jti: str | None = None) -> dict[str, Any]:
    """The claims of a token for `sa`, bound to at most one of pod (with its node) or secret, or
    to a node alone; `now` and the lifetimes in whole seconds."""
    if pod is not None and secret is not None:
        raise ValueError("a token can only be bound to one object type")
    meta = sa["metadata"]
    private: dict[str, Any] = {"namespace": meta["namespace"], "serviceaccount": _ref(sa)}
    if pod is not None:
        private["pod"] = _ref(pod)
        if node is not None:
            private["node"] = _ref(node)
    elif secret is not None:
        private["secret"] = _ref(secret)
    elif node is not None:
        private["node"] = _ref(node)
    if warn_after:
        private["warnafter"] = now + warn_after
    return {"aud": list(audiences), "exp": now + expiration_seconds, "iat": now, "iss": issuer,
            "jti": jti or str(uuid.uuid4()), "kubernetes.io": private, "nbf": now,
            "sub": username(meta["namespace"], meta["name"])}


LEGACY_ISSUER = "kubernetes/serviceaccount"
_LEGACY = "kubernetes.io/serviceaccount/"


def legacy_claims(sa: dict, secret_name: str) -> dict[str, Any]:
    """The claims of a Secret-based (legacy, unbound, non-expiring) token, as upstream's
    LegacyClaims: no aud, no exp; the Secret's name is claimed so deleting it revokes the token."""
    m = sa["metadata"]
    return {"iss": LEGACY_ISSUER, f"{_LEGACY}namespace": m["namespace"], f"{_LEGACY}secret.name": secret_name,
            f"{_LEGACY}service-account.name": m["name"], f"{_LEGACY}service-account.uid": m.get("uid", ""),
            "sub": username(m["namespace"], m["name"])}


@dataclass(frozen=True)
class Legacy:
    namespace: str
    name: str
    uid: str
    secret: str


def check_legacy_claims(claims: dict) -> Legacy:
    """The shape of legacy claims (upstream's legacyValidator before its lookups)."""
    fields = {k: claims.get(f"{_LEGACY}{k}") for k in ("namespace", "secret.name", "service-account.name",
                                                          "service-account.uid")}
    for k, v in fields.items():
        if not isinstance(v, str) or not v:
            raise TokenInvalid(f"{k} claim is missing")
    if claims.get("sub") != username(fields["namespace"], fields["service-account.name"]):
        raise TokenInvalid("sub claim is invalid")
    return Legacy(fields["namespace"], fields["service-account.name"], fields["service-account.uid"],
                  fields["secret.name"])


def key_id(public_key: EllipticCurvePublicKey) -> str:
    """Upstream's kid: the unpadded base64url SHA-256 of the DER public key."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def sign(claims: dict, key: EllipticCurvePrivateKey) -> str:
    """A compact JWS whose header is {alg, kid}, as upstream's (no `typ`)."""
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": key_id(key.public_key()), "typ": None})


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass(frozen=True)
class Verified:
    """What a well-signed, current token for our audience claims; its bound objects unchecked."""
    namespace: str
    name: str
    uid: str
    pod: dict | None = None
    secret: dict | None = None
    node: dict | None = None
    jti: str = ""
    claims: dict = field(default_factory=dict, compare=False)


def verify_signature(token: str, public_key: EllipticCurvePublicKey, issuer: str) -> dict:
    """The token's claims when it is ours (our issuer or the legacy one, our signature); time
    and audience unchecked, so a result can be cached while those are checked on every use."""
    try:
        claims = jwt.decode(token, public_key, algorithms=[ALGORITHM], issuer=[issuer, LEGACY_ISSUER],
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                     "verify_aud": False, "require": ["sub"]})
    except jwt.InvalidIssuerError:
        raise TokenInvalid("token issuer is not ours") from None
    except jwt.PyJWTError as e:
        raise TokenInvalid(f"invalid bearer token, {e}") from None
    return claims


def check_claims(claims: dict, audiences: list[str] | tuple[str, ...], now: float) -> Verified:
    """Time, audience and shape of the claims of a token already known to be ours."""
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise TokenInvalid("invalid bearer token, malformed exp or nbf")
    if now > exp + LEEWAY:
        raise TokenInvalid("service account token has expired")
    if now < nbf - LEEWAY:
        raise TokenInvalid("service account token is not valid yet")
    aud = claims.get("aud")
    aud = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not set(aud) & set(audiences):
        raise TokenInvalid(f"token audiences {aud} is invalid for the target audiences {list(audiences)}")
    private = claims.get("kubernetes.io")
    if not isinstance(private, dict):
        raise TokenInvalid("service account token claims missing kubernetes.io")
    namespace = private.get("namespace")
    sa = private.get("serviceaccount")
    if not isinstance(namespace, str) or not namespace or not isinstance(sa, dict) or not sa.get("name"):
        raise TokenInvalid("service account token claims missing namespace or service account")
    if claims.get("sub") != username(namespace, str(sa["name"])):
        raise TokenInvalid("service account token subject does not match its kubernetes.io claims")

    def ref(key: str) -> dict | None:
        r = private.get(key)
        return {"name": str(r.get("name", "")), "uid": str(r.get("uid", ""))} if isinstance(r, dict) else None
    return Verified(namespace, str(sa["name"]), str(sa.get("uid", "")), ref("pod"), ref("secret"), ref("node"),
                    str(claims.get("jti") or ""), claims)


def user_extra(v: Verified) -> dict[str, list[str]]:
    """UserInfo.extra of a service account's token, as upstream's ServiceAccountInfo gives it."""
    extra: dict[str, list[str]] = {}
    if v.pod:
        extra[EXTRA_POD_NAME] = [v.pod["name"]]
        extra[EXTRA_POD_UID] = [v.pod["uid"]]
    if v.node:
        extra[EXTRA_NODE_NAME] = [v.node["name"]]
        if v.node["uid"]:
            extra[EXTRA_NODE_UID] = [v.node["uid"]]
    if v.jti:
        extra[EXTRA_CREDENTIAL_ID] = [f"JTI={v.jti}"]
    return extra


def groups(namespace: str) -> list[str]:
    return [SA_GROUP, f"{SA_GROUP}:{namespace}", "system:authenticated"]
