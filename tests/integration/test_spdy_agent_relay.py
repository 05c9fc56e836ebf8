"""kubectl's SPDY paths through the whole API server: its streaming dispatch, the relay to a node
agent (the fake one of pocketkube.testing.fake_stream_agent, speaking the internal protocol) and
back: port-forward through the WebSocket tunnel and raw SPDY, exec over raw SPDY."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from pocketkube.testing.procs import kubectl_binaries

# The API server's streaming dispatch, relay and fake agent are the apistreams part of issue 11: on
# the spdy branch alone they are not there yet (on main, merged, they are).
fixtures = pytest.importorskip("apistreams_fixtures", reason="the apistreams part (relay, fake agent) is not merged")
add_pod, streams_env = fixtures.add_pod, fixtures.streams_env

KUBECTLS = sorted(kubectl_binaries().values())
VERSIONS = {k: ("1.32" if k == "/usr/bin/kubectl" else "1.37") for k in KUBECTLS}
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not KUBECTLS, reason="no kubectl here")]


@pytest.fixture(scope="module")
def env():
    with streams_env("pk-spdy-") as e:
        add_pod(e, "web")
        yield e


def kube_env(env, websockets: bool) -> dict:
    out = dict(os.environ, KUBECONFIG=str(env.server.kubeconfig), HOME=str(env.workdir),
               KUBECACHEDIR=str(env.workdir / "cache"))
    if not websockets:
        out["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
        out["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "false"
    return out


async def sha_server(reader, writer):
    digest, size = hashlib.sha256(), 0
    while data := await reader.read(1 << 16):
        digest.update(data)
        size += len(data)
    writer.write(f"{digest.hexdigest()} {size}\n".encode())
    await writer.drain()
    writer.close()


async def echo(reader, writer):
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    writer.close()


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    got = await reader.read()
    writer.close()
    return got


async def port_forward(env, kubectl: str, remote: list[int], websockets: bool):
    proc = await asyncio.create_subprocess_exec(
        kubectl, "port-forward", "pod/web", *[f":{p}" for p in remote], "--address", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=kube_env(env, websockets))
    ports: dict[int, int] = {}
    while len(ports) < len(remote):
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            proc.kill()
            raise AssertionError((await proc.stderr.read()).decode())
        if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line):
            ports[int(m.group(2))] = int(m.group(1))
    return proc, ports


MODES = [(k, ws) for k in KUBECTLS for ws in (True, False)]


@pytest.mark.parametrize("kubectl, websockets", MODES,
                         ids=[f"{VERSIONS[k]}-{'ws' if ws else 'spdy'}" for k, ws in MODES])
async def test_port_forward_through_the_agent(env, kubectl, websockets):
    sha = await asyncio.start_server(sha_server, "127.0.0.1", 0)
    echoes = await asyncio.start_server(echo, "127.0.0.1", 0)
    sha_port, echo_port = sha.sockets[0].getsockname()[1], echoes.sockets[0].getsockname()[1]
    closed = await asyncio.start_server(echo, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with sha, echoes:
        proc, ports = await port_forward(env, kubectl, [sha_port, echo_port, closed_port], websockets)
        try:
            blob = os.urandom(10 * 1024 * 1024)
            assert (await roundtrip(ports[sha_port], blob)).decode() == \
                f"{hashlib.sha256(blob).hexdigest()} {len(blob)}\n"
            payloads = [os.urandom(100_000 + i) for i in range(20)]
            assert await asyncio.gather(*(roundtrip(ports[echo_port], p) for p in payloads)) == payloads
            assert await roundtrip(ports[closed_port], b"x") == b""  # the agent's error ends it
        finally:
            proc.kill()
            await proc.wait()
        err = (await proc.stderr.read()).decode()
        assert re.search(rf"error forwarding port {closed_port} to pod .*connection refused", err), err
    assert await _eventually(lambda: env.agent.connections == 0), env.agent.connections


async def _eventually(check, timeout: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=[VERSIONS[k] for k in KUBECTLS])
async def test_exec_over_spdy_through_the_agent(env, kubectl):
    async def run(*args, stdin=None):
        proc = await asyncio.create_subprocess_exec(
            kubectl, "exec", *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=kube_env(env, False))
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        return proc.returncode, out, err.decode()

    code, out, err = await run("web", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (code, out) == (7, b"out\n") and err.endswith("err\ncommand terminated with exit code 7\n"), err
    payload = os.urandom(2 * 1024 * 1024)
    code, out, err = await run("-i", "web", "--", "sha256sum", stdin=payload)
    assert code == 0 and out.decode().split()[0] == hashlib.sha256(payload).hexdigest(), err
    assert await _eventually(lambda: not env.agent.processes), env.agent.processes


def run_in_terminal(argv: list[str], env: dict, answer: tuple[bytes, bytes], rows: int, cols: int,
                    timeout: float = 30) -> tuple[int, bytes]:
    """argv on a fresh pty of rows x cols; types answer[1] once answer[0] was printed."""
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
                except OSError:  # EIO: the other side of the terminal closed
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


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=[VERSIONS[k] for k in KUBECTLS])
def test_exec_with_a_terminal_over_spdy_gets_its_size(env, kubectl):
    # kubectl sends the terminal's size on the resize stream once the streams are up
    script = "until [ \"$(stty size)\" != '0 0' ]; do sleep 0.05; done; stty size; read x; echo got $x; exit 4"
    code, out = run_in_terminal([kubectl, "exec", "-it", "web", "--", "sh", "-c", script], kube_env(env, False),
                                (b"37 91", b"hello\r"), 37, 91)
    assert code == 4, out
    assert out == b"37 91\r\nhello\r\ngot hello\r\ncommand terminated with exit code 4\r\n"


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=[VERSIONS[k] for k in KUBECTLS])
def test_attach_and_cp_over_spdy(env, kubectl, tmp_path):
    cp = subprocess.run([kubectl, "attach", "-i", "web"], input="hello\n", capture_output=True, text=True,
                        env=kube_env(env, False), timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.endswith("attached\nhello\n")
    inside = env.workdir / tmp_path.name  # the fake agent runs commands on this host
    inside.mkdir()
    (tmp_path / "up.bin").write_bytes(os.urandom(500_000))
    for args in (["cp", str(tmp_path / "up.bin"), f"web:{inside}/up.bin"],
                 ["cp", f"web:{inside}/up.bin", str(tmp_path / "down.bin")]):
        cp = subprocess.run([kubectl, *args], capture_output=True, text=True, env=kube_env(env, False), timeout=60)
        assert cp.returncode == 0, cp.stderr
    assert (inside / "up.bin").read_bytes() == (tmp_path / "up.bin").read_bytes() == \
        (tmp_path / "down.bin").read_bytes()
