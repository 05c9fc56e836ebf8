"""The agent's exec, attach and port-forward endpoints on containerd: CRI Exec/Attach/PortForward
and containerd's streaming server spoken to as a SPDY/3.1 client, behind the agent's own endpoint
(the internal WebSocket protocol, as the API server speaks it).

A private containerd under a temp dir serves the module; the pods use the host's network (no CNI
needed, so a port-forward reaches a server of this test on the host's loopback) and the busybox
image is imported from an OCI archive built here. Teardown checks that no process, shim, mount or
cgroup of ours is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from pocketkube.agent.logserver import LogServer
from pocketkube.agent.runtime.containerd import Containerd, import_archive, mounts_under, shim_pids
from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime, cgroup_dirs
from pocketkube.agent.runtime.interface import ContainerConfig
from pocketkube.testing import images
from pocketkube.testing.agent_streams import PORTFORWARD_PROTOCOL, AgentStreams, ExecOutcome
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, ROOT, have_containerd, is_root, requires
from pocketkube.testing.waits import wait_for_async
from pocketkube.util.oci_layout import oci_archive

pytestmark = [
    requires(is_root(), ROOT),
    requires(have_containerd(), CONTAINERD),
    requires(images.have_busybox(), BUSYBOX),
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

BUSYBOX_REF = "docker.io/pocketkube-test/busybox:agentstreams"
PAUSE_REF = "docker.io/pocketkube-test/pause:agentstreams"
TOKEN = secrets.token_hex(16)
AGENT_IP = "127.167.0.1"


def _all_processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                found.append((int(entry.name), [a.decode(errors="replace") for a in argv if a]))
    return found


def _running(argv: list[str]) -> list[int]:
    return [pid for pid, a in _all_processes() if a == argv]


class _Kubelet:
    """What the endpoints ask of the kubelet, over the real runtime."""

    def __init__(self, runtime: ContainerdRuntime) -> None:
        self.runtime = runtime
        self.pods: dict[str, dict] = {}
        self.workers: dict = {}

    def find_pod(self, namespace: str, name: str) -> dict | None:
        return self.pods.get(name)


class Env:
    def __init__(self, rt: ContainerdRuntime, kubelet: _Kubelet, streams: AgentStreams) -> None:
        self.rt, self.kubelet, self.streams = rt, kubelet, streams

    async def pod(self, name: str, command: list[str], **container) -> dict:
        pod = {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
               "spec": {"hostNetwork": True,
                        "containers": [{"name": "c", "image": BUSYBOX_REF, **container},
                                       {"name": "never-started", "image": BUSYBOX_REF}]}}
        uid = pod["metadata"]["uid"]
        await self.rt.run_pod_sandbox(pod)
        await self.rt.start(ContainerConfig(pod_uid=uid, name="c", command=command, args=[], env={"WHO": "busybox"},
                                            restart_count=0, image=BUSYBOX_REF, pod_ip="127.0.0.1", pod=pod,
                                            spec=pod["spec"]["containers"][0]))
        self.kubelet.pods[name] = pod
        return pod


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    node = Path(tempfile.mkdtemp(prefix="pk-agentstreams-"))
    node_name = f"as-{secrets.token_hex(3)}"
    ctrd = Containerd(node / "containerd", sandbox_image=PAUSE_REF)
    runtime = ContainerdRuntime(ctrd.endpoint, data_dir=node, node_name=node_name, node_ip="127.0.0.1")
    kubelet = _Kubelet(runtime)
    server = LogServer(kubelet, AGENT_IP, 0, TOKEN)  # type: ignore[arg-type]
    streams = None
    try:
        await ctrd.start()
        for image, ref in ((images.busybox_image(), BUSYBOX_REF), (images.pause_image(), PAUSE_REF)):
            await import_archive(ctrd.socket, oci_archive(image.layout, node / "image.tar", name=ref))
        port = await server.start()
        streams = AgentStreams(f"http://{AGENT_IP}:{port}", TOKEN)
        yield Env(runtime, kubelet, streams)
    finally:
        if streams is not None:
            await streams.close()
        await server.stop()
        for uid in runtime.pods():
            with contextlib.suppress(Exception):
                await runtime.remove_pod(uid)
        await runtime.close()
        await ctrd.stop()
        runtime.remove_node_cgroups()
        shutil.rmtree(node, ignore_errors=True)
    assert shim_pids(_all_processes(), ctrd.socket) == []
    assert processes_under(node) == []
    assert mounts_under(Path("/proc/self/mountinfo").read_text(), [node]) == []
    assert not any(d.exists() for d in cgroup_dirs(f"/pocketkube/{node_name}"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shell(env: Env) -> dict:
    return await env.pod("shell", ["sleep", "3600"])


async def test_exec_stdin_eof_exit_codes_and_tty(env: Env, shell: dict):
    s = env.streams
    out = await s.run("/exec/default/shell/c", s.exec_query(["cat"], stdin=True), stdin=b"some input\n")
    assert out.stdout == b"some input\n" and out.status == {"metadata": {}, "status": "Success"}
    out = await s.run("/exec/default/shell/c", s.exec_query(["sh", "-c", 'echo "$WHO"; echo oops >&2; exit 3']))
    assert (out.stdout, out.stderr, out.exit_code) == (b"busybox\n", b"oops\n", 3)
    assert out.status["message"] == "command terminated with non-zero exit code: exit status 3"
    # containerd applies the size from its own stream, concurrently with stdin: wait for it inside
    # (an empty answer too: busybox's stty may fail on the console just set up yet exit 0).
    wait_size = ('read line; for i in $(seq 100); do s=$(stty size 2>/dev/null) && [ -n "$s" ] && '
                 '[ "${s%% *}" != 0 ] && break; usleep 20000; done; echo "$s"')
    out = await s.run("/exec/default/shell/c", s.exec_query(["sh", "-c", wait_size], stdin=True, tty=True),
                      stdin=b"go\n", close_stdin=False, resize=(100, 40))
    assert b"40 100" in out.stdout and out.exit_code == 0, out


async def test_commands_that_cannot_run_exit_127_and_126(env: Env, shell: dict):
    s = env.streams
    out = await s.run("/exec/default/shell/c", s.exec_query(["no-such-command"]))
    # runc's words on stderr, and the exit code a shell (and Docker) gives.
    assert out.exit_code == 127, out
    assert out.stderr == (b'OCI runtime exec failed: exec failed: unable to start container process: '
                          b'exec: "no-such-command": executable file not found in $PATH: unknown\n')
    out = await s.run("/exec/default/shell/c", s.exec_query(["/etc/passwd"]))
    assert out.exit_code == 126 and b"permission denied" in out.stderr, out


async def test_refusals_before_the_upgrade(env: Env, shell: dict):
    s = env.streams
    status, body = await s.get("/exec/default/shell/never-started", s.exec_query(["true"]))
    assert (status, body) == (404, 'container not found ("never-started")')
    status, body = await s.get("/exec/default/missing/c", s.exec_query(["true"]))
    assert (status, body) == (404, 'pod not found ("default/missing")')


async def test_port_forward_10mb_intact_and_a_closed_port(env: Env, shell: dict):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = os.urandom(10 * 1024 * 1024)
    try:
        async with await env.streams.connect("/portForward/default/shell", [("port", str(port))],
                                             PORTFORWARD_PROTOCOL) as ws:
            async def send() -> None:
                for i in range(0, len(payload), 256 * 1024):
                    await ws.send_bytes(payload[i:i + 256 * 1024])
                await ws.send_bytes(b"")
            sender = asyncio.ensure_future(send())
            got = bytearray()
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                if not msg.data:
                    break
                got += msg.data
            await sender
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
    finally:
        server.close()
        await server.wait_closed()

    async with await env.streams.connect("/portForward/default/shell", [("port", str(port))],
                                         PORTFORWARD_PROTOCOL) as ws:
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        assert msg.data.startswith(f"error forwarding port {port} to pod ") and "connection refused" in msg.data


async def test_100_concurrent_forwarded_connections(env: Env, shell: dict):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=200)
    port = server.sockets[0].getsockname()[1]

    async def one(i: int) -> bytes:
        payload = f"connection {i} ".encode() * 1000
        async with await env.streams.connect("/portForward/default/shell", [("port", str(port))],
                                             PORTFORWARD_PROTOCOL) as ws:
            await ws.send_bytes(payload)
            await ws.send_bytes(b"")
            got = b""
            async for msg in ws:
                if not msg.data:
                    break
                got += msg.data
            assert got == payload, (i, len(got))
            return got
    try:
        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert len(results) == 100
    finally:
        server.close()
        await server.wait_closed()


async def test_attach_and_an_abandoned_exec(env: Env, shell: dict):
    await env.pod("talker", ["sh", "-c", "echo started; while read l; do echo got $l; done; echo bye"],
                  stdin=True, stdinOnce=True)
    s = env.streams
    out = await s.run("/attach/default/talker/c", s.exec_query(stdin=True), stdin=b"one\ntwo\n")
    assert b"got one\ngot two\n" in out.stdout, out

    # Dropping the stream closes containerd's session, as upstream: a tty's hang-up ends what runs
    # on it, a command reading stdin reads EOF.
    for argv, tty in ((["sleep", "6017"], True), (["cat", "-"], False)):
        ws = await s.connect("/exec/default/shell/c", s.exec_query(argv, stdin=True, tty=tty))
        await wait_for_async(lambda argv=argv: _running(argv), timeout=5, what=f"{argv} running")
        await ws.close()  # the API server's client went away
        await wait_for_async(lambda argv=argv: not _running(argv), timeout=10, what=f"the abandoned {argv} ended")


async def test_attach_to_a_tty_shell_as_kubectl_run_it(env: Env):
    await env.pod("interactive", ["sh"], stdin=True, stdinOnce=True, tty=True)
    s = env.streams
    out = await s.run("/attach/default/interactive/c", s.exec_query(stdin=True, tty=True),
                      stdin=b"echo hello $((6*7))\nexit 0\n", close_stdin=False, resize=(90, 30))
    assert b"hello 42" in out.stdout and out.stderr == b"", out
    assert out.status == {"metadata": {}, "status": "Success"}


async def test_a_stopped_container_ends_its_exec(env: Env):
    pod = await env.pod("doomed", ["sleep", "3600"])
    s = env.streams
    async with await s.connect("/exec/default/doomed/c", s.exec_query(["sh", "-c", "echo up; exec sleep 6018"])) as ws:
        assert (await ws.receive()).data == b"\x01up\n"
        stopping = asyncio.ensure_future(env.rt.remove_pod(pod["metadata"]["uid"]))
        rest = await asyncio.wait_for(s.collect(ws, ExecOutcome()), 20)
        assert rest.closed_by_agent
        await stopping
    assert not _running(["sleep", "6018"])
