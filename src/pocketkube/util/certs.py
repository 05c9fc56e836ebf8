"""X.509 pieces of TLS bootstrap, pure (no I/O): PKCS#10 requests (parse, check, build), signing
a client certificate with the cluster CA, and the CA hash a join token pins.

Used by the API server (CSR validation), the signing controller and the joining agent alike,
so it is a leaf library: it imports nothing of ours."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ONE_YEAR = 365 * 24 * 3600  # kube-controller-manager's --cluster-signing-duration default
# Upstream's signer backdates certificates by 5 minutes to tolerate clock skew.
_BACKDATE = datetime.timedelta(minutes=5)


def ca_hash(ca_pem: bytes) -> str:
    """The sha256 hex digest of the CA bundle's bytes, as a k3s secure token pins it."""
    return hashlib.sha256(ca_pem).hexdigest()


@dataclass(frozen=True)
class Subject:
    common_name: str
    organizations: tuple[str, ...]


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """A PEM CERTIFICATE REQUEST whose signature verifies; ValueError saying what is wrong."""
    text = pem.strip()
    if not text.startswith(b"-----BEGIN "):
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    block = text.split(b"\n", 1)[0]
    if block.strip() != b"-----BEGIN CERTIFICATE REQUEST-----":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(text)
    except ValueError as e:
        raise ValueError(f"x509: malformed certificate request: {e}") from None
    if not csr.is_signature_valid:
        raise ValueError("x509: ECDSA verification failure")
    return csr


def subject_of(csr: x509.CertificateSigningRequest) -> Subject:
    cn = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return Subject(str(cn[0]) if cn else "", tuple(str(o) for o in orgs))


def has_sans(csr: x509.CertificateSigningRequest) -> bool:
    """Whether the request asks for any subjectAltName (DNS, IP, email or URI)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return len(ext.value) > 0


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def build_request(key: ec.EllipticCurvePrivateKey, common_name: str, organizations: tuple[str, ...] = ()) -> bytes:
    """A PEM PKCS#10 request for a client certificate: CN and O only, as the kubelet's."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


_USAGE_FLAGS = {"digital signature": "digital_signature", "key encipherment": "key_encipherment",
                "content commitment": "content_commitment", "data encipherment": "data_encipherment",
                "key agreement": "key_agreement", "cert sign": "key_cert_sign", "crl sign": "crl_sign"}
_EXT_USAGES = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
               "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
               "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
               "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING}


def sign(request_pem: bytes, ca_cert_pem: bytes, ca_key_pem: bytes, usages: list[str], *,
         duration: int = ONE_YEAR, now: datetime.datetime | None = None) -> bytes:
    """The PEM certificate the cluster CA issues for a request: its subject and public key, the
    requested usages, valid from 5 minutes ago for `duration` seconds but never beyond the CA."""
    csr = parse_request(request_pem)
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    now = now or datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(seconds=duration), ca.not_valid_after_utc)
    flags = {v: False for v in _USAGE_FLAGS.values()}
    for u in usages:
        if u in _USAGE_FLAGS:
            flags[_USAGE_FLAGS[u]] = True
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**flags, encipher_only=False, decipher_only=False), critical=True))
    ext = [_EXT_USAGES[u] for u in usages if u in _EXT_USAGES]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_subject(cert_pem: bytes) -> tuple[Subject, datetime.datetime]:
    """A certificate's subject and its notAfter."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return Subject(str(cn[0]) if cn else "", tuple(str(o) for o in orgs)), cert.not_valid_after_utc


def validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """A certificate's notBefore and notAfter."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def check_certificate_pem(data: bytes) -> str | None:
    """Upstream's status.certificate rule: one or more CERTIFICATE PEM blocks; the problem or None."""
    blocks = 0
    rest = data
    while b"-----BEGIN " in rest:
        start = rest.index(b"-----BEGIN ")
        header = rest[start:].split(b"\n", 1)[0].strip()
        label = header.removeprefix(b"-----BEGIN ").removesuffix(b"-----").decode(errors="replace")
        if label != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{label}"'
        end_marker = b"-----END CERTIFICATE-----"
        end = rest.find(end_marker, start)
        if end < 0:
            break
        try:
            x509.load_pem_x509_certificate(rest[start:end + len(end_marker)])
        except ValueError as e:
            return f"x509: malformed certificate: {e}"
        blocks += 1
        rest = rest[end + len(end_marker):]
    return None if blocks else "must contain at least one CERTIFICATE PEM block"
