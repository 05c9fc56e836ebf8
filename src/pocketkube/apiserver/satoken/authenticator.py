"""Bearer JWTs → the service account's user (upstream's serviceaccount TokenAuthenticator with
its bound-object validator).

A token authenticates only while its service account — and the pod or secret it is bound to —
still exists with the uid it names. Those are read from the registry's in-memory state on every
request (a dictionary lookup); only the signature check, the expensive part, is cached per token.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.apiserver.satoken import claims as c
from pocketkube.registry.registry import Registry

log = logging.getLogger(__name__)
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Identity:
    name: str
    groups: list[str]
    uid: str = ""
    extra: dict[str, list[str]] | None = None


class ServiceAccountAuthenticator:
    def __init__(self, registry: Registry, public_key: EllipticCurvePublicKey, issuer: str,
                 audiences: tuple[str, ...] | list[str]) -> None:
        self.registry = registry
        self.public_key = public_key
        self.issuer = issuer
        self.audiences = tuple(audiences)
        self._signed: OrderedDict[str, dict] = OrderedDict()  # token → claims, signature checked

    def authenticate(self, token: str, audiences: tuple[str, ...] | list[str] = ()) -> Identity | None:
        """The token's user, or None (logged) when it does not authenticate."""
        try:
            return self.review(token, audiences)
        except c.TokenInvalid as e:
            log.debug("service account token rejected: %s", e)
            return None

    def review(self, token: str, audiences: tuple[str, ...] | list[str] = ()) -> Identity:
        """The token's user; TokenInvalid saying why it is not one."""
        if not c.looks_like_jwt(token):
            raise c.TokenInvalid("not a JWT")
        claims = self._signed.get(token)
        if claims is None:
            claims = c.verify_signature(token, self.public_key, self.issuer)
            self._signed[token] = claims
            if len(self._signed) > _CACHE_SIZE:
                self._signed.popitem(last=False)
        else:
            self._signed.move_to_end(token)
        now = time.time()
        if claims.get("iss") == c.LEGACY_ISSUER:
            return self._legacy(token, claims, audiences, now)
        v = c.check_claims(claims, tuple(audiences) or self.audiences, now)
        self._check_bound(v, now)
        return Identity(c.username(v.namespace, v.name), c.groups(v.namespace), v.uid, c.user_extra(v))

    def _legacy(self, token: str, claims: dict, audiences: tuple[str, ...] | list[str], now: float) -> Identity:
        """A Secret-based token: valid while its Secret holds it and its account is the same."""
        if audiences and not set(audiences) <= set(self.audiences):
            raise c.TokenInvalid(f"token audiences {list(self.audiences)} is invalid for the target audiences "
                                 f"{list(audiences)}")
        v = c.check_legacy_claims(claims)
        secret = self._get("secrets", v.namespace, v.secret)
        if secret is None or (secret.get("metadata") or {}).get("deletionTimestamp"):
            raise c.TokenInvalid("token has been invalidated")
        stored = (secret.get("data") or {}).get("token")
        if not isinstance(stored, str) or _b64decode(stored) != token.encode():
            raise c.TokenInvalid("token does not match secret")
        _check_object("service account", self._get("serviceaccounts", v.namespace, v.name), v.namespace, v.name,
                      v.uid, now)
        return Identity(c.username(v.namespace, v.name), c.groups(v.namespace), v.uid, {})

    def _get(self, plural: str, namespace: str, name: str) -> dict | None:
        return self.registry.store("", plural).try_get(namespace, name)

    def _check_bound(self, v: c.Verified, now: float) -> None:
        """The service account and the bound object still exist, with the uids the token names,
        and are not deleted (allowing the clock leeway)."""
        sa = self._get("serviceaccounts", v.namespace, v.name)
        _check_object("service account", sa, v.namespace, v.name, v.uid, now)
        if v.pod is not None:
            _check_object("pod", self._get("pods", v.namespace, v.pod["name"]), v.namespace, v.pod["name"],
                          v.pod["uid"], now)
        elif v.secret is not None:
            _check_object("secret", self._get("secrets", v.namespace, v.secret["name"]), v.namespace,
                          v.secret["name"], v.secret["uid"], now)
        elif v.node is not None and v.node["uid"]:
            _check_object("node", self._get("nodes", "", v.node["name"]), "", v.node["name"], v.node["uid"], now)


def _check_object(what: str, obj: dict | None, namespace: str, name: str, uid: str, now: float) -> None:
    key = f"{namespace}/{name}" if namespace else name
    if obj is None:
        raise c.TokenInvalid(f"{what} {key} not found")
    meta = obj.get("metadata") or {}
    if uid and meta.get("uid") != uid:
        raise c.TokenInvalid(f"{what} UID ({meta.get('uid')}) does not match claim ({uid})")
    deleted = parse_rfc3339(meta.get("deletionTimestamp"))
    if deleted is not None and deleted < now - c.LEEWAY:
        raise c.TokenInvalid(f"{what} {key} has been deleted")


def _b64decode(value: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
