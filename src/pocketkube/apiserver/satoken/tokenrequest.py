"""serviceaccounts/token (TokenRequest) and tokenreviews (TokenReview), authentication.k8s.io/v1.

As upstream's pkg/registry/core/serviceaccount/storage/token.go: the service account must
exist; a bound object (Pod, Secret or Node) must exist, with the uid given if one is; a pod must
run as that service account. Expiration defaults to an hour, must be at least ten minutes and at
most 2^32 seconds, and is capped by the server's maximum (with a warning).
"""

from __future__ import annotations

import time
from typing import Any

from pocketkube.api import errors
from pocketkube.api.fields import FieldError, Path, invalid
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.apiserver.satoken import claims as c
from pocketkube.apiserver.satoken.signer import (
    EXTENDED_EXPIRATION_SECONDS,
    WARN_ONLY_EXPIRATION_SECONDS,
    Signer,
)
from pocketkube.registry.registry import Registry

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest(f"{what} must be an object")
    return value


def _invalid(name: str, errs: list[FieldError]) -> errors.Invalid:
    return errors.Invalid("TokenRequest", name, errs, GROUP)


def read_spec(req: dict) -> tuple[list[str], int, dict | None]:
    """(audiences, expirationSeconds, boundObjectRef) of a request, defaulted as the v1 API
    defaults them; malformed values are 400s, out-of-range ones 422s."""
    spec = _mapping(req.get("spec"), "spec")
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.BadRequest("spec.audiences must be a list of strings")
    exp = spec.get("expirationSeconds")
    if exp is None:
        exp = DEFAULT_EXPIRATION_SECONDS
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise errors.BadRequest("spec.expirationSeconds must be an integer")
    errs = []
    path = Path("spec", "expirationSeconds")
    if exp < MIN_EXPIRATION_SECONDS:
        errs.append(invalid(path, exp, "may not specify a duration less than 10 minutes"))
    if exp > MAX_EXPIRATION_SECONDS:
        errs.append(invalid(path, exp, "may not specify a duration larger than 2^32 seconds"))
    if errs:
        raise _invalid("", errs)
    ref = spec.get("boundObjectRef")
    return audiences, exp, (_mapping(ref, "spec.boundObjectRef") if ref is not None else None)


def _check_identity(req: dict, namespace: str, name: str) -> None:
    meta = _mapping(req.get("metadata"), "metadata")
    if meta.get("name") and meta["name"] != name:
        raise _invalid(name, [invalid(Path("metadata", "name"), meta["name"],
                                      "must match the service account name if specified")])
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise _invalid(name, [invalid(Path("metadata", "namespace"), meta["namespace"],
                                      "must match the service account namespace if specified")])


def _bound_objects(registry: Registry, namespace: str, sa_name: str, ref: dict) -> dict[str, dict | None]:
    """The pod, secret and node a boundObjectRef names (those it does not name are None)."""
    api_version, kind, name = str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""), str(ref.get("name") or "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    out: dict[str, dict | None] = {"pod": None, "secret": None, "node": None}
    if group == "" and kind == "Pod":
        pod = registry.store("", "pods").get(namespace, name)
        running_as = (pod.get("spec") or {}).get("serviceAccountName", "")
        if running_as != sa_name:
            raise errors.BadRequest(f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                                    f'serviceaccount "{running_as}"')
        out["pod"] = pod
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            out["node"] = registry.store("", "nodes").try_get("", node_name)
        obj = pod
    elif group == "" and kind == "Secret":
        obj = out["secret"] = registry.store("", "secrets").get(namespace, name)
    elif group == "" and kind == "Node":
        obj = out["node"] = registry.store("", "nodes").get("", name)
    else:
        version = api_version.rsplit("/", 1)[-1]
        raise errors.BadRequest(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
    uid = ref.get("uid")
    if uid and uid != obj["metadata"].get("uid"):
        raise errors.Conflict(
            f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound object reference ({uid}) '
            "does not match the UID in record. The object might have been deleted and then recreated",
            {"name": name, "kind": kind})
    return out


def create_token(registry: Registry, signer: Signer, namespace: str, name: str, req: dict,
                 now: float | None = None) -> tuple[dict, list[str]]:
    """The TokenRequest answered (status.token set) and the warnings to send with it."""
    _check_identity(req, namespace, name)
    sa = registry.store("", "serviceaccounts").get(namespace, name)
    audiences, exp, ref = read_spec(req)
    audiences = audiences or list(signer.audiences)
    bound = _bound_objects(registry, namespace, name, ref) if ref is not None else \
        {"pod": None, "secret": None, "node": None}
    warnings = []
    if signer.max_expiration_seconds and exp > signer.max_expiration_seconds:
        warnings.append(f"requested expiration of {exp} seconds shortened to {signer.max_expiration_seconds} seconds")
        exp = signer.max_expiration_seconds
    # A kubelet's projected token of the default lifetime is extended, with a warning mark.
    lifetime, warn_after = exp, 0
    if signer.extend_expiration and bound["pod"] is not None and exp == WARN_ONLY_EXPIRATION_SECONDS \
            and set(audiences) <= set(signer.audiences):
        lifetime, warn_after = EXTENDED_EXPIRATION_SECONDS, exp
    t = int(now if now is not None else time.time())
    claims = c.make_claims(sa, issuer=signer.issuer, audiences=audiences, expiration_seconds=lifetime, now=t,
                           pod=bound["pod"], secret=bound["secret"], node=bound["node"], warn_after=warn_after)
    spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": exp, "boundObjectRef": ref}
    out = {"kind": "TokenRequest", "apiVersion": API_VERSION,
           "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_rfc3339(t)},
           "spec": spec,
           "status": {"token": signer.issue(claims), "expirationTimestamp": now_rfc3339(t + exp)}}
    return out, warnings


def review_token(authenticate, req: dict, api_audiences: tuple[str, ...]) -> dict:
    """A TokenReview answered: `authenticate(token, audiences)` returns the identity or raises
    TokenInvalid. Without spec.audiences the token is reviewed for the API's own."""
    spec = _mapping(req.get("spec"), "spec")
    token = spec.get("token")
    audiences = spec.get("audiences") or []
    if not isinstance(token, str) or not token:
        raise errors.BadRequest("token is required for TokenReview in authentication")
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.BadRequest("spec.audiences must be a list of strings")
    out_spec: dict[str, Any] = {"token": token}
    if audiences:
        out_spec["audiences"] = audiences
    try:
        ident = authenticate(token, audiences)
    except c.TokenInvalid as e:
        status: dict[str, Any] = {"user": {}, "error": f"[invalid bearer token, {e}]"}
    else:
        user: dict[str, Any] = {"username": ident.name, "uid": ident.uid, "groups": ident.groups}
        if ident.extra:
            user["extra"] = ident.extra
        status = {"authenticated": True, "user": user, "audiences": audiences or list(api_audiences)}
    return {"kind": "TokenReview", "apiVersion": API_VERSION, "metadata": {"creationTimestamp": None},
            "spec": out_spec, "status": status}
