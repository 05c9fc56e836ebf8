"""The certificate controllers: csrapproving and csrsigning (upstream's
pkg/controller/certificates/approver/sarapprove.go and .../signer).

- The approver looks at pending `kubernetes.io/kube-apiserver-client-kubelet` requests that
  are node client certificates (O=system:nodes, CN=system:node:<name>, no SANs, client usages)
  and asks a SubjectAccessReview whether the requester may create
  `certificatesigningrequests/selfnodeclient` (a node renewing its own) or `.../nodeclient`
  (a bootstrap token); allowed → the Approved condition (reason AutoApproved). It never denies:
  a request it does not approve waits for a human (`kubectl certificate approve|deny`).
- The signer issues certificates for approved requests of the two kube-apiserver client signers
  with the cluster CA, for min(spec.expirationSeconds, the signing duration); a request its
  signer may not sign gets the Failed condition (reason SignerValidationFailure).

The decisions are pure functions (`node_client_problem`, `approval_checks`, `plan_signing`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers
from pocketkube.util import certs

log = logging.getLogger(__name__)

CSRS = BY_PLURAL[("certificates.k8s.io", "certificatesigningrequests")]
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
# What a kubelet client certificate may be used for (upstream's kubelet client usages).
_NODE_CLIENT_USAGES = {"key encipherment", "digital signature", "client auth"}
_CLIENT_USAGES = {"key encipherment", "digital signature", "client auth"}

# A SubjectAccessReview: (spec.user, groups, uid, extra, subresource) -> allowed?
Review = Callable[[dict, str], Awaitable[bool]]


def _conditions(csr: dict) -> list[dict]:
    return [c for c in ((csr.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]


def has_condition(csr: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in _conditions(csr))


def _request(csr: dict) -> bytes:
    try:
        return base64.b64decode((csr.get("spec") or {}).get("request") or "")
    except ValueError:
        return b""


def node_client_problem(csr: dict) -> str | None:
    """Why the CSR is not a kubelet client certificate request (None: it is one)."""
    try:
        parsed = certs.parse_request(_request(csr))
    except ValueError as e:
        return f"unable to parse csr: {e}"
    subject = certs.subject_of(parsed)
    if subject.organizations != (NODES_GROUP,):
        return f'organization must be ["{NODES_GROUP}"]'
    if not subject.common_name.startswith(NODE_PREFIX):
        return f'common name must begin with "{NODE_PREFIX}"'
    if certs.has_sans(parsed):
        return "subject alternative names are not allowed"
    usages = set((csr.get("spec") or {}).get("usages") or [])
    if "client auth" not in usages or not usages <= _NODE_CLIENT_USAGES:
        return f"usages must be a subset of {sorted(_NODE_CLIENT_USAGES)} and include client auth"
    return None


def approval_checks(csr: dict) -> list[str]:
    """The subresources whose `create` the requester must hold for the approver to approve, in
    the order tried: none for requests the approver does not handle."""
    spec = csr.get("spec") or {}
    if has_condition(csr, "Approved") or has_condition(csr, "Denied"):
        return []
    if spec.get("signerName") != KUBELET_CLIENT_SIGNER or node_client_problem(csr) is not None:
        return []
    cn = certs.subject_of(certs.parse_request(_request(csr))).common_name
    checks = ["nodeclient"]
    if cn == spec.get("username"):
        checks.insert(0, "selfnodeclient")
    return checks


def approved(csr: dict) -> dict:
    """The CSR with the approver's Approved condition appended."""
    now = now_rfc3339()
    cond = {"type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
            "lastUpdateTime": now, "lastTransitionTime": now}
    return {**csr, "status": {**(csr.get("status") or {}), "conditions": [*_conditions(csr), cond]}}


@dataclass(frozen=True)
class SignPlan:
    certificate: bytes = b""
    failure: str = ""  # the Failed condition's message

    @property
    def nothing(self) -> bool:
        return not self.certificate and not self.failure


def plan_signing(csr: dict, ca_cert: bytes, ca_key: bytes, max_duration: int = certs.ONE_YEAR) -> SignPlan:
    """What the signer does with a CSR: nothing (not ours, not approved, done), sign, or fail."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName")
    if signer not in (KUBELET_CLIENT_SIGNER, CLIENT_SIGNER):
        return SignPlan()
    if not has_condition(csr, "Approved") or has_condition(csr, "Denied") or has_condition(csr, "Failed"):
        return SignPlan()
    if (csr.get("status") or {}).get("certificate"):
        return SignPlan()
    usages = list(spec.get("usages") or [])
    if signer == KUBELET_CLIENT_SIGNER:
        problem = node_client_problem(csr)
    else:
        problem = None if "client auth" in usages and set(usages) <= _CLIENT_USAGES else \
            f"usages must be a subset of {sorted(_CLIENT_USAGES)} and include client auth"
    if problem is not None:
        return SignPlan(failure=f"invalid request for signer {signer}: {problem}")
    duration = max_duration
    requested = spec.get("expirationSeconds")
    if isinstance(requested, int) and requested >= 600:
        duration = min(duration, requested)
    return SignPlan(certificate=certs.sign(_request(csr), ca_cert, ca_key, usages, duration=duration))


class _CSRController(Controller):
    """A controller keyed by CertificateSigningRequest name, woken by every add and update."""

    def __init__(self, client: Client, informers: SharedInformers) -> None:
        self.client = client
        self.csrs = informers.get(CSRS)
        super().__init__([self.csrs], workers=1)
        self.csrs.add_handlers(on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new))

    def _enqueue(self, csr: dict) -> None:
        self.queue.add(csr["metadata"]["name"])


class ApprovingController(_CSRController):
    name = "csrapproving"

    def __init__(self, client: Client, informers: SharedInformers, review: Review) -> None:
        self.review = review
        super().__init__(client, informers)

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None:
            return
        for subresource in approval_checks(csr):
            if await self.review(csr.get("spec") or {}, subresource):
                log.info("csrapproving: approving %s (%s)", key, subresource)
                try:
                    await self.client.update(CSRS, approved(csr), subresource="approval")
                except errors.NotFound:
                    pass
                return


class SigningController(_CSRController):
    name = "csrsigning"

    def __init__(self, client: Client, informers: SharedInformers, ca_cert: bytes, ca_key: bytes,
                 max_duration: int = certs.ONE_YEAR) -> None:
        self.ca_cert, self.ca_key, self.max_duration = ca_cert, ca_key, max_duration
        super().__init__(client, informers)

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None:
            return
        plan = plan_signing(csr, self.ca_cert, self.ca_key, self.max_duration)
        if plan.nothing:
            return
        status = dict(csr.get("status") or {})
        if plan.certificate:
            status["certificate"] = base64.b64encode(plan.certificate).decode()
            log.info("csrsigning: signed %s", key)
        else:
            now = now_rfc3339()
            status["conditions"] = [*_conditions(csr), {
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": plan.failure,
                "lastUpdateTime": now, "lastTransitionTime": now}]
        try:
            await self.client.update_status(CSRS, {**csr, "status": status})
        except errors.NotFound:
            pass
