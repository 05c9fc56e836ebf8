"""First-start credentials: a cluster CA, the API server's serving certificate, bearer tokens,
and an admin kubeconfig. Everything lives in the data dir, readable by its owner only."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=3650)
# The control plane's users, which the bootstrap RBAC policy binds to their roles.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
INGRESS_USER = "system:pocketkube-ingress"  # the built-in Ingress controller (pocketkube/ingress)
# Names every serving certificate holds: the `kubernetes` Service's, as in-cluster clients use them.
DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local")


def serving_hosts(bind_address: str, advertise_address: str = "", service_ip: str = "",
                  extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The addresses the API server's certificate must cover besides DNS_NAMES: where it listens
    (127.0.0.1 always: the kubeconfig's), the address it advertises in the `kubernetes`
    endpoints, and that Service's ClusterIP (what in-cluster clients dial), as kube-apiserver's
    certificate has. A wildcard bind address is no name of the server."""
    hosts = [bind_address, "127.0.0.1", advertise_address, service_ip, *extra]
    return list(dict.fromkeys(h for h in hosts if h and h not in ("0.0.0.0", "::")))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class PKI:
    """Paths and lazy creation of the cluster's certificates and tokens in `data_dir/pki`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "pki"
        self.ca_cert = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self.server_cert = self.dir / "apiserver.crt"
        self.server_key = self.dir / "apiserver.key"
        self.tokens = self.dir / "tokens.yaml"
        # The service-account token signing key (kube-apiserver's --service-account-signing-key-file).
        self.sa_key = self.dir / "sa.key"
        self.sa_pub = self.dir / "sa.pub"

    def ensure(self, hosts: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.ca_cert.exists():
            self._make_ca()
        if not self.server_cert.exists() or not self._covers(hosts):
            self._make_server_cert(hosts)
        if not self.tokens.exists():
            _write_private(self.tokens, yaml.safe_dump({"admin": secrets.token_urlsafe(32), "nodes": {}}).encode())
        self.controlplane_token()
        self.scheduler_token()
        if not self.sa_key.exists() or not self.sa_pub.exists():
            self._make_sa_key()

    def _make_sa_key(self) -> None:
        """The key pair that signs service-account JWTs (ES256: P-256, as the rest of the PKI)."""
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(self.sa_key, _key_pem(key))
        self.sa_pub.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name("pocketkube-ca")).issuer_name(_name("pocketkube-ca"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        _write_private(self.ca_key, _key_pem(key))
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _covers(self, hosts: list[str]) -> bool:
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        return set(hosts) <= have

    def _make_server_cert(self, hosts: list[str]) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in DNS_NAMES]
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALIDITY)
                .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_private(self.server_key, _key_pem(key))
        self.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    # ---- tokens ----
    def _load_tokens(self) -> dict:
        return yaml.safe_load(self.tokens.read_text()) or {}

    def admin_token(self) -> str:
        return self._load_tokens()["admin"]

    def node_token(self, node: str) -> str:
        """The credential of one node agent, created on first use."""
        data = self._load_tokens()
        nodes = data.setdefault("nodes", {})
        if node not in nodes:
            nodes[node] = secrets.token_urlsafe(32)
            _write_private(self.tokens, yaml.safe_dump(data).encode())
        return nodes[node]

    def _token(self, key: str) -> str:
        data = self._load_tokens()
        if not data.get(key):
            data[key] = secrets.token_urlsafe(32)
            _write_private(self.tokens, yaml.safe_dump(data).encode())
        return data[key]

    def controlplane_token(self) -> str:
        """The credential of the controllers (user system:kube-controller-manager), created on first use."""
        return self._token("controlplane")

    def scheduler_token(self) -> str:
        """The credential of the scheduler (user system:kube-scheduler), created on first use."""
        return self._token("scheduler")

    def ingress_token(self) -> str:
        """The credential of the Ingress controller (user system:pocketkube-ingress), created on first use."""
        return self._token("ingress")

    def user_token(self, name: str, groups: tuple[str, ...] | list[str] = ()) -> str:
        """A static token for a user (kube-apiserver's --token-auth-file), created on first use;
        the server reads them at start."""
        data = self._load_tokens()
        users = data.setdefault("users", {})
        if name not in users:
            users[name] = {"token": secrets.token_urlsafe(32), "groups": list(groups)}
            _write_private(self.tokens, yaml.safe_dump(data).encode())
        return users[name]["token"]

    def identities(self) -> dict[str, tuple[str, list[str]]]:
        """token → (user name, groups), as the authenticator sees them."""
        data = self._load_tokens()
        out = {data["admin"]: ("kubernetes-admin", ["system:masters", "system:authenticated"])}
        if data.get("controlplane"):
            out[data["controlplane"]] = (CONTROLLER_MANAGER_USER, ["system:authenticated"])
        if data.get("scheduler"):
            out[data["scheduler"]] = (SCHEDULER_USER, ["system:authenticated"])
        if data.get("ingress"):
            out[data["ingress"]] = (INGRESS_USER, ["system:authenticated"])
        for node, tok in (data.get("nodes") or {}).items():
            out[tok] = (f"system:node:{node}", ["system:nodes", "system:authenticated"])
        for name, entry in (data.get("users") or {}).items():
            out[entry["token"]] = (name, [*entry.get("groups", []), "system:authenticated"])
        return out


def kubeconfig(server: str, ca_pem: str, token: str, name: str = "pocketkube",
               user: str = "pocketkube-admin") -> dict:
    import base64

    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
