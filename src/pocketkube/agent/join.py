"""Joining a cluster from another host: TLS bootstrap with a join token (kubelet TLS
bootstrapping with k3s' CA-pinning token).

1. GET <server>/cacerts without verifying the server (we do not know its CA yet) and compare
   the bundle's sha256 with the hash the join token pins; keep it as the CA from then on.
2. Authenticated by the bootstrap token `<id>.<secret>` (system:bootstrap:<id>), post a
   CertificateSigningRequest for `CN=system:node:<name>, O=system:nodes` to the signer
   kubernetes.io/kube-apiserver-client-kubelet, which the controller manager auto-approves and
   signs; wait for the certificate.
3. Keep key and certificate in <data-dir>/pki (mode 0600); the agent then authenticates with
   them. A restart reuses them while they are valid for this node and this CA.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pocketkube.api import bootstraptoken
from pocketkube.util import certs

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
APPROVAL_TIMEOUT = 120.0
# Renew (here: bootstrap again) when less than this is left of a certificate.
_MIN_VALIDITY = datetime.timedelta(hours=1)


class JoinError(Exception):
    """Joining failed for a reason the user must fix (the message says how)."""


@dataclass(frozen=True)
class Credentials:
    ca_file: Path
    cert_file: Path
    key_file: Path


def credential_paths(data_dir: Path) -> Credentials:
    d = Path(data_dir) / "pki"
    return Credentials(d / "ca.crt", d / "kubelet-client.crt", d / "kubelet-client.key")


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def stored_state(creds: Credentials, node_name: str, ca_hash: str, now: datetime.datetime) -> str:
    """What the stored credentials are good for: "use" (this node, this CA, well within their
    validity), "renew" (still valid, but in the last fifth of their lifetime or its last hour:
    the kubelet's rotation window, so a new CSR authenticated by them), or "none"."""
    try:
        ca = creds.ca_file.read_bytes()
        cert = creds.cert_file.read_bytes()
        subject, _ = certs.certificate_subject(cert)
        not_before, not_after = certs.validity(cert)
        creds.key_file.stat()
    except (OSError, ValueError):
        return "none"
    if certs.ca_hash(ca) != ca_hash or subject.common_name != f"system:node:{node_name}" or now >= not_after:
        return "none"
    left = not_after - now
    if left <= _MIN_VALIDITY or left < (not_after - not_before) / 5:
        return "renew"
    return "use"


def renewal_delay(cert_pem: bytes, now: datetime.datetime, *, cap: float = 3600.0) -> float:
    """Seconds until a certificate enters its renewal window (0: it is in it), at most `cap`
    so that a replaced certificate or a changed clock is noticed."""
    not_before, not_after = certs.validity(cert_pem)
    window = max(_MIN_VALIDITY, (not_after - not_before) / 5)
    return max(0.0, min(cap, (not_after - window - now).total_seconds()))


async def renew(server: str, node_name: str, creds: Credentials, timeout: float = 30.0) -> Credentials:
    """A new certificate for the node, requested as the node itself (selfnodeclient)."""
    ctx = ssl.create_default_context(cafile=str(creds.ca_file))
    ctx.load_cert_chain(str(creds.cert_file), str(creds.key_file))
    return await _request_certificate(server.rstrip("/"), node_name, creds, ctx, {"Accept": "application/json"},
                                      timeout)


def reusable(creds: Credentials, node_name: str, ca_hash: str, now: datetime.datetime) -> bool:
    """Whether stored credentials serve this node and this CA for a while yet."""
    return stored_state(creds, node_name, ca_hash, now) == "use"


def csr_body(request_pem: bytes) -> dict:
    """The CSR a kubelet posts for its client certificate."""
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": base64.b64encode(request_pem).decode(), "signerName": SIGNER,
                     "usages": ["digital signature", "client auth"]}}


def csr_outcome(csr: dict) -> tuple[bytes | None, str | None]:
    """(certificate, None) once issued, (None, why) once denied or failed, (None, None) while pending."""
    status = csr.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") in ("Denied", "Failed") and c.get("status", "True") == "True":
            what = "denied" if c["type"] == "Denied" else "failed"
            return None, f"the certificate request {csr['metadata']['name']} was {what}: " \
                         f"{c.get('reason', '')} {c.get('message', '')}".rstrip()
    if status.get("certificate"):
        return base64.b64decode(status["certificate"]), None
    return None, None


def _rejected(status: int, body: bytes) -> JoinError:
    if status == 401:
        return JoinError("join token rejected by the server (401): check the token or create a new one with "
                         "`pocketkube token create`")
    text = body.decode(errors="replace")[:300]
    return JoinError(f"the server refused the certificate request ({status}): {text}")


async def fetch_ca(session: aiohttp.ClientSession, server: str, ca_hash: str) -> bytes:
    """The server's CA bundle, checked against the pinned hash."""
    try:
        async with session.get(server + "/cacerts", ssl=False,
                               timeout=aiohttp.ClientTimeout(total=10)) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise JoinError(f"the server at {server} does not serve its CA at /cacerts ({resp.status})")
    except (aiohttp.ClientError, TimeoutError) as e:
        raise ConnectionError(f"cannot reach the API server at {server}: {e}") from None
    if certs.ca_hash(body) != ca_hash:
        raise JoinError("the server's CA does not match the token's hash")
    return body


async def bootstrap(server: str, join_token: str, node_name: str, data_dir: Path, *,
                    timeout: float = APPROVAL_TIMEOUT) -> Credentials:
    """Credentials for the node: reused when still good, else obtained through a CSR."""
    try:
        token = bootstraptoken.parse_join_token(join_token)
    except ValueError as e:
        raise JoinError(str(e)) from None
    server = server.rstrip("/")
    creds = credential_paths(data_dir)
    state = stored_state(creds, node_name, token.ca_hash, datetime.datetime.now(datetime.UTC))
    if state == "use":
        return creds
    if state == "renew":
        try:  # the node renews with its own certificate (selfnodeclient); the token is the fallback
            return await renew(server, node_name, creds, min(timeout, 30.0))
        except (JoinError, aiohttp.ClientError, ssl.SSLError):
            pass
    async with aiohttp.ClientSession(headers={"User-Agent": f"pocketkube-agent/{node_name}"}) as session:
        ca = await _with_retries(lambda: fetch_ca(session, server, token.ca_hash), time.monotonic() + 30)
    _write_private(creds.ca_file, ca)
    ctx = ssl.create_default_context(cadata=ca.decode())
    headers = {"Authorization": f"Bearer {token.bearer}", "Accept": "application/json"}
    return await _request_certificate(server, node_name, creds, ctx, headers, timeout)


async def _request_certificate(server: str, node_name: str, creds: Credentials, ctx: ssl.SSLContext, headers: dict,
                               timeout: float) -> Credentials:
    """Post the node's CSR as `headers`/`ctx` authenticate, wait for its certificate, keep both."""
    async with aiohttp.ClientSession(headers={"User-Agent": f"pocketkube-agent/{node_name}"}) as session:
        key = certs.new_key()
        request = certs.build_request(key, f"system:node:{node_name}", ("system:nodes",))
        async with session.post(server + CSR_PATH, json=csr_body(request), headers=headers, ssl=ctx) as resp:
            body = await resp.read()
            if resp.status != 201:
                raise _rejected(resp.status, body)
            name = (await resp.json())["metadata"]["name"]
        cert = await _wait_for_certificate(session, server + CSR_PATH + "/" + name, headers, ctx, timeout)
    # Both files are replaced as one step as far as a crash goes: a key never meets another's cert.
    _write_private(creds.key_file.with_suffix(".key.new"), certs.key_pem(key))
    _write_private(creds.cert_file.with_suffix(".crt.new"), cert)
    os.replace(creds.key_file.with_suffix(".key.new"), creds.key_file)
    os.replace(creds.cert_file.with_suffix(".crt.new"), creds.cert_file)
    return creds


async def _wait_for_certificate(session: aiohttp.ClientSession, url: str, headers: dict, ctx: ssl.SSLContext,
                                timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(url, headers=headers, ssl=ctx) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise _rejected(resp.status, body)
            cert, why = csr_outcome(await resp.json())
        if why:
            raise JoinError(why)
        if cert:
            return cert
        if time.monotonic() > deadline:
            raise JoinError(f"the certificate request was not approved within {timeout:.0f}s: approve it with "
                            f"`kubectl certificate approve {url.rsplit('/', 1)[-1]}`")
        await asyncio.sleep(0.25)


async def _with_retries(call, deadline: float):
    """The server may still be starting (`up` and a joining agent started together)."""
    while True:
        try:
            return await call()
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def token_reviewer(client, node_name: str):
    """The log server's check of a bearer token it does not know: a TokenReview (as the kubelet's
    --authentication-token-webhook) that must name this node, the identity the API server
    presents to a node's endpoint."""
    from pocketkube.api.resources import Resource

    reviews = Resource("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", namespaced=False)

    async def review(token: str) -> bool:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            answer = await client.create(reviews, body)
        except Exception:  # noqa: BLE001 - any failure is a refusal
            return False
        status = answer.get("status") or {}
        return bool(status.get("authenticated")) and (status.get("user") or {}).get("username") == \
            f"system:node:{node_name}"
    return review
