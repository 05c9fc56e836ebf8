"""The node agent against a real API server: pods become real processes, and go away again."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from pocketkube.agent.runtime import images
from pocketkube.agent.runtime.process import proc_start_ticks
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.nodeagent import Agent, AgentConfig
from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.requires import NGINX, requires

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
EVENTS = BY_PLURAL[("", "events")]
SERVICES = BY_PLURAL[("", "services")]
_node_numbers = itertools.count(101)


@pytest.fixture(scope="module")
def server():
    """A server of our own: the shared fixture waits 10 s for the server to stop, which it currently
    needs because watch handlers outlive their (cancelled) clients."""
    root = Path(tempfile.mkdtemp(prefix="pk-srv-"))
    s = ServerProcess(root / "data")
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop(timeout=0.3)
    shutil.rmtree(root, ignore_errors=True)


class Node:
    """One in-process agent on its own node IP, pod CIDR and data dir."""

    def __init__(self, server, n: int) -> None:
        self.name = f"agent-test-{n}"
        self.ip = f"127.0.7.{n}"
        self.root = Path(tempfile.mkdtemp(prefix="pk-agent-"))
        self.cfg = AgentConfig(server=server.url, token=server.token(), ca_file=str(server.ca_file),
                               node_name=self.name, node_ip=self.ip, pod_cidr=f"127.247.{n}.0/24",
                               data_dir=self.root, kubelet_port=0, dataplane="userspace")
        self.agent: Agent | None = None
        self.pids: set[int] = set()

    async def start(self) -> Agent:
        self.agent = Agent(self.cfg)
        await self.agent.start()
        return self.agent

    async def stop(self, kill_pods: bool = True) -> None:
        if self.agent is not None:
            await self.agent.shutdown(kill_pods)
            self.agent = None


@pytest.fixture
async def node(server):
    n = Node(server, next(_node_numbers))
    await n.start()
    yield n
    await n.stop(kill_pods=True)
    leftovers = [pid for pid in n.pids if proc_start_ticks(pid) is not None]
    shutil.rmtree(n.root, ignore_errors=True)
    assert not leftovers, f"container processes left running: {leftovers}"


@pytest.fixture
async def client(server):
    c = Client(server.url, server.token(), str(server.ca_file))
    yield c
    await c.close()


async def eventually(check: Callable[[], Awaitable[object]], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
            if value:
                return value
        except (AssertionError, errors.ApiError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def pod_manifest(name: str, node: Node, containers: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node.name, "containers": containers, **spec}}


async def wait_status(client: Client, name: str, pred: Callable[[dict], bool], timeout: float = 5.0) -> dict:
    async def check():
        pod = await client.get(PODS, "default", name)
        return pod if pred(pod.get("status") or {}) else None
    return await eventually(check, timeout)


def is_ready(status: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def container_pid(node: Node, pod: dict, container: str) -> int:
    assert node.agent is not None
    h = node.agent.runtime.history(pod["metadata"]["uid"], container)
    assert h is not None
    node.pids.add(h.current.pid)
    return h.current.pid


async def fetch_logs(node: Node, pod: str, container: str, **params: str) -> tuple[int, str]:
    assert node.agent is not None
    url = f"http://{node.ip}:{node.agent.node.kubelet_port}/containerLogs/default/{pod}/{container}"
    headers = {"Authorization": f"Bearer {node.cfg.token}"}
    async with aiohttp.ClientSession() as s, s.get(url, params=params, headers=headers) as r:
        return r.status, await r.text()


async def test_node_registration_and_lease(node: Node, client: Client):
    n = await client.get(NODES, "", node.name)
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == node.name
    assert n["spec"]["podCIDR"] == node.cfg.pod_cidr
    ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == \
        ("True", "KubeletReady", "kubelet is posting ready status")
    assert {"type": "InternalIP", "address": node.ip} in n["status"]["addresses"]
    assert n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == node.agent.node.kubelet_port
    assert n["status"]["capacity"]["pods"] == "110"
    lease = await client.get(LEASES, "kube-node-lease", node.name)
    assert lease["spec"]["holderIdentity"] == node.name and lease["spec"]["leaseDurationSeconds"] == 40
    assert len(lease["spec"]["renewTime"]) == len("2024-01-01T00:00:00.000000Z")
    # A restarted agent takes over its Node instead of failing.
    await node.stop(kill_pods=True)
    await node.start()


@requires(os.access(images.NGINX, os.X_OK), NGINX)
async def test_nginx_pod_runs_serves_logs_and_is_deleted_gracefully(node: Node, client: Client):
    await client.create(PODS, pod_manifest("web", node, [{"name": "nginx", "image": "nginx:1.27",
                                                           "ports": [{"containerPort": 80}]}]))
    pod = await wait_status(client, "web", lambda s: s.get("phase") == "Running" and is_ready(s))
    st = pod["status"]
    assert st["podIP"].startswith(f"127.247.{node.ip.rsplit('.', 1)[1]}.") and st["hostIP"] == node.ip
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"].startswith("pocketkube://")
    pid = container_pid(node, pod, "nginx")
    if os.geteuid() == 0:
        uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith("Uid:"))
        assert uid_line.split()[1] == "65534"  # nobody, with only CAP_NET_BIND_SERVICE to bind port 80

    async def get_page():
        async with aiohttp.ClientSession() as s, s.get(f"http://{st['podIP']}/") as r:
            return await r.text()
    assert "Welcome to nginx!" in await eventually(get_page)

    status, _ = await eventually(lambda: _logs_with(node, "web", "nginx", '"GET / HTTP/1.1" 200'))
    assert status == 200
    async with aiohttp.ClientSession() as s:
        url = f"http://{node.ip}:{node.agent.node.kubelet_port}/containerLogs/default/web/nginx"
        async with s.get(url) as r:
            assert r.status == 401

    await client.delete(PODS, "default", "web")

    async def gone():
        try:
            await client.get(PODS, "default", "web")
            return False
        except errors.NotFound:
            return True
    await eventually(gone)
    assert proc_start_ticks(pid) is None
    reasons = await eventually(lambda: _event_reasons(client, "web", {"Pulled", "Created", "Started", "Killing"}))
    assert reasons >= {"Pulled", "Created", "Started", "Killing"}


async def _logs_with(node: Node, pod: str, container: str, needle: str) -> tuple[int, str] | None:
    status, text = await fetch_logs(node, pod, container)
    return (status, text) if needle in text else None


async def _event_reasons(client: Client, pod: str, want: set[str]) -> set[str] | None:
    items, _ = await client.list(EVENTS, "default")
    got = {e["reason"] for e in items if e["involvedObject"]["name"] == pod}
    return got if got >= want else None


async def test_env_service_links_and_expansion(node: Node, client: Client):
    await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": "myapp-service", "namespace": "default"},
                                   "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    try:
        await eventually(lambda: _has_service(node, "myapp-service"))
        script = 'echo "ip=$POD_IP host=$MYAPP_SERVICE_SERVICE_HOST k8s=$KUBERNETES_SERVICE_PORT"; echo "$1"'
        await client.create(PODS, pod_manifest("envpod", node, [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", script, "--"],
            "args": ["arg=$(POD_IP) $$(POD_IP) $(NOPE)"],
            "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            restartPolicy="Never"))
        pod = await wait_status(client, "envpod", lambda s: s.get("phase") == "Succeeded")
        ip = pod["status"]["podIP"]
        svc = await client.get(SERVICES, "default", "myapp-service")
        _, text = await fetch_logs(node, "envpod", "c")
        assert text.splitlines() == [f"ip={ip} host={svc['spec']['clusterIP']} k8s=443",
                                     f"arg={ip} $(POD_IP) $(NOPE)"]
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    finally:
        await client.delete(SERVICES, "default", "myapp-service")
        await client.delete(PODS, "default", "envpod")


async def _has_service(node: Node, name: str) -> bool:
    return any(s["metadata"]["name"] == name for s in node.agent.kubelet.services())


async def test_crash_loop_back_off_and_previous_logs(node: Node, client: Client):
    await client.create(PODS, pod_manifest("crash", node, [{"name": "c", "image": "busybox",
                                                             "command": ["sh", "-c", "echo run; exit 2"]}]))

    def looping(s: dict) -> bool:
        cs = (s.get("containerStatuses") or [{}])[0]
        return (cs.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
    pod = await wait_status(client, "crash", looping)
    cs = pod["status"]["containerStatuses"][0]
    uid = pod["metadata"]["uid"]
    assert cs["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=c pod=crash_default({uid})"
    assert cs["restartCount"] == 1 and cs["lastState"]["terminated"]["exitCode"] == 2
    assert pod["status"]["phase"] == "Running" and not cs["ready"]
    status, text = await fetch_logs(node, "crash", "c", previous="true")
    assert (status, text) == (200, "run\n")
    await eventually(lambda: _event_reasons(client, "crash", {"BackOff"}))
    await client.delete(PODS, "default", "crash", grace_period=0)


async def test_unrunnable_image_waits_with_err_image_pull_and_an_event(node: Node, client: Client):
    await client.create(PODS, pod_manifest("noimg", node, [{"name": "c", "image": "foo:1.0"}]))

    def pulling(s: dict) -> bool:
        cs = (s.get("containerStatuses") or [{}])[0]
        reason = (cs.get("state") or {}).get("waiting", {}).get("reason")
        return reason in ("ErrImagePull", "ImagePullBackOff")
    pod = await wait_status(client, "noimg", pulling)
    assert pod["status"]["phase"] == "Pending"
    message = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert 'image "foo:1.0" cannot be run locally by pocketkube: no local catalog entry' in message

    async def failed_event():
        items, _ = await client.list(EVENTS, "default")
        return [e for e in items if e["involvedObject"]["name"] == "noimg" and e["reason"] == "Failed"]
    events = await eventually(failed_event)
    e = events[0]
    assert e["type"] == "Warning" and e["source"] == {"component": "kubelet", "host": node.name}
    assert e["involvedObject"]["kind"] == "Pod" and e["involvedObject"]["uid"] == pod["metadata"]["uid"]
    await client.delete(PODS, "default", "noimg", grace_period=0)


async def test_restarted_agent_readopts_running_containers_and_kills_orphans(node: Node, client: Client):
    await client.create(PODS, pod_manifest("keep", node, [{"name": "c", "image": "busybox",
                                                            "command": ["sleep", "60"]}]))
    await client.create(PODS, pod_manifest("drop", node, [{"name": "c", "image": "busybox",
                                                            "command": ["sleep", "60"]}]))
    keep = await wait_status(client, "keep", is_ready)
    drop = await wait_status(client, "drop", is_ready)
    keep_pid, drop_pid = container_pid(node, keep, "c"), container_pid(node, drop, "c")
    await node.stop(kill_pods=False)
    assert proc_start_ticks(keep_pid) is not None and proc_start_ticks(drop_pid) is not None
    await client.delete(PODS, "default", "drop", grace_period=0)  # deleted while the node is down

    agent = await node.start()
    await eventually(lambda: _dead(drop_pid))
    assert proc_start_ticks(keep_pid) is not None
    assert agent.runtime.history(keep["metadata"]["uid"], "c").current.pid == keep_pid
    pod = await client.get(PODS, "default", "keep")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 0 and cs["ready"] and pod["status"]["podIP"] == keep["status"]["podIP"]
    await client.delete(PODS, "default", "keep", grace_period=1)
    await eventually(lambda: _dead(keep_pid))


async def _dead(pid: int) -> bool:
    return proc_start_ticks(pid) is None


async def test_failed_liveness_probe_restarts_the_container(node: Node, client: Client):
    # The probe fails once (creating its marker), then passes: one restart, then a healthy container.
    probe = {"exec": {"command": ["sh", "-c", "test -f alive || { touch alive; exit 1; }"]},
             "periodSeconds": 1, "failureThreshold": 1}
    await client.create(PODS, pod_manifest("live", node, [{"name": "c", "image": "busybox",
                                                            "command": ["sleep", "60"], "livenessProbe": probe}],
                                           terminationGracePeriodSeconds=2))

    def restarted(s: dict) -> bool:
        cs = (s.get("containerStatuses") or [{}])[0]
        return cs.get("restartCount") == 1 and "running" in (cs.get("state") or {})
    pod = await wait_status(client, "live", restarted)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    assert cs["ready"] and is_ready(pod["status"])
    container_pid(node, pod, "c")

    async def events():
        items, _ = await client.list(EVENTS, "default")
        got = {(e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == "live"}
        want = {("Killing", "Container c failed liveness probe, will be restarted"),
                ("Unhealthy", "Liveness probe failed: ")}
        return got if got >= want else None
    await eventually(events)
    await client.delete(PODS, "default", "live", grace_period=0)


async def test_init_containers_run_to_completion_first(node: Node, client: Client):
    await client.create(PODS, pod_manifest(
        "inits", node, [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo main; sleep 60"]}],
        initContainers=[{"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first"]},
                        {"name": "second", "image": "busybox", "command": ["true"]}]))
    pod = await wait_status(client, "inits", is_ready)
    inits = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    assert all(s["state"]["terminated"]["reason"] == "Completed" for s in inits)
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")["status"] == "True"
    container_pid(node, pod, "main")
    assert (await fetch_logs(node, "inits", "first")) == (200, "first\n")
    await client.delete(PODS, "default", "inits", grace_period=0)


async def test_follow_streams_until_the_container_exits_and_tail_lines(node: Node, client: Client):
    await client.create(PODS, pod_manifest("follow", node, [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "echo one; echo two; sleep 0.3; echo three"]}], restartPolicy="Never"))
    await wait_status(client, "follow", lambda s: s.get("phase") in ("Running", "Succeeded"))
    t0 = time.monotonic()
    status, text = await fetch_logs(node, "follow", "c", follow="true")
    assert (status, text) == (200, "one\ntwo\nthree\n")
    assert time.monotonic() - t0 < 2
    assert await fetch_logs(node, "follow", "c", tailLines="1") == (200, "three\n")
    assert await fetch_logs(node, "follow", "c", limitBytes="5") == (200, "one\nt")
    status, text = await fetch_logs(node, "follow", "nope")
    assert (status, text) == (400, "container nope is not valid for pod follow")
    await client.delete(PODS, "default", "follow", grace_period=0)
