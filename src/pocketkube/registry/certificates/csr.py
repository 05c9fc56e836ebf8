"""certificates.k8s.io/v1 CertificateSigningRequest: strategy and validation (upstream's
pkg/registry/certificates/certificates/strategy.go and pkg/apis/certificates/validation).

Three update endpoints, each changing only its part:
- the main resource: metadata only (spec and status stay as stored);
- `status`: the signer's — status.certificate (set once) and non-approval conditions;
- `approval`: the approver's — the Approved/Denied conditions (`kubectl certificate approve`).
At create the requester's identity (spec.username, uid, groups, extra) is recorded by the
server from the authenticated user, whatever the client sent (`set_requester`).
"""

from __future__ import annotations

import base64
import binascii

from pocketkube.api import errors
from pocketkube.api.fields import FieldError, Path, duplicate, forbidden, invalid, not_supported, required
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.api.validation import dns1123_subdomain_errors
from pocketkube.registry.strategy import Merge, Strategy, UpdatePath
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update
from pocketkube.util import certs

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
_TRUE_ONLY = (APPROVED, DENIED, FAILED)
VALID_USAGES = sorted([
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"])


def request_pem(csr: dict) -> bytes:
    """spec.request decoded from its base64 (empty on bad base64)."""
    try:
        return base64.b64decode((csr.get("spec") or {}).get("request") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return b""


def certificate_pem(csr: dict) -> bytes:
    try:
        return base64.b64decode((csr.get("status") or {}).get("certificate") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return b"\0invalid"


def conditions(csr: dict, kind: str | None = None) -> list[dict]:
    conds = [c for c in ((csr.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]
    return conds if kind is None else [c for c in conds if c.get("type") == kind]


def set_requester(csr: dict, user: tuple[str, list[str]] | None, info: dict | None = None) -> None:
    """PrepareForCreate: the requester as the server authenticated it."""
    spec = csr.get("spec")
    if not isinstance(spec, dict):
        return
    for k in ("username", "uid", "groups", "extra"):
        spec.pop(k, None)
    if user is None:
        return
    spec["username"] = user[0]
    spec["groups"] = list(user[1])
    if info and info.get("uid"):
        spec["uid"] = info["uid"]
    if info and info.get("extra"):
        spec["extra"] = info["extra"]


def _signer_name_errors(path: Path, name: object) -> list[FieldError]:
    """ValidateSignerName: `<fully qualified domain>/<path>`."""
    if not isinstance(name, str) or not name:
        return [required(path, "")]
    domain, sep, rest = name.partition("/")
    if not sep or not rest or not domain:
        return [invalid(path, name, "must be a fully qualified domain and path of the form 'example.com/signer-name'")]
    errs = dns1123_subdomain_errors(domain)
    if errs or "." not in domain:
        return [invalid(path, name, "validating the domain part: " + ("; ".join(errs) or
                                                                         "should be a domain with at least two segments separated by dots"))]
    return []


def _validate(csr: dict, *, old: dict | None = None) -> list[FieldError]:
    errs = validate_object_meta(csr, False, lambda name: [])
    spec = csr.get("spec") if isinstance(csr.get("spec"), dict) else {}
    path = Path("spec")
    try:
        certs.parse_request(request_pem(csr))
    except ValueError as e:
        errs.append(invalid(path.child("request"), spec.get("request", ""), str(e)))
    usages = spec.get("usages") or []
    old_usages = ((old or {}).get("spec") or {}).get("usages") or []
    if not usages:
        errs.append(required(path.child("usages"), ""))
    tolerate_unknown = any(u not in VALID_USAGES for u in old_usages)
    seen: set = set()
    for i, u in enumerate(usages if isinstance(usages, list) else []):
        if not tolerate_unknown and u not in VALID_USAGES:
            errs.append(not_supported(path.child("usages").index(i), u, VALID_USAGES))
        if u in seen and len(set(old_usages)) == len(old_usages):
            errs.append(duplicate(path.child("usages").index(i), u))
        seen.add(u)
    signer = spec.get("signerName")
    if signer == LEGACY_UNKNOWN_SIGNER and ((old or {}).get("spec") or {}).get("signerName") != signer:
        errs.append(invalid(path.child("signerName"), signer, "the legacy signerName is not allowed via this API version"))
    elif signer != LEGACY_UNKNOWN_SIGNER:
        errs.extend(_signer_name_errors(path.child("signerName"), signer))
    expiration = spec.get("expirationSeconds")
    if expiration is not None and (not isinstance(expiration, int) or expiration < 600):
        errs.append(invalid(path.child("expirationSeconds"), expiration,
                            "may not specify a duration less than 600 seconds (10 minutes)"))
    errs.extend(_condition_errors(csr, old))
    cert = certificate_pem(csr)
    unchanged = old is not None and cert == certificate_pem(old)
    if cert and not unchanged:
        problem = certs.check_certificate_pem(cert)
        if problem:
            errs.append(invalid(Path("status", "certificate"), "<certificate data>", problem))
    return errs


def _condition_errors(csr: dict, old: dict | None) -> list[FieldError]:
    errs: list[FieldError] = []
    path = Path("status", "conditions")
    seen: set = set()
    both_before = old is not None and conditions(old, APPROVED) and conditions(old, DENIED)
    has_approved = has_denied = False
    for i, c in enumerate(conditions(csr)):
        kind, status = c.get("type", ""), c.get("status", "")
        if not kind:
            errs.append(required(path.index(i).child("type"), ""))
        allowed = ["True"] if kind in _TRUE_ONLY else ["False", "True", "Unknown"]
        if not status:
            errs.append(required(path.index(i).child("status"), ""))
        elif status not in allowed:
            errs.append(not_supported(path.index(i).child("status"), status, allowed))
        if not both_before:
            if kind == APPROVED:
                has_approved = True
                if has_denied:
                    errs.append(invalid(path.index(i).child("type"), kind, "Approved and Denied conditions are mutually exclusive"))
            elif kind == DENIED:
                has_denied = True
                if has_approved:
                    errs.append(invalid(path.index(i).child("type"), kind, "Approved and Denied conditions are mutually exclusive"))
        if kind in seen:
            errs.append(duplicate(path.index(i).child("type"), kind))
        seen.add(kind)
    return errs


def validate(csr: dict) -> list[FieldError]:
    return _validate(csr)


def _validate_update(new: dict, old: dict, *, approval: bool, certificate: bool) -> list[FieldError]:
    errs = _validate(new, old=old)
    path = Path("status", "conditions")
    for kind in (APPROVED, DENIED, FAILED):
        if len(conditions(new, kind)) < len(conditions(old, kind)):
            errs.append(forbidden(path, f'updates may not remove a condition of type "{kind}"'))
    if not approval:
        for kind in (APPROVED, DENIED):
            before, after = conditions(old, kind), conditions(new, kind)
            if len(after) > len(before):
                errs.append(forbidden(path, f'updates may not add a condition of type "{kind}"'))
            elif len(after) == len(before) and after != before:
                errs.append(forbidden(path, f'updates may not modify a condition of type "{kind}"'))
    if certificate_pem(new) != certificate_pem(old):
        if not certificate:
            errs.append(forbidden(Path("status", "certificate"), "updates may not set certificate content"))
        elif (old.get("status") or {}).get("certificate"):
            errs.append(forbidden(Path("status", "certificate"), "updates may not modify existing certificate content"))
    return errs + validate_object_meta_update(new, old)


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return _validate_update(new, old, approval=False, certificate=False)


def _stamp_conditions(new: dict, old: dict) -> None:
    """populateConditionTimestamps: new or changed conditions get lastUpdateTime (and
    lastTransitionTime when their status changed)."""
    now = now_rfc3339()
    before = {c.get("type"): c for c in conditions(old)}
    for c in conditions(new):
        prev = before.get(c.get("type"))
        if not c.get("lastUpdateTime") and (prev is None or prev != c):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev.get("lastTransitionTime", now) if prev and \
                prev.get("status") == c.get("status") else now


def _keep_spec_and_status(new: dict, old: dict) -> None:
    """A main-resource update changes metadata only."""
    if "spec" in old:
        new["spec"] = old["spec"]
    if "status" in old:
        new["status"] = old["status"]
    else:
        new.pop("status", None)


def _prepare_status(new: dict, old: dict) -> None:
    """The status endpoint keeps spec and the approval conditions as stored."""
    status = new.setdefault("status", {})
    kept = [c for c in conditions(new) if c.get("type") not in (APPROVED, DENIED)]
    status["conditions"] = conditions(old, APPROVED) + conditions(old, DENIED) + kept
    if not status["conditions"]:
        status.pop("conditions")
    _stamp_conditions(new, old)


def _prepare_approval(new: dict, old: dict) -> None:
    """The approval endpoint keeps spec and status.certificate as stored."""
    status = new.setdefault("status", {})
    cert = (old.get("status") or {}).get("certificate")
    if cert:
        status["certificate"] = cert
    else:
        status.pop("certificate", None)
    _stamp_conditions(new, old)


def subject_restriction(csr: dict, requested_name: str) -> None:
    """The CertificateSubjectRestriction admission plugin: no system:masters certificates from
    the kube-apiserver client signer (that group bypasses authorization)."""
    if (csr.get("spec") or {}).get("signerName") != CLIENT_SIGNER:
        return
    try:
        subject = certs.subject_of(certs.parse_request(request_pem(csr)))
    except ValueError:
        return  # validation reports it
    if "system:masters" in subject.organizations:
        name = (csr.get("metadata") or {}).get("name", requested_name)
        raise errors.Forbidden(f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: use of '
                               f"{CLIENT_SIGNER} signer with system:masters group is not allowed",
                               {"name": name, "group": "certificates.k8s.io", "kind": "certificatesigningrequests"})


def strategy() -> Strategy:
    return Strategy(default=lambda csr: None, validate=validate, validate_update=validate_update,
                    admit=subject_restriction,
                    updates={"": UpdatePath(prepare=_keep_spec_and_status),
                             "status": UpdatePath(Merge.STATUS, prepare=_prepare_status, allocates=False,
                                                  validate_update=lambda n, o: _validate_update(
                                                      n, o, approval=False, certificate=True)),
                             "approval": UpdatePath(Merge.STATUS, prepare=_prepare_approval, allocates=False,
                                                    validate_update=lambda n, o: _validate_update(
                                                        n, o, approval=True, certificate=False))})
