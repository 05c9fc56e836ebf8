"""`pocketkube agent --hollow 20` against a real server: 20 simulated nodes go Ready, a Deployment
of 60 pods runs on them (Running, fake pod IPs from each node's podCIDR), deleting it removes
every pod, and the nodes' Leases keep being renewed."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.testing.procs import ServerProcess, read_until
from pocketkube.testing.waits import wait_for_async as wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NODES = BY_PLURAL[("", "nodes")]
PODS = BY_PLURAL[("", "pods")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]
COUNT = 20
FIRST_IP = "10.236.0.1"
POD_POOL = "10.236.128.0/17"


NODE_TOKENS = {f"hollow-{i}": secrets.token_urlsafe(24) for i in range(COUNT)}


@pytest.fixture(scope="module")
def server():
    """A server whose tokens.yaml names every hollow node: each authenticates as system:node:<name>
    (the Node authorizer and NodeRestriction apply), as real kubelets do."""
    root = Path(tempfile.mkdtemp(prefix="pk-hollow-"))
    s = ServerProcess(root / "data", extra_args=["--service-cidr", "10.239.0.0/16"])
    (s.data_dir / "pki").mkdir(parents=True, mode=0o700)
    tokens = s.data_dir / "pki" / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"admin": secrets.token_urlsafe(32), "nodes": NODE_TOKENS}))
    tokens.chmod(0o600)
    s.start()
    yield s
    s.stop(timeout=3)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hollow(server):
    root = Path(tempfile.mkdtemp(prefix="pk-hollow-agent-"))
    (root / "token").write_text(yaml.safe_dump(NODE_TOKENS))
    cmd = [sys.executable, "-m", "pocketkube", "agent", "--server", server.url, "--token-file", str(root / "token"),
           "--ca-file", str(server.ca_file), "--node-ip", FIRST_IP, "--pod-cidr", POD_POOL,
           "--data-dir", str(root / "data"), "--hollow", str(COUNT), "--lease-interval", "2"]
    with open(root / "agent.log", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    try:
        assert read_until(proc, lambda line: line.startswith("Node ready"), 30), (root / "agent.log").read_text()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def _deployment(replicas: int) -> dict:
    labels = {"app": "hollow-test"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hollow-test", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"nodeSelector": {"pocketkube.io/hollow": "true"},
                                           "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}


async def test_hollow_nodes_run_a_deployment(server, hollow):
    client = Client(server.url, server.token(), str(server.ca_file))
    try:
        nodes, _ = await client.list(NODES, label_selector="pocketkube.io/hollow=true")
        assert len(nodes) == COUNT and all(_ready(n) for n in nodes)
        cidrs = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes}
        assert len(set(cidrs.values())) == COUNT
        assert {n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in nodes} == {"hollow://0.1"}

        leases, _ = await client.list(LEASES, "kube-node-lease")
        renewed = {ls["metadata"]["name"]: ls["spec"]["renewTime"] for ls in leases}
        assert set(cidrs) <= set(renewed)

        await client.create(DEPLOYMENTS, _deployment(60))

        async def running() -> list[dict] | None:
            pods, _ = await client.list(PODS, "default", label_selector="app=hollow-test")
            ok = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            return pods if len(ok) == 60 and len(pods) == 60 else None
        pods = await wait_for(running, timeout=30, interval=0.2, what="60 Running pods")
        for p in pods:
            st = p["status"]
            node = p["spec"]["nodeName"]
            assert ipaddress.ip_address(st["podIP"]) in cidrs[node]
            assert st["containerStatuses"][0]["ready"] is True
            assert st["containerStatuses"][0]["containerID"].startswith("hollow://")
            assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
        assert len({p["status"]["podIP"] for p in pods}) == 60

        async def lease_renewed() -> bool:
            now, _ = await client.list(LEASES, "kube-node-lease")
            times = {ls["metadata"]["name"]: ls["spec"]["renewTime"] for ls in now}
            return all(times[n] != renewed[n] for n in cidrs)
        await wait_for(lease_renewed, timeout=10)

        await client.delete(DEPLOYMENTS, "default", "hollow-test")

        async def gone() -> bool:
            pods, _ = await client.list(PODS, "default", label_selector="app=hollow-test")
            return not pods
        await wait_for(gone, timeout=30)
    finally:
        await client.close()
