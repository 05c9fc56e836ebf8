"""Printers for certificates.k8s.io/v1: CertificateSigningRequests (upstream's
printCertificateSigningRequest: signer, requester, requested duration and the condition)."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_text,
    dig,
    human_duration,
    name_of,
)


def csr_condition(csr: dict) -> str:
    """Approved/Denied, then Failed, then Issued once a certificate is there; else Pending."""
    approved = denied = failed = False
    for c in dig(csr, "status", "conditions") or []:
        kind = c.get("type") if isinstance(c, dict) else None
        approved |= kind == "Approved"
        denied |= kind == "Denied"
        failed |= kind == "Failed"
    parts = []
    if denied:
        parts.append("Denied")
    elif approved:
        parts.append("Approved")
    if failed:
        parts.append("Failed")
    if dig(csr, "status", "certificate"):
        parts.append("Issued")
    return ",".join(parts) or "Pending"


def _cells(csr: dict, now: float) -> list[Cell]:
    seconds = dig(csr, "spec", "expirationSeconds")
    duration = human_duration(seconds) if isinstance(seconds, int) else "<none>"
    return [name_of(csr), age(csr, now), as_text(dig(csr, "spec", "signerName")),
            as_text(dig(csr, "spec", "username")), duration, csr_condition(csr)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("certificates.k8s.io", "certificatesigningrequests"): Printer(
        (NAME, AGE, Column("SignerName", ""), Column("Requestor", ""), Column("RequestedDuration", ""),
         Column("Condition", "")), _cells),
}
