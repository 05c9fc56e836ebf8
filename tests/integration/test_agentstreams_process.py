"""The node agent's exec, attach and port-forward endpoints on the process runtime, spoken to as
the API server does (the internal protocol: WebSocket, the node's token), against a real agent
and API server: stdin and its EOF, exit codes, a tty and its size, commands that cannot run,
refusals before the upgrade, 10 MB through a forwarded port, a closed port, attach with stdin,
and an abandoned exec leaving no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from pocketkube.agent.runtime.process import proc_start_ticks
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.nodeagent import Agent, AgentConfig
from pocketkube.testing.agent_streams import PORTFORWARD_PROTOCOL, AgentStreams, ExecOutcome
from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.waits import wait_for_async

PODS = BY_PLURAL[("", "pods")]
NODE_IP = "127.167.0.1"
POD_CIDR = "127.167.1.0/24"

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]

ECHO_SERVER = """
import asyncio, sys
async def serve(r, w):
    while data := await r.read(65536):
        w.write(data)
        await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(serve, "0.0.0.0", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-as-srv-"))
    s = ServerProcess(root / "data")
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop(timeout=0.3)
    shutil.rmtree(root, ignore_errors=True)


class Env:
    def __init__(self, agent: Agent, client: Client, streams: AgentStreams) -> None:
        self.agent, self.client, self.streams = agent, client, streams

    async def pod(self, name: str, containers: list[dict]) -> dict:
        await self.client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                        "metadata": {"name": name, "namespace": "default"},
                                        "spec": {"nodeName": "as-node", "containers": containers}})

        async def running():
            pod = await self.client.get(PODS, "default", name)
            cs = (pod.get("status") or {}).get("containerStatuses") or []
            return pod if cs and all("running" in c.get("state", {}) for c in cs) else None
        return await wait_for_async(running, timeout=15, what=f"pod {name} running")

    async def delete(self, name: str) -> None:
        await self.client.delete(PODS, "default", name, grace_period=0)

        async def gone():
            try:
                await self.client.get(PODS, "default", name)
            except errors.NotFound:
                return True
            return False
        await wait_for_async(gone, timeout=15, what=f"pod {name} deleted")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(server):
    root = Path(tempfile.mkdtemp(prefix="pk-as-agent-"))
    cfg = AgentConfig(server=server.url, token=server.token(), ca_file=str(server.ca_file), node_name="as-node",
                      node_ip=NODE_IP, pod_cidr=POD_CIDR, data_dir=root, kubelet_port=0, dataplane="userspace")
    agent = Agent(cfg)
    await agent.start()
    client = Client(server.url, server.token(), str(server.ca_file))
    streams = AgentStreams(f"http://{NODE_IP}:{agent.node.kubelet_port}", cfg.token)
    e = Env(agent, client, streams)
    await e.pod("shell", [{"name": "sh", "image": "busybox", "command": ["sleep", "3600"],
                           "env": [{"name": "GREETING", "value": "hello from the pod"}]}])
    try:
        yield e
    finally:
        await streams.close()
        await client.close()
        await agent.shutdown(True)
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    return proc_start_ticks(pid) is not None


async def test_exec_stdin_eof_env_and_exit_codes(env: Env):
    s = env.streams
    out = await s.run("/exec/default/shell/sh", s.exec_query(["cat"], stdin=True), stdin=b"some input\n")
    assert out.stdout == b"some input\n" and out.status == {"metadata": {}, "status": "Success"}
    out = await s.run("/exec/default/shell/sh",
                      s.exec_query(["sh", "-c", 'echo "$GREETING"; echo oops >&2; exit 3']))
    assert out.stdout == b"hello from the pod\n" and out.stderr == b"oops\n"
    assert out.exit_code == 3 and out.status["reason"] == "NonZeroExitCode"
    assert out.status["message"] == "command terminated with non-zero exit code: exit status 3"
    assert out.frames[-1][0] == 3 and out.closed_by_agent


async def test_commands_that_cannot_run_exit_127_and_126(env: Env):
    s = env.streams
    out = await s.run("/exec/default/shell/sh", s.exec_query(["no-such-command"]))
    assert out.exit_code == 127
    assert out.stderr == b'exec: "no-such-command": executable file not found in $PATH\n'
    out = await s.run("/exec/default/shell/sh", s.exec_query(["/etc/passwd"]))
    assert out.exit_code == 126 and b"permission denied" in out.stderr


async def test_tty_has_the_size_sent_and_merges_output(env: Env):
    s = env.streams
    out = await s.run("/exec/default/shell/sh",
                      s.exec_query(["sh", "-c", "read line; stty size; tty; echo err >&2"], stdin=True, tty=True,
                                   stderr=True),
                      stdin=b"go\n", close_stdin=False, resize=(100, 40))
    text = out.stdout.replace(b"\r\n", b"\n")
    assert b"40 100\n" in text and b"/dev/pts/" in text and b"err\n" in text and out.stderr == b""
    assert out.exit_code == 0


async def test_refusals_before_the_upgrade(env: Env):
    s = env.streams
    status, body = await s.get("/exec/default/missing/sh", s.exec_query(["true"]))
    assert (status, body) == (404, 'pod not found ("default/missing")')
    status, body = await s.get("/exec/default/shell/nope", s.exec_query(["true"]))
    assert (status, body) == (404, 'container not found ("nope")')
    status, body = await s.get("/exec/default/shell/sh", s.exec_query(["true"], uid="another-uid"))
    assert (status, body) == (404, 'pod not found ("default/shell")')
    status, body = await s.get("/exec/default/shell/sh", s.exec_query([]))
    assert (status, body) == (400, "you must specify at least 1 command")
    status, body = await s.get("/portForward/default/shell", [("port", "0")])
    assert status == 400 and "between 1 and 65535" in body
    async with aiohttp.ClientSession() as anonymous:
        url = f"{s.base}/exec/default/shell/sh?command=true&stdout=1"
        async with anonymous.get(url, headers={"Authorization": "Bearer not-the-token"}) as r:
            assert r.status == 401


async def test_port_forward_10mb_intact_and_a_closed_port(env: Env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pod = await env.pod("echo", [{"name": "py", "image": "python", "command": ["python3", "-c", ECHO_SERVER, str(port)]}])
    uid = pod["metadata"]["uid"]
    payload = os.urandom(10 * 1024 * 1024)

    async def forward_once() -> bytes | str:
        async with await env.streams.connect("/portForward/default/echo", [("port", str(port)), ("uid", uid)],
                                             PORTFORWARD_PROTOCOL) as ws:
            async def send():
                for i in range(0, len(payload), 256 * 1024):
                    await ws.send_bytes(payload[i:i + 256 * 1024])
                await ws.send_bytes(b"")
            sender = asyncio.ensure_future(send())
            got = bytearray()
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    sender.cancel()
                    return msg.data
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if not msg.data:
                        break
                    got += msg.data
            await sender
            return bytes(got)

    async def echoed():
        result = await forward_once()
        return result if isinstance(result, bytes) else None  # the server may not listen yet
    got = await wait_for_async(echoed, timeout=15, what="the echo server")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()

    async with await env.streams.connect("/portForward/default/echo", [("port", "1")], PORTFORWARD_PROTOCOL) as ws:
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT
        assert msg.data.startswith(f"error forwarding port 1 to pod {uid}, uid : failed to connect to localhost:1")
        assert "connection refused" in msg.data
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await env.delete("echo")


async def test_attach_output_and_stdin_once(env: Env):
    await env.pod("talker", [{"name": "cat", "image": "busybox", "stdin": True, "stdinOnce": True,
                              "command": ["sh", "-c", "echo started; while read l; do echo got $l; done; echo bye"]}])
    s = env.streams
    out = await s.run("/attach/default/talker/cat", s.exec_query(stdin=True), stdin=b"one\ntwo\n")
    # stdinOnce: the container's stdin ended with this attach, so it said bye and exited.
    assert b"got one\ngot two\n" in out.stdout and out.stdout.endswith(b"bye\n")
    assert out.status == {"metadata": {}, "status": "Success"}
    await env.delete("talker")


async def test_abandoned_exec_and_a_deleted_pod_leave_no_process(env: Env):
    s = env.streams
    ws = await s.connect("/exec/default/shell/sh", s.exec_query(["sh", "-c", "echo $$; sleep 600 & wait"]))
    msg = await ws.receive()
    pid = int(msg.data[1:])
    assert _alive(pid)
    await ws.close()  # the API server's client went away
    await wait_for_async(lambda: not _alive(pid), timeout=5, what="the exec's process killed")

    await env.pod("doomed", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}])
    async with await s.connect("/exec/default/doomed/c", s.exec_query(["sh", "-c", "echo $$; exec sleep 600"])) as ws:
        pid = int((await ws.receive()).data[1:])
        deleting = asyncio.ensure_future(env.delete("doomed"))
        rest = await asyncio.wait_for(s.collect(ws, ExecOutcome()), 15)
        assert rest.closed_by_agent and rest.exit_code == 137
        await deleting
    assert not _alive(pid)


async def test_sessions_leave_no_fds_or_processes(env: Env):
    s = env.streams

    def fds() -> int:
        """The pipes and terminals open in this process (the agent runs in it): an exec's fds."""
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                count += target.startswith(("pipe:", "/dev/ptmx", "/dev/pts/"))
        return count
    # One round first, so that lazily opened things (connection pools) are counted in the baseline.
    await s.run("/exec/default/shell/sh", s.exec_query(["true"]))
    baseline = fds()
    for i in range(10):
        tty = i % 2 == 1
        await s.run("/exec/default/shell/sh", s.exec_query(["cat"], stdin=True, tty=tty), stdin=b"x\n")
        ws = await s.connect("/exec/default/shell/sh", s.exec_query(["sleep", "600"], stdin=True, tty=tty))
        await ws.close()
    await wait_for_async(lambda: fds() <= baseline, timeout=5, what=f"fds back to {baseline}")
    await wait_for_async(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _argv(int(p)) == ["sleep", "600"]],
                         timeout=5, what="no exec'd process left")


def _argv(pid: int) -> list[str]:
    try:
        return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


async def test_a_stopping_agent_ends_its_open_streams_at_once(server):
    """`up`'s Ctrl-C must not wait for an open `kubectl exec -it` (the HTTP server's shutdown
    would wait a minute for it)."""
    root = Path(tempfile.mkdtemp(prefix="pk-as-agent2-"))
    cfg = AgentConfig(server=server.url, token=server.token(), ca_file=str(server.ca_file), node_name="as-node2",
                      node_ip="127.167.0.2", pod_cidr="127.167.2.0/24", data_dir=root, kubelet_port=0,
                      dataplane="userspace")
    agent = Agent(cfg)
    await agent.start()
    client = Client(server.url, server.token(), str(server.ca_file))
    streams = AgentStreams(f"http://127.167.0.2:{agent.node.kubelet_port}", cfg.token)
    try:
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy", "namespace": "default"},
                                   "spec": {"nodeName": "as-node2",
                                            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}})
        await wait_for_async(lambda: agent.runtime.running(), timeout=15, what="the container running")
        ws = await streams.connect("/exec/default/busy/c", streams.exec_query(["sh", "-c", "echo $$; exec sleep 600"],
                                                                            stdin=True))
        pid = int((await ws.receive()).data[1:])
        reader = asyncio.ensure_future(ws.receive())  # the API server answers the agent's close
        started = time.monotonic()
        await agent.log_server.stop()
        assert time.monotonic() - started < 5
        assert (await reader).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await wait_for_async(lambda: not _alive(pid), timeout=5, what="the exec's process killed")
    finally:
        await streams.close()
        await client.delete(PODS, "default", "busy", grace_period=0)
        await client.close()
        await agent.shutdown(True)
        shutil.rmtree(root, ignore_errors=True)


async def test_exec_into_a_container_adopted_after_an_agent_restart(server):
    """A restarted agent finds its containers again; an exec into one gets its environment from
    the running process (the agent that started it kept it in memory only)."""
    root = Path(tempfile.mkdtemp(prefix="pk-as-agent3-"))
    cfg = AgentConfig(server=server.url, token=server.token(), ca_file=str(server.ca_file), node_name="as-node3",
                      node_ip="127.167.0.3", pod_cidr="127.167.3.0/24", data_dir=root, kubelet_port=0,
                      dataplane="userspace")
    client = Client(server.url, server.token(), str(server.ca_file))
    agent = Agent(cfg)
    await agent.start()
    try:
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kept", "namespace": "default"},
                                   "spec": {"nodeName": "as-node3", "containers": [{
                                       "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                       "env": [{"name": "GREETING", "value": "still here"}]}]}})
        await wait_for_async(lambda: agent.runtime.running(), timeout=15, what="the container running")
        await agent.shutdown(False)  # the agent goes, its containers stay
        agent = Agent(cfg)
        await agent.start()
        await wait_for_async(lambda: agent.runtime.running(), timeout=15, what="the container adopted")
        streams = AgentStreams(f"http://127.167.0.3:{agent.node.kubelet_port}", cfg.token)
        try:
            async def greeting():
                out = await streams.run("/exec/default/kept/c", streams.exec_query(["sh", "-c", 'echo "$GREETING"']))
                return out if out.status is not None else None
            out = await wait_for_async(greeting, timeout=15, what="an exec into the adopted container")
            assert out.stdout == b"still here\n" and out.exit_code == 0
        finally:
            await streams.close()
    finally:
        with contextlib.suppress(errors.NotFound):
            await client.delete(PODS, "default", "kept", grace_period=0)
        await client.close()
        await agent.shutdown(True)
        shutil.rmtree(root, ignore_errors=True)
