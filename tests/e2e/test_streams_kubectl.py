"""exec, attach, cp and port-forward end to end: the real kubectl 1.32 and 1.37 (each with its
default WebSocket protocols and with its SPDY fallback) and the official Python client against a
containerd cluster running busybox, as a user types them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import re
import select
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster
from pocketkube.testing.procs import Kubectl, kubectl_binaries
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

RANGES = {"node_ip_base": "10.191.0.0", "pod_cidr_base": "10.192.0.0/16", "service_cidr": "10.193.0.0/16",
          "lb_pool": "10.191.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

# kubectl's own switches back to SPDY, as when it talks to a server without WebSocket support.
SPDY_ENV = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
BIG = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-strm-", tmp_path_factory.mktemp("images"), ["busybox"], nodes=1, **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def pod(cluster) -> str:
    """A busybox pod with a 10 MB file served by httpd on 80 and a closed port 81."""
    k = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "box", "labels": {"app": "box"}},
                "spec": {"containers": [{
                    "name": "main", "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", f"mkdir -p /www && head -c {BIG} /dev/urandom > /www/big && "
                                "echo small > /www/small && exec httpd -f -p 80 -h /www"],
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "readinessProbe": {"exec": {"command": ["test", "-s", "/www/small"]}, "periodSeconds": 1}}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "box"},
           "spec": {"selector": {"app": "box"}, "ports": [{"port": 8080, "targetPort": "http"}]}}
    k.ok("apply", "-f", "-", input=yaml.safe_dump_all([manifest, svc]))
    wait_for(lambda: is_ready(get_json(k, "pod", "box")), timeout=60, what="pod box Ready")
    k.close()
    return "box"


@pytest.fixture(params=sorted(kubectl_binaries()))
def k(request, cluster) -> Iterator[Kubectl]:
    kc = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig)
    yield kc
    kc.close()


def run_env(k: Kubectl, *args: str, env: dict | None = None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    full = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache, **(env or {}))
    return subprocess.run([k.binary, *args], input=input, capture_output=True, text=True, env=full,
                          timeout=timeout)


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
def test_exec_exit_code_and_streams(k, pod, spdy):
    cp = run_env(k, "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3", env=SPDY_ENV if spdy else None)
    assert cp.returncode == 3, cp.stderr
    assert cp.stdout == "out\n"
    assert "err\n" in cp.stderr and "command terminated with exit code 3" in cp.stderr


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
def test_exec_stdin_reaches_eof(k, pod, spdy):
    data = "".join(f"line {i}\n" for i in range(2000))
    cp = run_env(k, "exec", "-i", pod, "--", "sh", "-c", "cat; echo done", input=data,
                 env=SPDY_ENV if spdy else None)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == data + "done\n"


def test_exec_tty_interactive(k, pod):
    """`kubectl exec -it pod -- sh` on a terminal: a prompt, a command, its answer, `exit 7`."""
    master, slave = pty.openpty()
    env = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache, TERM="xterm")
    proc = subprocess.Popen([k.binary, "exec", "-it", pod, "--", "sh"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(pattern: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while pattern not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} on the terminal: {seen!r}"
            if select.select([master], [], [], left)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 4096)
    try:
        os.write(master, b"echo $((6*7)) $COLUMNS\n")
        read_until(b"42")
        os.write(master, b"stty size\n")
        read_until(b"\n")
        os.write(master, b"exit 7\n")
        assert proc.wait(timeout=30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_exec_bad_input(k, pod):
    missing = run_env(k, "exec", pod, "-c", "nope", "--", "true")
    assert missing.returncode != 0 and "container nope is not valid for pod box" in missing.stderr
    nosuch = run_env(k, "exec", pod, "--", "/no/such/command")
    assert nosuch.returncode in (126, 127), (nosuch.returncode, nosuch.stderr)
    gone = run_env(k, "exec", "ghost", "--", "true")
    assert gone.returncode != 0 and 'pods "ghost" not found' in gone.stderr


def test_exec_needs_create_on_pods_exec(k, pod):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                           "kind": "Role", "name": "pod-reader"},
               "subjects": [{"kind": "User", "name": "reader", "apiGroup": "rbac.authorization.k8s.io"}]}
    k.ok("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    cp = run_env(k, "exec", "--as=reader", pod, "--", "true")
    assert cp.returncode != 0
    assert 'cannot create resource "pods/exec"' in cp.stderr, cp.stderr
    assert run_env(k, "get", "--as=reader", "pod", pod).returncode == 0


def test_cp_both_ways(k, pod, tmp_path):
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(300_000))
    k.ok("cp", str(src), f"{pod}:/tmp/up.bin")
    back = tmp_path / "back.bin"
    k.ok("cp", f"{pod}:/tmp/up.bin", str(back))
    assert back.read_bytes() == src.read_bytes()


def test_attach_sees_output(k, cluster):
    k.ok("run", "talker", "--image=busybox", "--image-pull-policy=Never", "--restart=Never", "--",
         "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
    try:
        wait_for(lambda: get_json(k, "pod", "talker")["status"].get("phase") == "Running", timeout=60)
        proc = subprocess.Popen([k.binary, "attach", "talker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache,
                                         HOME=k.cache))
        try:
            line = b""
            deadline = time.monotonic() + 30
            while b"tick" not in line and time.monotonic() < deadline:
                line = proc.stdout.readline()
            assert b"tick" in line
        finally:
            proc.kill()
            proc.wait()
    finally:
        k.run("delete", "pod", "talker", "--grace-period=0", "--force")


@contextlib.contextmanager
def port_forward(k: Kubectl, target: str, *ports: str, env: dict | None = None,
                 may_end: bool = False) -> Iterator[list[int]]:
    """`kubectl port-forward target :80 ...`: the local ports it chose, in the order given. With
    `may_end`, kubectl is expected to end with upstream's error for a refused connection."""
    full = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache, **(env or {}))
    proc = subprocess.Popen([k.binary, "port-forward", target, *ports], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)
    local: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(local) < len(ports) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if m:
                local.append(int(m.group(1)))
        assert len(local) == len(ports), f"port-forward did not start: {proc.stderr.read() if proc.poll() else ''}"
        yield local
        if may_end:
            proc.wait(timeout=30)
            err = proc.stderr.read()
            assert "error forwarding port 81" in err and "connection refused" in err, err
        else:
            assert proc.poll() is None, f"port-forward ended: {proc.stderr.read()}"
    finally:
        proc.kill()
        proc.wait()


def fetch(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return r.read()


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
def test_port_forward_large_and_concurrent(k, pod, spdy):
    want = k.ok("exec", pod, "--", "sha256sum", "/www/big").split()[0]
    with port_forward(k, f"pod/{pod}", ":80", env=SPDY_ENV if spdy else None) as (http,):
        assert hashlib.sha256(fetch(http, "/big")).hexdigest() == want
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(fetch(http, "/small"))) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [b"small\n"] * 20


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
def test_port_forward_to_a_closed_port(k, pod, spdy):
    """The server fails that connection only, with the kubelet's words; kubectl (>= 1.29) then
    chooses to end its whole session ("lost connection to pod") and says why."""
    with port_forward(k, f"pod/{pod}", ":81", ":80", env=SPDY_ENV if spdy else None, may_end=True) as (closed, http):
        with socket.create_connection(("127.0.0.1", closed), timeout=10) as s:
            s.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(1) == b""


@pytest.mark.parametrize("target", ["svc/box", "deploy/none"])
def test_port_forward_to_service(k, pod, target):
    if target == "deploy/none":
        cp = run_env(k, "port-forward", target, ":80", timeout=30)
        assert cp.returncode != 0 and "not found" in cp.stderr
        return
    with port_forward(k, target, ":8080") as (port,):
        assert fetch(port, "/small") == b"small\n"


def test_port_forward_client_killed_mid_stream(k, pod):
    full = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache)
    proc = subprocess.Popen([k.binary, "port-forward", f"pod/{pod}", ":80"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)
    port = int(re.search(r":(\d+) ->", proc.stdout.readline()).group(1))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
    s.recv(65536)
    proc.kill()
    proc.wait()
    s.close()
    # The cluster goes on: a new forward works.
    with port_forward(k, f"pod/{pod}", ":80") as (p2,):
        assert fetch(p2, "/small") == b"small\n"


def test_python_client_stream_and_portforward(cluster, pod):
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    out = stream(api.connect_get_namespaced_pod_exec, pod, "default", command=["sh", "-c", "echo hi; exit 4"],
                 stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    out.run_forever(timeout=30)
    assert out.read_stdout() == "hi\n"
    assert out.returncode == 4
    interactive = stream(api.connect_get_namespaced_pod_exec, pod, "default", command=["cat"], stderr=True,
                         stdin=True, stdout=True, tty=False, _preload_content=False)
    interactive.write_stdin("ping\n")
    got = ""
    deadline = time.monotonic() + 30
    while "ping" not in got and time.monotonic() < deadline:
        interactive.update(timeout=1)
        got += interactive.read_stdout() if interactive.peek_stdout() else ""
    interactive.close()
    assert got == "ping\n"
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports="80")
    sock = pf.socket(80)
    sock.setblocking(True)
    sock.sendall(b"GET /small HTTP/1.0\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.endswith(b"small\n"), reply
    assert pf.error(80) is None
    pf.close()

