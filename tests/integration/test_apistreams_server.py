"""exec, attach and port-forward through a real API server to a fake node agent (local processes):
the real kubectl 1.32 and 1.37, the official Python client's stream() and portforward(), and raw
WebSocket clients for the older channel protocols, bad input and abandoned streams."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import importlib.util
import json
import os
import pty
import select
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

import aiohttp
import pytest
from apistreams_fixtures import NS, PODS, StreamsEnv, add_pod, streams_env

from pocketkube.testing.procs import Kubectl, kubectl_binaries
from pocketkube.testing.waits import wait_for

KUBECTLS = sorted(kubectl_binaries().items())


def spdy_served() -> bool:
    """Whether the SPDY terminations (another part of issue 11) are there to answer kubectl's fallback."""
    return importlib.util.find_spec("pocketkube.apiserver.streams.spdy_exec") is not None


@pytest.fixture(scope="module")
def env():
    with streams_env("pk-apistreams-") as e:
        add_pod(e, "web")
        add_pod(e, "duo", ("app", "side"))
        e.agent.pods[(NS, "duo")].containers.discard("side")  # not running on the node
        add_pod(e, "done", phase="Succeeded")
        add_pod(e, "waiting", phase="Pending")
        yield e


@pytest.fixture(params=[name for name, _ in KUBECTLS] or ["none"])
def kubectl(request, env):
    binaries = dict(KUBECTLS)
    if request.param not in binaries:
        pytest.skip("no kubectl here")
    k = Kubectl(binaries[request.param], env.server.kubeconfig, cwd=env.workdir)
    yield k
    k.close()


# ---- kubectl ----


def test_kubectl_exec_propagates_output_and_exit_code(kubectl):
    cp = kubectl.run("exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert cp.returncode == 3
    assert cp.stdout == "out\n"
    assert cp.stderr == "err\ncommand terminated with exit code 3\n"
    assert kubectl.run("exec", "web", "--", "true").returncode == 0


def test_kubectl_exec_stdin_reaches_eof(kubectl):
    data = "".join(f"line {i}\n" for i in range(20000))  # several frames
    cp = kubectl.run("exec", "-i", "web", "--", "sh", "-c", "cat; echo done")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "done\n"
    cp = kubectl.run("exec", "-i", "web", "--", "cat", input=data)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == data


def _run_in_terminal(argv: list[str], env: dict, answer: tuple[bytes, bytes], rows: int, cols: int,
                     timeout: float = 20) -> tuple[int, bytes]:
    """Runs argv on a fresh pty of rows x cols; types answer[1] once answer[0] was printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                out += chunk
            if answer[0] in out and not typed:
                os.write(master, answer[1])
                typed = True
            if not ready and proc.poll() is not None:
                break
        return proc.wait(5), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_kubectl_exec_it_gets_a_terminal_of_the_callers_size(kubectl):
    env = dict(os.environ, KUBECONFIG=str(kubectl.kubeconfig), KUBECACHEDIR=kubectl.cache, HOME=kubectl.cache)
    # kubectl sends the terminal's size just after the stream opens: wait for it, as a shell would redraw
    script = "until [ \"$(stty size)\" != '0 0' ]; do sleep 0.05; done; stty size; read x; echo got $x; exit 4"
    code, out = _run_in_terminal([kubectl.binary, "exec", "-it", "web", "--", "sh", "-c", script], env,
                                 (b"37 91", b"hello\r"), 37, 91)
    assert code == 4
    assert out == b"37 91\r\nhello\r\ngot hello\r\ncommand terminated with exit code 4\r\n"


def test_kubectl_exec_output_is_intact_and_complete(kubectl, env):
    big = env.workdir / "big.bin"
    if not big.exists():
        big.write_bytes(os.urandom(8 * 1024 * 1024))
    cp = subprocess.run([kubectl.binary, "exec", "web", "--", "cat", str(big)], capture_output=True, timeout=60,
                        env=dict(os.environ, KUBECONFIG=str(kubectl.kubeconfig), HOME=kubectl.cache))
    assert cp.returncode == 0, cp.stderr
    assert hashlib.sha256(cp.stdout).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_a_killed_kubectl_leaves_nothing_running(kubectl, env):
    proc = subprocess.Popen([kubectl.binary, "exec", "web", "--", "sleep", "300"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, KUBECONFIG=str(kubectl.kubeconfig),
                                                                HOME=kubectl.cache))
    try:
        assert wait_for(lambda: env.agent.processes, timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: not env.agent.processes, timeout=10)


def test_kubectl_cp_both_ways(kubectl, env, tmp_path):
    inside = env.workdir / tmp_path.name
    inside.mkdir()
    (tmp_path / "up.txt").write_text("to the pod\n")
    kubectl.ok("cp", str(tmp_path / "up.txt"), f"web:{inside}/up.txt")
    assert (inside / "up.txt").read_text() == "to the pod\n"
    (inside / "down.bin").write_bytes(os.urandom(300_000))
    kubectl.ok("cp", f"web:{inside}/down.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == (inside / "down.bin").read_bytes()


def test_kubectl_attach_relays_stdin_and_output(kubectl):
    cp = kubectl.run("attach", "-i", "web", input="hello\n")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.endswith("attached\nhello\n")


def test_kubectl_exec_errors_name_the_problem(kubectl):
    cp = kubectl.run("exec", "duo", "-c", "side", "--", "true")
    assert cp.returncode == 1
    # the agent's refusal fails the WebSocket upgrade: kubectl falls back to SPDY, which says it again
    assert ('container not found ("side")' if spdy_served() else "SPDY is not supported") in cp.stderr
    cp = kubectl.run("exec", "done", "--", "true")
    assert cp.returncode == 1
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in cp.stderr
    cp = kubectl.run("exec", "ghost", "--", "true")
    assert cp.returncode == 1
    assert 'pods "ghost" not found' in cp.stderr


def test_kubectl_exec_needs_create_on_pods_exec(kubectl, env):
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    assert env.api.post(f"{rbac}/roles", role).status in (201, 409)
    # edit and view are aggregated by the controller manager, which this server does not run: bind
    # the roles they aggregate
    for name, kind, ref in (("reader", "Role", "pod-reader"), ("editor", "ClusterRole", "system:aggregate-to-edit"),
                            ("editor", "ClusterRole", "system:aggregate-to-view"),
                            ("viewer", "ClusterRole", "system:aggregate-to-view")):
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"{name}-{ref.replace(':', '-')}"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": ref},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}
        assert env.api.post(f"{rbac}/rolebindings", binding).status in (201, 409)
    assert kubectl.run("--as=reader", "get", "pod", "web").returncode == 0
    for user in ("reader", "viewer"):
        cp = kubectl.run(f"--as={user}", "exec", "web", "--", "true")
        assert cp.returncode == 1
        assert (f'pods "web" is forbidden: User "{user}" cannot create resource "pods/exec" in API group "" '
                f'in the namespace "default"') in cp.stderr
    cp = kubectl.run("--as=editor", "exec", "web", "--", "sh", "-c", "echo ok")
    assert (cp.returncode, cp.stdout) == (0, "ok\n"), cp.stderr


# ---- the official Python client ----


@pytest.fixture(scope="module")
def core(env):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(env.server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield client.CoreV1Api(api_client)


def test_python_stream_exec(core):
    from kubernetes.stream import stream

    out = stream(core.connect_get_namespaced_pod_exec, "web", NS, command=["sh", "-c", "echo out; echo err >&2"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert sorted(out.splitlines()) == ["err", "out"]


def test_python_stream_stdin_close_and_returncode(core):
    from kubernetes.stream import stream

    resp = stream(core.connect_get_namespaced_pod_exec, "web", NS, command=["sh", "-c", "cat; exit 5"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("abc\n")
    resp.close_channel(0)  # v5: stdin EOF, the command goes on to exit
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "abc\n"
    assert resp.returncode == 5


class EchoServer:
    """A TCP echo server on 127.0.0.1 (what the pod's port is, to the fake agent)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo():
    s = EchoServer()
    yield s
    s.close()


def _recv_exactly(sock, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(1 << 20, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_python_portforward_carries_10mb_intact(core, echo):
    from kubernetes.stream import portforward

    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", NS, ports=str(echo.port))
    sock = pf.socket(echo.port)
    sock.settimeout(30)
    payload = os.urandom(10 * 1024 * 1024)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    got = _recv_exactly(sock, len(payload))
    sender.join()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
    sock.close()
    assert pf.error(echo.port) is None


def test_python_portforward_several_ports_and_a_closed_one(core, echo):
    from kubernetes.stream import portforward

    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", NS, ports=f"{echo.port},{closed_port}")
    sock = pf.socket(echo.port)
    sock.settimeout(10)
    sock.sendall(b"ping")
    assert _recv_exactly(sock, 4) == b"ping"
    assert wait_for(lambda: pf.error(closed_port), timeout=10)
    assert pf.error(closed_port).startswith(f"error forwarding port {closed_port} to pod ")
    assert "connection refused" in pf.error(closed_port).lower()
    sock.sendall(b"still here")  # the other port goes on
    assert _recv_exactly(sock, 10) == b"still here"
    pf.close()


# ---- raw WebSocket clients: older protocols, TTY, bad input, abandon ----


def _ssl(env: StreamsEnv) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(env.server.ca_file))


def _url(env: StreamsEnv, path: str) -> str:
    return f"https://127.0.0.1:{env.server.port}{path}"


async def _session_run(env: StreamsEnv, path: str, protocols: tuple[str, ...], send: list = (),
                       timeout: float = 20) -> tuple[str | None, list]:
    """Connects, sends `send` (bytes or str messages), and collects messages until the close."""
    headers = {"Authorization": f"Bearer {env.server.token()}"}
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(_url(env, path), protocols=protocols, ssl=_ssl(env), headers=headers) as ws:
            for m in send:
                await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            got = []
            async with asyncio.timeout(timeout):
                async for msg in ws:
                    got.append(msg.data)
            return ws.protocol, got


async def _refused(env: StreamsEnv, path: str, protocols: str = "v4.channel.k8s.io",
                   upgrade: bool = True) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {env.server.token()}"}
    if upgrade:
        headers.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                        "Sec-WebSocket-Protocol": protocols})
    async with aiohttp.ClientSession() as s:
        async with s.get(_url(env, path), headers=headers, ssl=_ssl(env)) as r:
            return r.status, await r.text()


EXEC = f"{PODS}/web/exec?command=sh&command=-c&command=echo+out%3B+exit+2&stdout=true"


def _channels(messages: list) -> list[tuple[int, bytes]]:
    return [(m[0], m[1:]) for m in messages]


def test_v4_sends_the_status_as_json(env):
    proto, got = asyncio.run(_session_run(env, EXEC, ("v4.channel.k8s.io",)))
    assert proto == "v4.channel.k8s.io"
    chans = _channels(got)
    assert chans[0] == (1, b"")  # the stream is up
    assert (1, b"out\n") in chans
    status = json.loads(chans[-1][1])
    assert chans[-1][0] == 3
    assert status == {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": "command terminated with non-zero exit code: exit status 2",
                      "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}


def test_v1_and_v2_send_the_message_alone_and_nothing_on_success(env):
    for proto_name in ("channel.k8s.io", "v2.channel.k8s.io"):
        proto, got = asyncio.run(_session_run(env, EXEC, (proto_name,)))
        assert proto == proto_name
        assert _channels(got)[-1] == (3, b"command terminated with non-zero exit code: exit status 2")
    _, got = asyncio.run(_session_run(env, f"{PODS}/web/exec?command=true&stdout=true", ("v2.channel.k8s.io",)))
    assert all(ch != 3 for ch, _ in _channels(got))


def test_base64_protocol_both_ways(env):
    path = f"{PODS}/web/exec?command=cat&stdin=true&stdout=true"
    stdin = "0" + base64.b64encode(b"over base64\n").decode()
    # no close signal before v5: the command reads until the client closes; head -1 ends it instead
    path = f"{PODS}/web/exec?command=head&command=-1&stdin=true&stdout=true"
    proto, got = asyncio.run(_session_run(env, path, ("v4.base64.channel.k8s.io",), [stdin]))
    assert proto == "v4.base64.channel.k8s.io"
    assert all(isinstance(m, str) for m in got)
    out = b"".join(base64.b64decode(m[1:]) for m in got if m[0] == "1")
    assert out == b"over base64\n"
    assert json.loads(base64.b64decode(got[-1][1:]))["status"] == "Success" and got[-1][0] == "3"


def test_v5_close_signal_is_stdin_eof(env):
    path = f"{PODS}/web/exec?command=sh&command=-c&command=cat%3B+echo+eof&stdin=true&stdout=true"
    _, got = asyncio.run(_session_run(env, path, ("v5.channel.k8s.io",), [b"\x00abc\n", bytes([255, 0])]))
    out = b"".join(d for ch, d in _channels(got) if ch == 1)
    assert out == b"abc\neof\n"


def test_tty_resize_reaches_the_terminal(env):
    path = f"{PODS}/web/exec?command=sh&command=-c&command=read+x%3B+stty+size&stdin=true&stdout=true&tty=true"
    send = [b"\x04" + json.dumps({"Width": 123, "Height": 45}).encode(), b"\x00go\n"]
    _, got = asyncio.run(_session_run(env, path, ("v4.channel.k8s.io",), send))
    out = b"".join(d for ch, d in _channels(got) if ch == 1)
    assert b"45 123" in out


def test_a_client_that_goes_away_kills_the_command(env):
    async def abandon() -> None:
        headers = {"Authorization": f"Bearer {env.server.token()}"}
        path = f"{PODS}/web/exec?command=sleep&command=300&stdout=true"
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(_url(env, path), protocols=("v5.channel.k8s.io",), ssl=_ssl(env),
                                    headers=headers)
            await ws.receive()  # the stream is up
            assert wait_for(lambda: env.agent.processes, timeout=10)
            await ws.close()
    asyncio.run(abandon())
    assert wait_for(lambda: not env.agent.processes, timeout=10)


@pytest.mark.parametrize(("path", "code", "message"), [
    (f"{PODS}/ghost/exec?command=ls&stdout=1", 404, 'pods "ghost" not found'),
    (f"{PODS}/web/exec?command=ls", 400, "you must specify at least 1 of stdin, stdout, stderr"),
    (f"{PODS}/web/exec?stdout=1", 400, "you must specify at least one command for the container"),
    (f"{PODS}/web/exec?command=ls&stdout=1&container=nope", 400, "container nope is not valid for pod web"),
    (f"{PODS}/duo/exec?command=ls&stdout=1", 400,
     "a container name must be specified for pod duo, choose one of: [app side]"),
    (f"{PODS}/done/attach?stdout=1", 400, "cannot attach to a container in a completed pod; current phase is "
                                          "Succeeded"),
    (f"{PODS}/waiting/portforward?ports=80", 400, "unable to forward port because pod is not running. "
                                                  "Current status=Pending"),
    (f"{PODS}/web/portforward", 400, 'query parameter "port" is required'),
    (f"{PODS}/web/portforward?ports=x", 400, 'unable to parse "x" as a port'),
])
def test_bad_requests_are_statuses(env, path, code, message):
    status, body = asyncio.run(_refused(env, path))
    assert status == code, body
    st = json.loads(body)
    assert (st["kind"], st["code"]) == ("Status", code)
    assert st["message"] == message or st["message"].startswith(message + ": strconv.ParseUint")


def test_an_unsupported_subprotocol_is_refused(env):
    status, body = asyncio.run(_refused(env, f"{PODS}/web/exec?command=ls&stdout=1", "v9.channel.k8s.io"))
    assert status == 400
    assert json.loads(body)["message"].startswith("requested protocol(s) are not supported: [v9.channel.k8s.io]")


def test_a_plain_get_needs_an_upgrade(env):
    status, body = asyncio.run(_refused(env, f"{PODS}/web/exec?command=ls&stdout=1", upgrade=False))
    assert (status, json.loads(body)["message"]) == (400, "Upgrade request required")


def test_the_agents_refusal_is_the_clients_upgrade_failure(env):
    status, body = asyncio.run(_refused(env, f"{PODS}/duo/exec?command=ls&stdout=1&container=side"))
    assert (status, body) == (404, 'container not found ("side")')
    add_pod(env, "gone")
    del env.agent.pods[(NS, "gone")]
    status, body = asyncio.run(_refused(env, f"{PODS}/gone/portforward?ports=80"))
    assert (status, body) == (404, 'pod not found ("default/gone")')


def test_unreachable_node_is_a_backend_error(env):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "dark-node"}}
    assert env.api.post("/api/v1/nodes", node).status == 201
    obj = env.api.get("/api/v1/nodes/dark-node").json()
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    obj["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                     "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
    assert env.api.request("PUT", "/api/v1/nodes/dark-node/status", obj).status == 200
    add_pod(env, "stranded", node="dark-node")
    status, body = asyncio.run(_refused(env, f"{PODS}/stranded/exec?command=ls&stdout=1"))
    assert status == 500
    assert json.loads(body)["message"].startswith("error dialing backend: ")
