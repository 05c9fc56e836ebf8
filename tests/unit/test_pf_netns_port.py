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
                f'failed to connect to localhost:{port} inside namespace "sandbox-1", IPv4: dial tcp4 '
                f"127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: "
                "connection refused ")
            with pytest.raises(netns_port.NetnsUnavailable):
                await netns_port.dial("/proc/0/ns/net", port, "sandbox-1")
        asyncio.run(run())
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
