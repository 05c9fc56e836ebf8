"""A container cluster's node agent serves exec and port-forward as the API server will ask for them
(the internal protocol, with the node's token from the data dir, at the address and port its Node
publishes): into a busybox pod in its own network namespace, where port-forward reaches the pod's
own localhost."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import aiohttp
import pytest

from pocketkube.testing import images
from pocketkube.testing.agent_streams import PORTFORWARD_PROTOCOL, AgentStreams
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, ROOT, have_containerd, is_root, requires
from pocketkube.testing.waits import get_json, wait_for, wait_for_async

RANGES = {"node_ip_base": "10.167.0.0", "pod_cidr_base": "10.168.0.0/16", "service_cidr": "10.169.0.0/16",
          "lb_pool": "10.167.1.0/24"}
pytestmark = [requires(is_root(), ROOT), requires(have_containerd(), CONTAINERD),
              requires(images.have_busybox(), BUSYBOX), pytest.mark.slow, pytest.mark.timeout(240)]

# A web server on the pod's loopback only: reachable through port-forward, not on the pod IP.
WEB = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
       "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
           "name": "httpd", "image": "busybox",
           "command": ["sh", "-c", "mkdir -p /www && echo hello from the pod > /www/index.html && "
                                   "exec httpd -f -p 127.0.0.1:8080 -h /www"]}]}}


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory(prefix="pk-as-img-") as out, \
            image_cluster("pk-as-e2e-", Path(out), ["busybox"], nodes=1, **RANGES) as c:
        yield c


k = module_kubectl()


def _agent(cluster, k) -> AgentStreams:
    node = get_json(k, "nodes")["items"][0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    token = (cluster.data_dir / "nodes" / node["metadata"]["name"] / "token").read_text().strip()
    return AgentStreams(f"http://{ip}:{port}", token)


async def _http_through_forward(streams: AgentStreams, uid: str) -> bytes:
    async with await streams.connect("/portForward/default/web", [("port", "8080"), ("uid", uid)],
                                     PORTFORWARD_PROTOCOL) as ws:
        await ws.send_bytes(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        await ws.send_bytes(b"")
        got = b""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                return msg.data.encode()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not msg.data:
                    break
                got += msg.data
        return got


def test_exec_and_port_forward_into_a_pod_namespace(cluster, k):
    k.ok("create", "-f", "-", input=json.dumps(WEB))
    wait_for(lambda: get_json(k, "pod", "web")["status"].get("phase") == "Running", timeout=90,
             what="the web pod running")
    uid = get_json(k, "pod", "web")["metadata"]["uid"]

    async def scenario() -> None:
        streams = _agent(cluster, k)
        try:
            out = await streams.run("/exec/default/web/httpd",
                                    streams.exec_query(["sh", "-c", "cat /www/index.html; exit 4"], uid=uid))
            assert (out.stdout, out.exit_code) == (b"hello from the pod\n", 4)

            async def served() -> bytes | None:
                body = await _http_through_forward(streams, uid)
                return body if b"200 OK" in body else None
            body = await wait_for_async(served, timeout=30, interval=0.2, what="httpd answering through the forward")
            assert body.endswith(b"hello from the pod\n")

            async with await streams.connect("/portForward/default/web", [("port", "9")], PORTFORWARD_PROTOCOL) as ws:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT and "connection refused" in msg.data, msg
            status, body = await streams.get("/exec/default/web/nope", streams.exec_query(["true"]))
            assert (status, body) == (404, 'container not found ("nope")')
        finally:
            await streams.close()
    asyncio.run(scenario())
    k.ok("delete", "pod", "web", "--wait=false")
