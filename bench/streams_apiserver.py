"""The API server's share of exec and port-forward (issue 11), against a fake node agent that runs
commands as local processes (pocketkube.testing.fake_stream_agent), so the runtime is not in it.

- `kubectl exec pod -- true` round trip against `kubectl get pod` on the same pod, alternating,
  same kubectl (target: <= 2x);
- port-forward throughput over the WebSocket protocol (`v4.channel.k8s.io`, one stream of
  --megabytes to a local sink) against a direct TCP copy to the same sink (target: >= 30 %).
Run:

    .venv/bin/python bench/streams_apiserver.py [--rounds 20] [--megabytes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from pocketkube.apiserver.pki import PKI
from pocketkube.testing.fake_stream_agent import FakePod, running_fake_agent
from pocketkube.testing.procs import ServerProcess, preferred_kubectl

NODE = "bench-node"
CHUNK = 256 * 1024


def call(server: ServerProcess, method: str, path: str, body: dict) -> dict:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                       context=ssl.create_default_context(cafile=str(server.ca_file)))
    conn.request(method, path, json.dumps(body), {"Authorization": f"Bearer {server.token()}",
                                                  "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    assert resp.status in (200, 201), data
    return data


def setup(server: ServerProcess, agent_port: int) -> str:
    node = call(server, "POST", "/api/v1/nodes", {"metadata": {"name": NODE}})
    node["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}}}
    call(server, "PUT", f"/api/v1/nodes/{NODE}/status", node)
    pod = call(server, "POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "bench"}, "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "x"}]}})
    pod["status"] = {"phase": "Running"}
    return call(server, "PUT", "/api/v1/namespaces/default/pods/bench/status", pod)["metadata"]["uid"]


def exec_vs_get(kubeconfig: Path, rounds: int) -> tuple[float, float]:
    k = preferred_kubectl(kubeconfig)
    k.ok("get", "pod", "bench")  # discovery cached before timing
    gets, execs = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        k.ok("get", "pod", "bench")
        gets.append(time.perf_counter() - t)
        t = time.perf_counter()
        k.ok("exec", "bench", "--", "true")
        execs.append(time.perf_counter() - t)
    k.close()
    return statistics.median(gets), statistics.median(execs)


class Sink:
    """Reads and discards; answers b"ok" once `expect` bytes arrived."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                got = 0
                while got < self.expect and (data := conn.recv(1 << 20)):
                    got += len(data)
                conn.sendall(b"ok")


def direct_copy(port: int, total: int) -> float:
    block = b"x" * CHUNK
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(total // CHUNK):
            s.sendall(block)
        assert s.recv(2) == b"ok"
    return time.perf_counter() - t


async def forwarded_copy(server: ServerProcess, port: int, total: int) -> float:
    block = b"\x00" + b"x" * CHUNK
    url = f"https://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/bench/portforward?ports={port}"
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    async with aiohttp.ClientSession() as s:
        t = time.perf_counter()
        async with s.ws_connect(url, protocols=("v4.channel.k8s.io",), ssl=ctx,
                                headers={"Authorization": f"Bearer {server.token()}"}) as ws:
            for _ in range(total // CHUNK):
                await ws.send_bytes(block)
            async for msg in ws:
                if msg.data[:1] == b"\x00" and msg.data[1:] == b"ok":
                    break
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--megabytes", type=int, default=100)
    args = ap.parse_args()
    total = args.megabytes * 1024 * 1024 // CHUNK * CHUNK
    root = Path(tempfile.mkdtemp(prefix="pk-bench-streams-"))
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir()
    pki = PKI(server.data_dir)
    pki.ensure(["127.0.0.1"])
    token = pki.node_token(NODE)
    try:
        with running_fake_agent(token, {}, workdir=str(root)) as agent:
            server.start()
            uid = setup(server, agent.port)
            agent.pods[("default", "bench")] = FakePod(uid=uid, containers={"app"})
            get, exe = exec_vs_get(server.kubeconfig, args.rounds)
            print(f"kubectl get pod:       median {get * 1000:.1f} ms ({args.rounds} rounds)")
            print(f"kubectl exec -- true:  median {exe * 1000:.1f} ms ({exe / get:.2f}x get)   target <= 2x")
            sink = Sink(total)
            direct = min(direct_copy(sink.port, total) for _ in range(3))
            forwarded = min(asyncio.run(forwarded_copy(server, sink.port, total)) for _ in range(3))
            mb = total / 1024 / 1024
            print(f"direct TCP copy:       {mb / direct:.0f} MB/s ({mb:.0f} MB, best of 3)")
            print(f"port-forward (WS v4):  {mb / forwarded:.0f} MB/s ({direct / forwarded * 100:.0f} % of direct)"
                  "   target >= 30 %")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
