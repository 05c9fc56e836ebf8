"""Bootstrap tokens and join tokens, pure.

A bootstrap token `<id>.<secret>` ([a-z0-9]{6}.[a-z0-9]{16}) lives in the Secret
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` (upstream's
k8s.io/cluster-bootstrap/token/api); with `usage-bootstrap-authentication: "true"` it
authenticates as `system:bootstrap:<id>` in `system:bootstrappers` (plus `auth-extra-groups`)
until its `expiration` (RFC 3339).

A join token, k3s' "secure" format, pins the cluster CA too:
`K10<sha256 hex of the CA bundle>::<id>.<secret>`.
"""

from __future__ import annotations

import base64
import datetime
import re
import secrets
from dataclasses import dataclass

SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
DEFAULT_TTL = 24 * 3600
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
JOIN_PREFIX = "K10"


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str  # sha256 hex of the CA bundle
    token_id: str
    token_secret: str

    @property
    def bearer(self) -> str:
        return f"{self.token_id}.{self.token_secret}"

    def __str__(self) -> str:
        return f"{JOIN_PREFIX}{self.ca_hash}::{self.bearer}"


def parse_join_token(text: str) -> JoinToken:
    """`K10<hash>::<id>.<secret>`; ValueError naming the expected form."""
    text = text.strip()
    form = "expected K10<sha256 of the CA>::<id>.<secret> (see `pocketkube token create`)"
    if not text.startswith(JOIN_PREFIX) or "::" not in text:
        raise ValueError(f"malformed join token: {form}")
    digest, _, bearer = text[len(JOIN_PREFIX):].partition("::")
    m = TOKEN_RE.match(bearer)
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or m is None:
        raise ValueError(f"malformed join token: {form}")
    return JoinToken(digest, m.group(1), m.group(2))


def generate() -> tuple[str, str]:
    """A fresh (id, secret) pair from the token alphabet."""
    pick = lambda n: "".join(secrets.choice(_ALPHABET) for _ in range(n))  # noqa: E731
    return pick(6), pick(16)


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_secret(token_id: str, token_secret_value: str, ttl: int = DEFAULT_TTL, *,
                 now: datetime.datetime | None = None, description: str = "",
                 extra_groups: tuple[str, ...] = ()) -> dict:
    """The Secret that holds a bootstrap token for authentication (ttl 0: never expires)."""
    now = now or datetime.datetime.now(datetime.UTC)
    data = {"token-id": token_id, "token-secret": token_secret_value, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true"}
    if ttl > 0:
        data["expiration"] = _rfc3339(now + datetime.timedelta(seconds=ttl))
    if description:
        data["description"] = description
    if extra_groups:
        data["auth-extra-groups"] = ",".join(extra_groups)
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": SECRET_PREFIX + token_id, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def secret_data(secret: dict) -> dict[str, str]:
    """The Secret's data decoded (undecodable values as empty strings)."""
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v, validate=True).decode()
        except (ValueError, TypeError):
            out[k] = ""
    for k, v in (secret.get("stringData") or {}).items():
        out[k] = str(v)
    return out


def parse_time(value: str) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def expired(secret: dict, now: datetime.datetime) -> bool:
    """Whether a bootstrap token Secret's expiration has passed (no or a bad expiration: never)."""
    exp = parse_time(secret_data(secret).get("expiration", ""))
    return exp is not None and now >= exp


def authenticate(secret: dict | None, token_id: str, token_secret_value: str,
                 now: datetime.datetime) -> tuple[str, list[str]] | None:
    """(user, groups) the token authenticates as, or None (upstream's bootstrap authenticator:
    the right type and name, a matching secret, usage-bootstrap-authentication, not expired,
    not being deleted, valid extra groups)."""
    if secret is None or secret.get("type") != SECRET_TYPE:
        return None
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    data = secret_data(secret)
    if data.get("token-id", token_id) != token_id:
        return None
    if not secrets.compare_digest(data.get("token-secret", "").encode(), token_secret_value.encode()):
        return None
    if data.get("usage-bootstrap-authentication") != "true":
        return None
    exp = data.get("expiration")
    if exp:
        t = parse_time(exp)
        if t is None or now >= t:
            return None
    groups = [GROUP]
    for g in filter(None, (s.strip() for s in data.get("auth-extra-groups", "").split(","))):
        if not _EXTRA_GROUP_RE.match(g):
            return None
        groups.append(g)
    return USER_PREFIX + token_id, groups
