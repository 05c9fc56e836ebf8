"""The multi-tier app the Ingress e2e tests expose, stdlib Python only (process pods run the host's
python3; the container image is built from it): ROLE=backend answers `backend <pod> <path>`;
ROLE=front answers `front <pod> <path> -> <the backend's answer>`, calling the back-end Service
at BACKEND_URL when set (`http://backend/from-front` once cluster DNS is there), else by its
BACKEND_SERVICE_HOST/PORT env vars. `/ws` on either is a
WebSocket echo (`echo:<text>`)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import ssl
import time

import yaml
from cryptography import x509

APP = r'''
import base64, hashlib, os, socket, struct, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ROLE, NAME = os.environ["ROLE"], os.environ["HOSTNAME"]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def recv_exact(f, n):
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return data

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        text = f"{ROLE} {NAME} {self.path}"
        if ROLE == "front":
            url = os.environ.get("BACKEND_URL") or \
                f"http://{os.environ['BACKEND_SERVICE_HOST']}:{os.environ['BACKEND_SERVICE_PORT']}/from-front"
            try:
                text += " -> " + urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError as e:
                text += f" -> backend unreachable: {e}"
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.send_header("X-Seen-Forwarded-For", self.headers.get("X-Forwarded-For", ""))
        self.end_headers()
        self.wfile.write(body)
    def websocket(self):
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                b1, b2 = recv_exact(self.rfile, 2)
                n = b2 & 127
                if n == 126:
                    n = struct.unpack(">H", recv_exact(self.rfile, 2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", recv_exact(self.rfile, 8))[0]
                mask = recv_exact(self.rfile, 4) if b2 & 128 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(self.rfile, n)))
                op = b1 & 15
                if op == 8:
                    self.wfile.write(b"\x88\x00")
                    return
                if op == 1:
                    out = ("echo:" + data.decode()).encode()
                    head = bytes([0x81, len(out)]) if len(out) < 126 else bytes([0x81, 126]) + struct.pack(">H", len(out))
                    self.wfile.write(head + out)
                    self.wfile.flush()
        except (EOFError, OSError, ValueError):
            return

class S(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET
S((os.environ.get("BIND", os.environ["POD_IP"]), int(sys.argv[1])), H).serve_forever()
'''

APP_PORT = 8080


def app_container(role: str, image: str = "python:3", backend_url: str = "") -> dict:
    return {"name": role, "image": image, "imagePullPolicy": "IfNotPresent", "command": ["python3", "-c", APP, str(APP_PORT)],
            "env": [{"name": "ROLE", "value": role},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    *([{"name": "BACKEND_URL", "value": backend_url}] if backend_url else [])],
            "ports": [{"name": "http", "containerPort": APP_PORT}],
            "readinessProbe": {"tcpSocket": {"port": APP_PORT}, "periodSeconds": 1}}


def manifests(image: str = "python:3", backend_url: str = "") -> str:
    """The back end (Service first: the front end's pods get its env vars) and the front end,
    which calls the back end at `backend_url` (a cluster DNS name) when given."""
    def deploy(role: str, replicas: int) -> dict:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": role},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": role}},
                         "template": {"metadata": {"labels": {"app": role}},
                                      "spec": {"containers": [app_container(role, image, backend_url)]}}}}

    def svc(role: str) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": role},
                "spec": {"selector": {"app": role},
                         "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return yaml.safe_dump_all([svc("backend"), deploy("backend", 1), svc("front"), deploy("front", 1)])


def ingress(name: str, host: str, paths: list[tuple[str, str, str, int | str]], tls_secret: str = "") -> str:
    """An Ingress: paths as (path, pathType, service, port number or name)."""
    def backend(svc: str, port: int | str) -> dict:
        return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}
    spec: dict = {"rules": [{"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": backend(s, port)} for p, t, s, port in paths]}}]}
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "metadata": {"name": name}, "spec": spec})


def get(ip: str, port: int, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


def try_get(ip: str, port: int, host: str, path: str = "/") -> tuple[int, str]:
    """(status, body), or (0, why) when nothing answered: the predicate of a wait."""
    try:
        status, body, _ = get(ip, port, host, path)
        return status, body
    except OSError as e:
        return 0, str(e)


def served_cert_cn(ip: str, port: int, server_name: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to an IP address, verifying (and sending SNI for) a host name."""

    def __init__(self, ip: str, port: int, host: str, ctx: ssl.SSLContext) -> None:
        super().__init__(ip, port, context=ctx, timeout=5)
        self._sni = host

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(socket.create_connection((self.host, self.port), self.timeout),
                                              server_hostname=self._sni)


def https_get(ip: str, port: int, host: str, ca_pem: bytes, path: str = "/") -> str:
    """GET over TLS, verifying the served certificate against `ca_pem` for `host`."""
    conn = _SniConnection(ip, port, host, ssl.create_default_context(cadata=ca_pem.decode()))
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def websocket_echo(ip: str, port: int, host: str, text: str) -> str:
    """One text message through a WebSocket at /ws (a minimal client: the handshake and one frame)."""
    key = base64.b64encode(hashlib.sha1(str(time.time()).encode()).digest()[:16]).decode()
    with socket.create_connection((ip, port), timeout=5) as s:
        s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        f = s.makefile("rb")
        status = f.readline().decode()
        assert " 101 " in status, status
        while f.readline() not in (b"\r\n", b""):
            pass
        data = text.encode()
        mask = b"\x01\x02\x03\x04"
        s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))
        b1, b2 = f.read(2)
        reply = f.read(b2 & 127).decode()
        s.sendall(bytes([0x88, 0x80]) + mask)
        return reply
