"""An API server alone with a fake node agent (pocketkube.testing.fake_stream_agent): a Node that
points at the agent and Running pods bound to it, for the exec/attach/port-forward tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apiclient import Api

from pocketkube.apiserver.pki import PKI
from pocketkube.testing.fake_stream_agent import FakePod, FakeStreamAgent, running_fake_agent
from pocketkube.testing.procs import ServerProcess

NODE = "fake-node"
NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"


@dataclass
class StreamsEnv:
    server: ServerProcess
    agent: FakeStreamAgent
    api: Api
    workdir: Path
    users: dict[str, str]


def pod_manifest(name: str, containers: tuple[str, ...] = ("app",), node: str = NODE) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": c, "image": "busybox"} for c in containers]}}


def add_pod(env: StreamsEnv, name: str, containers: tuple[str, ...] = ("app",), phase: str = "Running",
            node: str = NODE) -> dict:
    r = env.api.post(PODS, pod_manifest(name, containers, node))
    assert r.status == 201, r.body
    obj = r.json()
    obj["status"] = {"phase": phase}
    r = env.api.request("PUT", f"{PODS}/{name}/status", obj)
    assert r.status == 200, r.body
    obj = r.json()
    env.agent.pods[(NS, name)] = FakePod(uid=obj["metadata"]["uid"], containers=set(containers))
    return obj


def _register_node(api: Api, port: int) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
    r = api.post("/api/v1/nodes", node)
    assert r.status == 201, r.body
    obj = r.json()
    obj["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                     "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                     "conditions": [{"type": "Ready", "status": "True"}]}
    r = api.request("PUT", f"/api/v1/nodes/{NODE}/status", obj)
    assert r.status == 200, r.body


@contextmanager
def streams_env(prefix: str, users: tuple[str, ...] = ()) -> Iterator[StreamsEnv]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    workdir = root / "work"
    workdir.mkdir()
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir()
    pki = PKI(server.data_dir)
    pki.ensure(["127.0.0.1"])
    tokens = {u: pki.user_token(u) for u in users}
    node_token = pki.node_token(NODE)
    try:
        with running_fake_agent(node_token, {}, workdir=str(workdir)) as agent:
            server.start()
            api = Api(server)
            try:
                _register_node(api, agent.port)
                yield StreamsEnv(server, agent, api, workdir, tokens)
            finally:
                api.close()
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
