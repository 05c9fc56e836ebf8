"""kubectl 1.32 and 1.37 over SPDY in a container cluster, the whole path: kubectl → the API
server's SPDY termination (raw, or tunnelled in a WebSocket, kubectl's port-forward default) →
the relay → the node agent → containerd's streaming server (SPDY again, our client) → the pod.
port-forward to a server on the pod's own loopback: 10 MB intact, 20 connections at once, a closed
port; exec with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false: exit codes, stdin to EOF."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster
from pocketkube.testing.procs import kubectl_binaries
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, ROOT, have_containerd, is_root, requires
from pocketkube.testing.waits import wait_for

# The relay (apistreams) and the agent's streaming endpoints (agentstreams) are other parts of
# issue 11: on the spdy branch alone they are not there (on main, merged, they are).
pytest.importorskip("pocketkube.apiserver.streams.relay", reason="the apistreams part is not merged")
pytest.importorskip("pocketkube.agent.streaming.server", reason="the agentstreams part is not merged")

RANGES = {"node_ip_base": "10.164.0.0", "pod_cidr_base": "10.165.0.0/16", "service_cidr": "10.166.0.0/16",
          "lb_pool": "10.164.1.0/24"}
pytestmark = [requires(is_root(), ROOT), requires(have_containerd(), CONTAINERD),
              requires(images.have_busybox(), BUSYBOX), pytest.mark.slow, pytest.mark.timeout(300)]
KUBECTLS = sorted(kubectl_binaries().values())
VERSIONS = {k: ("1.32" if k == "/usr/bin/kubectl" else "1.37") for k in KUBECTLS}
BIG = 10 * 1024 * 1024

# httpd on the pod's loopback only (reachable through port-forward alone), serving 10 MB of noise
WEB = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
       "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
           "name": "httpd", "image": "busybox",
           "command": ["sh", "-c", f"mkdir -p /www && echo hello > /www/index.html && "
                                   f"head -c {BIG} /dev/urandom > /www/big && exec httpd -f -p 127.0.0.1:8080 -h /www"]}]}}


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory(prefix="pk-spdy-img-") as out, \
            image_cluster("pk-spdy-e2e-", Path(out), ["busybox"], nodes=1, **RANGES) as c:
        env = dict(os.environ, KUBECONFIG=str(c.kubeconfig), HOME=out)
        subprocess.run([KUBECTLS[0], "create", "-f", "-"], input=json.dumps(WEB), text=True, env=env, check=True,
                       capture_output=True)

        def running() -> bool:
            cp = subprocess.run([KUBECTLS[0], "get", "pod", "web", "-o", "json"], capture_output=True, text=True,
                                env=env)
            return cp.returncode == 0 and json.loads(cp.stdout)["status"].get("phase") == "Running"
        wait_for(running, timeout=90, what="the web pod running")
        c.env = env
        yield c


def kube_env(cluster, websockets: bool) -> dict:
    env = dict(cluster.env)
    if not websockets:
        env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
        env["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "false"
    return env


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: web\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    return body


MODES = [(k, ws) for k in KUBECTLS for ws in (True, False)]


@pytest.mark.parametrize("kubectl, websockets", MODES,
                         ids=[f"{VERSIONS[k]}-{'ws' if ws else 'spdy'}" for k, ws in MODES])
def test_port_forward_into_the_pod(cluster, kubectl, websockets):
    env = kube_env(cluster, websockets)
    want = subprocess.run([kubectl, "exec", "web", "--", "sha256sum", "/www/big"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert want.returncode == 0, want.stderr
    digest = want.stdout.split()[0]

    async def scenario() -> str:
        proc = await asyncio.create_subprocess_exec(
            kubectl, "port-forward", "pod/web", ":8080", ":9", "--address", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        try:
            ports: dict[int, int] = {}
            while len(ports) < 2:
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                assert line, (await proc.stderr.read()).decode()
                if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line):
                    ports[int(m.group(2))] = int(m.group(1))
            big = await asyncio.wait_for(http_get(ports[8080], "/big"), 60)
            assert len(big) == BIG and hashlib.sha256(big).hexdigest() == digest
            pages = await asyncio.wait_for(asyncio.gather(*(http_get(ports[8080], "/index.html") for _ in range(20))),
                                           60)
            assert pages == [b"hello\n"] * 20
            reader, writer = await asyncio.open_connection("127.0.0.1", ports[9])
            assert await asyncio.wait_for(reader.read(), 30) == b""  # the closed port: this connection ends
            writer.close()
        finally:
            proc.kill()
            await proc.wait()
        return (await proc.stderr.read()).decode()
    err = asyncio.run(scenario())
    assert re.search(r"error forwarding port 9 to pod .*connection refused", err), err


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=[VERSIONS[k] for k in KUBECTLS])
def test_exec_over_spdy(cluster, kubectl):
    env = kube_env(cluster, websockets=False)
    cp = subprocess.run([kubectl, "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 5"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert (cp.returncode, cp.stdout) == (5, "out\n"), cp.stderr
    assert cp.stderr.endswith("err\ncommand terminated with exit code 5\n"), cp.stderr
    payload = os.urandom(3 * 1024 * 1024)
    cp = subprocess.run([kubectl, "exec", "-i", "web", "--", "sha256sum"], input=payload, capture_output=True,
                        env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()
    cp = subprocess.run([kubectl, "exec", "web", "--", "no-such-command"], capture_output=True, text=True,
                        env=env, timeout=60)
    assert cp.returncode in (126, 127), (cp.returncode, cp.stderr)
