"""Port-forward into a CRI sandbox by dialling inside its network namespace (cri/netns_port.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import pytest

from pocketkube.agent.runtime.cri import netns_port
from pocketkube.testing.requires import ROOT, is_root, requires

pytestmark = pytest.mark.unit

LISTENER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); s.close(); c.sendall(b"hello from the namespace"); c.close()
sys.stdin.read()
"""


def test_netns_path_from_the_runtime_spec():
    info = {"pid": 42, "runtimeSpec": {"linux": {"namespaces": [
        {"type": "pid"}, {"type": "network", "path": "/var/lib/pk/netns/cni-1"}]}}}
    assert netns_port.netns_path(json.dumps(info)) == "/var/lib/pk/netns/cni-1"


def test_netns_path_falls_back_to_the_pause_process():
    assert netns_port.netns_path(json.dumps({"pid": 42})) == "/proc/42/ns/net"
    info = {"pid": 42, "runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}}}
    assert netns_port.netns_path(json.dumps(info)) == "/proc/42/ns/net"


@pytest.mark.parametrize("info", [
    "", "not json", "[]", json.dumps({"pid": 0}),
    # hostNetwork: namespaces listed, none of them a network one
    json.dumps({"pid": 42, "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}]}}}),
])
def test_netns_path_unknown(info):
    assert netns_port.netns_path(info) is None


@requires(is_root() and shutil.which("unshare") is not None, ROOT)
def test_dial_inside_a_network_namespace():
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {sys.executable} -c '{LISTENER}'"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        path = f"/proc/{proc.pid}/ns/net"

        async def run() -> None:
            sock = netns_port.dial(path, port, "sandbox-1")
            reader, writer = await asyncio.open_connection(sock=await sock)
            assert await reader.read() == b"hello from the namespace"
            writer.close()
            # Nothing listens there any more: containerd's words, with the sandbox's id.
            with pytest.raises(ConnectionError) as e:
                await netns_port.dial(path, port, "sandbox-1")
            assert e.value.strerror == (
                f'failed to execute portforward in network namespace "{path}": failed to connect to localhost:{port} inside namespace "sandbox-1", IPv4: dial tcp4 '
                f"127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: "
                "connection refused ")
            with pytest.raises(netns_port.NetnsUnavailable):
                await netns_port.dial("/proc/0/ns/net", port, "sandbox-1")
        asyncio.run(run())
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_tcp_port_stream_relays_half_closes_and_pauses(monkeypatch):
    from pocketkube.agent.runtime import tcp_stream

    monkeypatch.setattr(tcp_stream, "HIGH_WATER", 64 * 1024)

    async def run() -> None:
        got = bytearray()
        done = asyncio.Event()
        sent = b"x" * (1024 * 1024)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(sent)
            writer.write_eof()  # the pod half-closes; it still reads
            got.extend(await reader.read())
            done.set()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await tcp_stream.TcpPortStream.connect("127.0.0.1", port)
        async def paused() -> None:  # nobody reads yet: the pod's socket is paused at HIGH_WATER
            while not stream._protocol._paused:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(paused(), 5)
        assert stream._protocol.buffered <= tcp_stream.HIGH_WATER + 256 * 1024
        received = bytearray()
        while data := await stream.read():
            received += data
        assert bytes(received) == sent
        await stream.write(b"from the client")
        await stream.write_eof()
        await asyncio.wait_for(done.wait(), 5)
        assert bytes(got) == b"from the client"
        await stream.close()
        with pytest.raises(ConnectionError):
            await stream.write(b"late")
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await tcp_stream.TcpPortStream.connect("127.0.0.1", port)
    asyncio.run(run())
