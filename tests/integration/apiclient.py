"""A small HTTPS client for a `pocketkube server` subprocess, and object builders for the tests."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pocketkube.testing.procs import ServerProcess

SERVICES = "/api/v1/namespaces/default/services"
PODS = "/api/v1/namespaces/default/pods"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Api:
    """One keep-alive HTTPS connection to the server, authenticated with its admin token."""

    def __init__(self, server: ServerProcess, timeout: float = 15) -> None:
        self.server = server
        self.timeout = timeout
        self.token = server.token()
        self.ctx = ssl.create_default_context(cafile=str(server.ca_file))
        self._conn: http.client.HTTPSConnection | None = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = self._new_connection(self.timeout)
        return self._conn

    def _new_connection(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=self.ctx, timeout=timeout)

    def _headers(self, content_type: str | None, token: str | None, extra: dict | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.token if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = "application/json",
                token: str | None = None, headers: dict | None = None) -> Reply:
        """body: bytes/str sent as is, anything else JSON-encoded. token "" sends no Authorization."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=self._headers(content_type if body is not None
                                                                          else None, token, headers))
            resp = conn.getresponse()
            reply = Reply(resp.status, resp.getheaders(), resp.read())
        except Exception:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any, **kw) -> Reply:
        return self.request("POST", path, body, **kw)

    def watch(self, path: str, read_timeout: float = 10,
              on_open: Callable[[], object] | None = None) -> Iterator[dict]:
        """The events of a watch request, until the server ends the stream. `on_open` is called
        when the server has answered 200: its watch is registered, later writes are live events."""
        conn = self._new_connection(read_timeout)
        try:
            conn.request("GET", path, headers=self._headers(None, None, None))
            resp = conn.getresponse()
            if resp.status != 200:
                raise AssertionError(f"watch {path}: HTTP {resp.status}: {resp.read()[:300]!r}")
            if on_open is not None:
                on_open()
            while line := resp.readline():
                yield json.loads(line)
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def service(name: str, *, labels: dict | None = None, **spec: Any) -> dict:
    spec.setdefault("ports", [{"port": 80}])
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def pod(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def deployment(name: str, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def wait_until(predicate, timeout: float = 5, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
