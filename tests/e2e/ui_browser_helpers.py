"""Helpers for the live map's browser tests on real clusters (test_ui_browser.py, bench/ui.py): a
logged-in Chromium context per cluster, the seed's manifests, real connections, the API read
directly (no kubectl start-up per poll)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from pocketkube.testing import browser
from pocketkube.testing.procs import ClusterProcess, Kubectl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SEED = ("deployment-definition.yaml", "service-definition.yaml")  # the seed's two manifests
VIEWPORT = {"width": 1400, "height": 1000}
SEED_ROUTE = "#/map/default/myapp-service"


def login_link(cluster: ClusterProcess) -> str:
    """A fresh one-time link, as `pocketkube ui` prints it."""
    out = subprocess.run([sys.executable, "-m", "pocketkube", "ui", "--data-dir", str(cluster.data_dir)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return next(w for w in out.split() if "/ui/login?token=" in w)


@contextlib.contextmanager
def logged_in(chromium, cluster: ClusterProcess, **context_options) -> Iterator[object]:
    """A context of `chromium` holding the cluster's UI cookie (one context per cluster: cookies do
    not tell 127.0.0.1's ports apart)."""
    context_options.setdefault("viewport", VIEWPORT)
    with browser.new_context(chromium, ignore_https_errors=True, **context_options) as context:
        page = context.new_page()
        response = page.goto(login_link(cluster))
        assert response is not None and response.status == 200 and page.url == cluster.url + "/ui/", page.url
        page.close()
        yield context


def goto(page, url: str):
    """page.goto, again after Chromium's ERR_NETWORK_CHANGED: process-runtime pods come and go as
    loopback addresses, and Chromium aborts a navigation when the host's addresses change."""
    for attempt in range(5):
        try:
            return page.goto(url)
        except Exception as e:  # playwright's Error
            if "ERR_NETWORK_CHANGED" not in str(e) or attempt == 4:
                raise
            page.wait_for_timeout(500)


def open_map(context, cluster: ClusterProcess, route: str = SEED_ROUTE, wait_live: bool = True):
    page = browser.open_page(context)
    goto(page, cluster.url + "/ui/" + route)
    if wait_live:
        page.wait_for_selector("#status[data-state=live]", timeout=10000)
    return page


@dataclass
class Api:
    """GETs against the cluster with the admin token (for polling without kubectl's start-up)."""
    cluster: ClusterProcess

    def __post_init__(self) -> None:
        cfg = yaml.safe_load(self.cluster.kubeconfig.read_text())
        self.token = cfg["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cafile=str(self.cluster.data_dir / "pki" / "ca.crt"))

    def get(self, path: str) -> dict:
        req = urllib.request.Request(self.cluster.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5, context=self.ctx) as r:
            return json.loads(r.read())

    def pods(self, selector: str) -> dict[str, dict]:
        """name -> {"node", "ip", "ready"} of the pods matching a label selector."""
        items = self.get(f"/api/v1/namespaces/default/pods?labelSelector={selector}")["items"]
        return {p["metadata"]["name"]: {
            "node": p["spec"].get("nodeName"), "ip": p.get("status", {}).get("podIP"),
            "deleting": bool(p["metadata"].get("deletionTimestamp")),
            "ready": any(c["type"] == "Ready" and c["status"] == "True"
                         for c in p.get("status", {}).get("conditions") or [])} for p in items}

    def ready_endpoints(self, service: str) -> list[dict]:
        slices = self.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                          f"?labelSelector=kubernetes.io/service-name={service}")["items"]
        return [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]


def create_seed(k: Kubectl) -> None:
    for name in SEED:
        k.ok("create", "-f", str(EXAMPLES / name))


def connect(ip: str, port: int, n: int, source: str | None = None) -> int:
    """`n` sequential HTTP/1.0 requests, a new TCP connection each; how many were answered."""
    answered = 0
    for _ in range(n):
        with socket.create_connection((ip, port), timeout=5,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: seed\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            answered += data.startswith(b"HTTP/1.1 200")
    return answered


def refused(ip: str, port: int, n: int) -> int:
    """`n` connection attempts that must be refused; how many were."""
    count = 0
    for _ in range(n):
        try:
            socket.create_connection((ip, port), timeout=5).close()
        except ConnectionRefusedError:
            count += 1
    return count


@contextlib.contextmanager
def kubectl_proxy(k: Kubectl) -> Iterator[str]:
    """A real `kubectl proxy --port=0`; yields its http://127.0.0.1:<port> URL."""
    env = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache)
    proc = subprocess.Popen([k.binary, "proxy", "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"Starting to serve on 127\.0\.0\.1:(\d+)", line)
        assert m, f"kubectl proxy said: {line!r}"
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def raw(cluster: ClusterProcess, method: str, path: str, headers: dict[str, str] | None = None,
        token: str | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """One request with http.client semantics via urllib (no redirects followed): status, headers
    (lower-cased names, every value), the first 4 KiB of the body."""
    import http.client

    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    host, port = cluster.url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    try:
        if "Host" in h:
            conn.putrequest(method, path, skip_host=True)
            for name, value in h.items():
                conn.putheader(name, value)
            conn.endheaders()
        else:
            conn.request(method, path, headers=h)
        r = conn.getresponse()
        got: dict[str, list[str]] = {}
        for name, value in r.getheaders():
            got.setdefault(name.lower(), []).append(value)
        return r.status, got, r.read(4096) if "event-stream" not in r.getheader("Content-Type", "") else r.read1(4096)
    finally:
        conn.close()

