"""TLS for the Ingress listeners: one SSLContext per certificate, chosen by SNI, and a self-signed
default certificate for names no Ingress covers (ingress-nginx's "Fake Certificate")."""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_CN = "Kubernetes Ingress Controller Fake Certificate"


def self_signed(common_name: str = DEFAULT_CN, dns_names: tuple[str, ...] = ("ingress.local",)) -> tuple[bytes, bytes]:
    """A fresh self-signed certificate and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context for one certificate (ssl loads chains from files only: a private temp dir)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="pk-ingress-tls-") as d:
        cert_file, key_file = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        for path, data in ((cert_file, cert_pem), (key_file, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class SniContexts:
    """The listening context (default certificate) and, by server name, the Ingresses' certificates.

    `lookup(host)` gives the (cert, key) pair of the current routing table; contexts are cached by
    the certificate's digest, so a Secret update takes effect on the next handshake."""

    def __init__(self, lookup: Callable[[str], tuple[bytes, bytes] | None]) -> None:
        self._lookup = lookup
        self._cache: dict[bytes, ssl.SSLContext] = {}
        self.default = server_context(*self_signed())
        self.default.sni_callback = self._pick

    def context_for(self, pair: tuple[bytes, bytes]) -> ssl.SSLContext | None:
        digest = hashlib.sha256(pair[0] + b"\0" + pair[1]).digest()
        ctx = self._cache.get(digest)
        if ctx is None:
            try:
                ctx = server_context(*pair)
            except (ssl.SSLError, ValueError, OSError):
                return None
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[digest] = ctx
        return ctx

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return None
        pair = self._lookup(server_name)
        if pair is not None:
            ctx = self.context_for(pair)
            if ctx is not None:
                sslobj.context = ctx
        return None
