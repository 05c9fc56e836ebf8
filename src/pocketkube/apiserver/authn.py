"""Authenticators beside the static tokens and service-account JWTs: bootstrap tokens (Secrets
of type bootstrap.kubernetes.io/token in kube-system) and client certificates signed by the
cluster CA (kube-apiserver's --client-ca-file: CN is the user, O the groups)."""

from __future__ import annotations

import datetime
import ssl

from pocketkube.api import bootstraptoken

AUTHENTICATED = "system:authenticated"
# Where an agent on another host fetches the CA bundle before it trusts the server: unauthenticated,
# and the agent checks the bundle against the hash its join token pins (k3s serves it here too).
CACERTS_PATH = "/cacerts"


def bootstrap_identity(registry, token: str, now: datetime.datetime | None = None) -> tuple[str, list[str]] | None:
    """The identity a bearer token of bootstrap-token form authenticates as, or None."""
    m = bootstraptoken.TOKEN_RE.match(token)
    if m is None:
        return None
    secret = registry.store("", "secrets").try_get(bootstraptoken.NAMESPACE, bootstraptoken.SECRET_PREFIX + m.group(1))
    ident = bootstraptoken.authenticate(secret, m.group(1), m.group(2), now or datetime.datetime.now(datetime.UTC))
    if ident is None:
        return None
    return ident[0], [*ident[1], AUTHENTICATED]


def certificate_identity(peercert: dict | None) -> tuple[str, list[str]] | None:
    """The user of a verified client certificate (as ssl's getpeercert() decodes it): CN → user,
    each O → a group. A certificate without a CN authenticates no one."""
    if not peercert:
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return cn, [*dict.fromkeys(orgs), AUTHENTICATED]


def serving_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """The server's TLS context: its certificate, and client certificates verified against the
    cluster CA when a client presents one (bearer tokens need none)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
