"""Service account tokens of projected volumes through the TokenRequest API, bound to the pod,
refreshed once 80 % of their lifetime has passed (pkg/kubelet/token/token_manager.go)."""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.client.interface import Client

SERVICEACCOUNTS = BY_PLURAL[("", "serviceaccounts")]
REFRESH_FRACTION = 0.8
MAX_AGE = 24 * 3600.0  # upstream refreshes a token older than a day whatever its lifetime


@dataclass(frozen=True)
class Token:
    value: str
    issued: float
    expires: float

    def refresh_at(self) -> float:
        return self.issued + min(REFRESH_FRACTION * (self.expires - self.issued), MAX_AGE)


def request_body(pod: dict, audience: str, expiration_seconds: int) -> dict:
    m = pod.get("metadata") or {}
    spec: dict = {"expirationSeconds": expiration_seconds,
                  "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": m.get("name", ""),
                                     "uid": m.get("uid", "")}}
    if audience:  # none: the API server's own audiences
        spec["audiences"] = [audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


class TokenError(Exception):
    pass


async def request(client: Client, pod: dict, audience: str, expiration_seconds: int, now: float) -> Token:
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    try:
        answer = await client.create_subresource(SERVICEACCOUNTS, ns, sa, "token",
                                                 request_body(pod, audience, expiration_seconds))
    except errors.ApiError as e:
        raise TokenError(f'failed to fetch token: {e}') from None
    status = answer.get("status") or {}
    token = status.get("token")
    if not token:
        raise TokenError("failed to fetch token: the TokenRequest answer has no token")
    expires = parse_rfc3339(status.get("expirationTimestamp"), default=now + expiration_seconds)
    return Token(token, now, expires)
