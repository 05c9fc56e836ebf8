"""etcd clusters for tests: N members of the system etcd (Debian's etcd-server 3.4) on free
loopback ports in a temporary directory, plain or TLS.

    with etcd_cluster(3) as c:            # waits until a leader exists
        backend = EtcdBackend(parse_etcd(c.url, c.tls_files))
        c.kill(c.leader()); c.restart(i)

Members log to DIR/mN.log (zap to stderr). Teardown kills every member and removes the
directory. `etcd_backend(path)` is a started backend on a fresh 1-member cluster (the shape of the
storage conformance suite's factories); `etcd_backend_factory(cluster)` makes fresh backends over
one cluster, each call emptying the keyspace first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pocketkube.storage.datastore import TLSFiles, parse_etcd

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
HINT = "etcd (apt-get install etcd-server etcd-client)"


def have_etcd() -> bool:
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_certs(d: Path) -> TLSFiles:
    """A CA and one member/client certificate (SAN IP 127.0.0.1, DNS etcd and localhost)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pocketkube-test-etcd-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.DNSName("etcd"), x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TLSFiles(str(d / "ca.pem"), str(d / "etcd.pem"), str(d / "etcd-key.pem"))
    Path(files.cafile).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.certfile).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(files.keyfile).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return files


class EtcdCluster:
    def __init__(self, members: int = 3, *, tls: bool = False, base: Path | None = None,
                 directory: Path | None = None) -> None:
        """A temp dir under `base`, removed on close; or `directory`, kept: a cluster made again on
        it starts from the same data on the same ports (a restart)."""
        self.n = members
        self.tls = tls
        self.owned = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="pk-etcd-", dir=base)) if directory is None else directory
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "cluster.json"
        if saved.exists():
            state = json.loads(saved.read_text())
            self.client_ports, self.peer_ports, self.token = state["client"], state["peer"], state["token"]
        else:
            ports = free_ports(2 * members)
            self.client_ports, self.peer_ports = ports[:members], ports[members:]
            self.token = f"pk-{os.getpid()}-{self.client_ports[0]}"
            saved.write_text(json.dumps({"client": self.client_ports, "peer": self.peer_ports, "token": self.token}))
        self.procs: list[subprocess.Popen | None] = [None] * members
        self.tls_files = write_certs(self.dir) if tls and not (self.dir / "ca.pem").exists() else (
            TLSFiles(str(self.dir / "ca.pem"), str(self.dir / "etcd.pem"), str(self.dir / "etcd-key.pem"))
            if tls else TLSFiles())

    # ---- addresses ----
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def client_url(self, i: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_ports[i]}"

    @property
    def url(self) -> str:
        """The --datastore URL of every member."""
        return ("etcds://" if self.tls else "etcd://") + ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def spec(self, prefix: str = "/registry"):
        return parse_etcd(f"{self.url}?prefix={prefix}", self.tls_files)

    # ---- members ----
    def _args(self, i: int) -> list[str]:
        peers = ",".join(f"m{j}={self.scheme}://127.0.0.1:{p}" for j, p in enumerate(self.peer_ports))
        args = [ETCD, "--name", f"m{i}", "--data-dir", str(self.dir / f"m{i}"),
                "--logger=zap", "--log-outputs=stderr",
                "--listen-client-urls", self.client_url(i), "--advertise-client-urls", self.client_url(i),
                "--listen-peer-urls", f"{self.scheme}://127.0.0.1:{self.peer_ports[i]}",
                "--initial-advertise-peer-urls", f"{self.scheme}://127.0.0.1:{self.peer_ports[i]}",
                "--initial-cluster", peers, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new", "--listen-metrics-urls", ""]
        if self.tls:
            f = self.tls_files
            args += ["--cert-file", f.certfile, "--key-file", f.keyfile, "--trusted-ca-file", f.cafile,
                     "--client-cert-auth", "--peer-cert-file", f.certfile, "--peer-key-file", f.keyfile,
                     "--peer-trusted-ca-file", f.cafile, "--peer-client-cert-auth"]
        return args

    def start_member(self, i: int) -> None:
        log = open(self.dir / f"m{i}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.procs[i] = subprocess.Popen(self._args(i), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for i in range(self.n):
            self.start_member(i)
        self.wait_leader(timeout)
        return self

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(10)
        self.procs[i] = None

    def restart(self, i: int) -> None:
        self.kill(i, signal.SIGTERM)
        self.start_member(i)

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    # ---- etcdctl ----
    def etcdctl(self, *args: str, members: list[int] | None = None, timeout: float = 10.0) -> str:
        eps = ",".join(self.client_url(i) for i in (members if members is not None else range(self.n)))
        cmd = [ETCDCTL, "--endpoints", eps, "--dial-timeout", "2s", "--command-timeout", "3s"]
        if self.tls:
            f = self.tls_files
            cmd += ["--cacert", f.cafile, "--cert", f.certfile, "--key", f.keyfile]
        env = {**os.environ, "ETCDCTL_API": "3"}
        out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def statuses(self) -> dict[int, dict]:
        out = {}
        for i in self.alive():
            try:
                st = json.loads(self.etcdctl("endpoint", "status", "-w", "json", members=[i], timeout=5))
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError):
                continue
            if st:
                out[i] = st[0]["Status"]
        return out

    def leader(self) -> int | None:
        """The index of the member that leads now (None without one)."""
        for i, st in self.statuses().items():
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return i
        return None

    def wait_leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [i for i, p in enumerate(self.procs) if p is not None and p.poll() is not None]
            if dead:
                raise RuntimeError(f"etcd member m{dead[0]} exited: {self.log_tail(dead[0])}")
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.1)
        raise TimeoutError(f"no etcd leader within {timeout}s: {self.log_tail(0)}")

    def log_tail(self, i: int, n: int = 2000) -> str:
        try:
            return (self.dir / f"m{i}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wipe(self) -> None:
        """Delete every key (revisions go on)."""
        self.etcdctl("del", "", "--from-key")

    def close(self) -> None:
        for i in range(self.n):
            with contextlib.suppress(Exception):
                self.kill(i)
        if self.owned:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def etcd_cluster(members: int = 3, *, tls: bool = False) -> Iterator[EtcdCluster]:
    c = EtcdCluster(members, tls=tls)
    try:
        yield c.start()
    finally:
        c.close()


@contextlib.asynccontextmanager
async def etcd_backend(path: Path | None = None, *, members: int = 1, **kw) -> AsyncIterator:
    """A started EtcdBackend (prefix "/": every key is mirrored) on a cluster of its own in
    `path`/etcd (made again on the same path: the same data, as a restart), removed with `path`;
    the shape of the storage conformance suite's FACTORIES (tests/conformance/storage)."""
    from pocketkube.storage.etcd.backend import EtcdBackend

    cluster = EtcdCluster(members, directory=path / "etcd") if path is not None else EtcdCluster(members)
    try:
        await asyncio.to_thread(cluster.start)
        backend = EtcdBackend(cluster.spec("/"), **kw)
        await backend.start()
        try:
            yield backend
        finally:
            await backend.close()
    finally:
        cluster.close()


def etcd_backend_factory(cluster: EtcdCluster, prefix: str = "/"):
    """A factory of fresh (unstarted) etcd backends over `cluster`, each on an empty keyspace."""
    from pocketkube.storage.etcd.backend import EtcdBackend

    def make(**kw):
        cluster.wipe()
        return EtcdBackend(cluster.spec(prefix), **kw)
    return make
