"""Helpers for the Service e2e tests: backends that name themselves, manifests, probes, statistics."""

from __future__ import annotations

import http.client
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import yaml

from pocketkube.testing.waits import get_json, is_ready, wait_for

# A pod that says who it is: HTTP on TCP and an echo on UDP, on every port in argv, bound to the
# pod IP. An HTTP answer is "<pod name> <port> <client IP>"; a UDP one "<pod name> <port> <what was sent>". No "$(": the agent
# expands $(VAR) in argv.
WHOAMI = r"""
import os, socket, sys, threading
ip, name = os.environ["POD_IP"], os.environ["HOSTNAME"]
if os.environ.get("IGNORE_SIGTERM"):  # keeps serving while terminating, until SIGKILL
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def http(conn, port, peer):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        body = f"{name} {port} {peer[0]}\n".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

def serve_tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(512)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=http, args=(conn, port, peer), daemon=True).start()

def serve_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(f"{name} {port} ".encode() + data, peer)

threads = [threading.Thread(target=f, args=(int(p),), daemon=True)
           for p in sys.argv[1:] for f in (serve_tcp, serve_udp)]
for t in threads:
    t.start()
print("serving", ip, sys.argv[1:], flush=True)
for t in threads:
    t.join()
"""


def whoami_container(ports: dict[str, int], probe_port: str | int | None = None) -> dict:
    """A container running WHOAMI on `ports` (name -> number; the names are its containerPorts)."""
    container = {
        "name": "whoami", "image": "python", "command": ["python3", "-c", WHOAMI, *map(str, ports.values())],
        "ports": [{"name": n, "containerPort": p} for n, p in ports.items()],
    }
    if probe_port is not None:
        container["readinessProbe"] = {"tcpSocket": {"port": probe_port}, "periodSeconds": 1}
    return container


def deployment(name: str, replicas: int, container: dict, labels: dict | None = None) -> dict:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def pod(name: str, container: dict, labels: dict, node: str | None = None) -> dict:
    spec: dict = {"containers": [container]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def service(name: str, selector: dict | None, ports: list[dict], type_: str = "ClusterIP", **spec) -> dict:
    body = {"type": type_, "ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def as_input(*objects: dict) -> str:
    """Several objects for `kubectl create -f -`: a multi-document stream (a `kind: List` makes kubectl
    1.32 validate against /openapi/v2, which the server does not serve)."""
    return yaml.safe_dump_all(objects, sort_keys=False)


# ---- waiting and reading state ----

def live_pods(k, selector: str) -> list[dict]:
    """Pods matching `selector` that are not being deleted."""
    return [p for p in get_json(k, "pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]


def wait_ready(k, selector: str, count: int, timeout: float = 30) -> list[dict]:
    """Exactly `count` live pods, all Ready, and no terminating ones left."""
    def settled():
        items = get_json(k, "pods", "-l", selector)["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return live if len(items) == count and all(is_ready(p) for p in live) else None
    return wait_for(settled, timeout, what=f"{count} ready pods for {selector}")


# ---- talking to Services ----

def http_get(host: str, port: int, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as resp:
        return resp.read().decode()


def nginx_welcome(host: str, port: int = 30008) -> str | None:
    """nginx's welcome page at host:port (the seed's NodePort by default); None while nothing, or
    something else, answers there."""
    try:
        body = http_get(host, port)
    except OSError:
        return None
    return body if "Welcome to nginx!" in body else None


def seed_pods_ready(k) -> list[dict] | None:
    """The seed Deployment's pods once all 3 are Ready (for wait_for)."""
    pods = [p for p in get_json(k, "pods", "-l", "app=myapp,type=front-end")["items"] if is_ready(p)]
    return pods if len(pods) == 3 else None


def who(host: str, port: int, timeout: float = 2.0) -> str:
    """The name of the WHOAMI pod answering a new connection to host:port."""
    return http_get(host, port, timeout).split()[0]


def who_sees(host: str, port: int, source_ip: str, timeout: float = 2.0) -> tuple[str, str]:
    """(pod name, the client IP the pod saw) for a connection from `source_ip` (any 127/8 address is ours)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source_ip, 0))
    try:
        conn.request("GET", "/")
        name, _port, client = conn.getresponse().read().decode().split()
    finally:
        conn.close()
    return name, client


def try_who(host: str, port: int, timeout: float = 1.0) -> str | None:
    try:
        return who(host, port, timeout)
    except (OSError, urllib.error.URLError):
        return None


def connect_outcome(host: str, port: int, timeout: float = 2.0) -> tuple[str, float]:
    """("connected" | "refused" | "timeout" | "error:<errno>", seconds it took) for one TCP connect."""
    started = time.monotonic()
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            outcome = "connected"
        except ConnectionRefusedError:
            outcome = "refused"
        except TimeoutError:
            outcome = "timeout"
        except OSError as e:
            outcome = f"error:{e.errno}"
    return outcome, time.monotonic() - started


def udp_ask(host: str, port: int, payload: bytes = b"ping", timeout: float = 1.0) -> str | None:
    """One datagram on a connected socket (so an ICMP port unreachable comes back as a refusal):
    the reply's text, or None when refused or unanswered."""
    return udp_outcome(host, port, payload, timeout)[1]


def udp_outcome(host: str, port: int, payload: bytes = b"ping",
                timeout: float = 1.0) -> tuple[str, str | None, float]:
    """("answered" | "refused" | "timeout", the reply, seconds it took) for one UDP request."""
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(payload)
            reply = s.recv(65535).decode()
            return "answered", reply, time.monotonic() - started
        except ConnectionRefusedError:
            return "refused", None, time.monotonic() - started
        except TimeoutError:
            return "timeout", None, time.monotonic() - started


def hits(host: str, port: int, n: int) -> Counter:
    """Which pods answer `n` new connections to host:port."""
    counts: Counter = Counter()
    for i in range(n):
        try:
            counts[who(host, port)] += 1
        except OSError as e:
            raise AssertionError(f"connection {i + 1} of {n} to {host}:{port} failed ({e}); so far {dict(counts)}") from e
    return counts


# ---- statistics ----

def chi_square_uniform(counts: list[int]) -> tuple[float, float]:
    """Pearson's statistic against equal expected counts, and its p-value (even degrees of freedom:
    the chi-square survival function then has the closed form exp(-x/2) Σ (x/2)^i / i!)."""
    total, k = sum(counts), len(counts)
    expected = total / k
    stat = sum((c - expected) ** 2 / expected for c in counts)
    dof = k - 1
    if dof % 2:
        raise ValueError("closed form only for an even number of degrees of freedom (an odd number of pods)")
    half = stat / 2
    p = math.exp(-half) * sum(half ** i / math.factorial(i) for i in range(dof // 2))
    return stat, p


# ---- load under change ----

@dataclass
class LoadLoop:
    """Sequential new connections to `targets` (round robin) on a thread, each logged with its time."""

    targets: list[tuple[str, int]]
    timeout: float = 1.0
    log: list[tuple[float, str | None]] = field(default_factory=list)  # (start time, pod or None)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LoadLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            host, port = self.targets[i % len(self.targets)]
            at = time.monotonic()
            self.log.append((at, try_who(host, port, self.timeout)))
            i += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def slice_ready_pods(k, service_name: str) -> set[str]:
    """Names of the pods an EndpointSlice of the Service lists as ready."""
    slices = get_json(k, "endpointslices", "-l", f"kubernetes.io/service-name={service_name}")["items"]
    return {(ep.get("targetRef") or {}).get("name") for s in slices for ep in s.get("endpoints") or []
            if (ep.get("conditions") or {}).get("ready")}


def model_converged(k, service_name: str, selector: str, replicas: int) -> tuple[float, set[str]] | None:
    """(when, the pods) once `replicas` live pods are Ready and the Service's slices list exactly them."""
    live = live_pods(k, selector)
    names = {p["metadata"]["name"] for p in live}
    if len(live) != replicas or not all(is_ready(p) for p in live):
        return None
    return (time.monotonic(), names) if slice_ready_pods(k, service_name) == names else None


@dataclass
class Convergence:
    seconds: float  # change → the answering pods are exactly the final Ready pods
    model_seconds: float  # change → the EndpointSlice lists exactly the final Ready pods as ready
    failed_in_transition: int  # requests that failed before the model converged (plus grace)
    failing_seconds: float  # from the first to the last of those failures
    failed_after_model: int  # requests that failed after it (must be 0)
    strays_after_model: int  # answers from pods outside the final set after it (must be 0)
    requests_after_model: int
    answering_after: set[str]


def convergence(log: list[tuple[float, str | None]], t0: float, final: set[str],
                model_at: float, grace: float) -> Convergence:
    """How traffic followed a change made at t0 to the pods `final`, whose EndpointSlice was
    seen right at `model_at`; proxies get `grace` seconds to program it."""
    entries = [(t, w) for t, w in log if t >= t0]
    first_seen: dict[str, float] = {}
    last_stray = t0
    for t, w in entries:
        if w in final:
            first_seen.setdefault(w, t)
        elif w is not None:
            last_stray = max(last_stray, t)
    if first_seen.keys() != final:
        raise AssertionError(f"pods {sorted(final - first_seen.keys())} never got traffic")
    settled_at = model_at + grace
    before = [w for t, w in entries if t < settled_at]
    after = [w for t, w in entries if t >= settled_at]
    failed_at = [t for t, w in entries if w is None and t < settled_at]
    failing = failed_at[-1] - failed_at[0] if failed_at else 0.0
    return Convergence(max([last_stray, *first_seen.values()]) - t0, model_at - t0, before.count(None), failing,
                       after.count(None), sum(1 for w in after if w is not None and w not in final),
                       len(after), {w for w in after if w is not None})
