"""ContainerdRuntime (agent/runtime/cri/runtime.py) against a real containerd, real runc and the
real CNI plugins: pods in their own network namespace on a test bridge, the kubelet's container
life cycle (exit codes, CRI logs, restarts and history, stop with grace, exec, StartError),
image pulls from a local registry and their failure classes, re-adoption by a fresh runtime
instance, and a pod removal that leaves nothing behind.

One private containerd and one local registry serve the whole module (starting them is most of
the cost). The CNI network is our own: bridge `pkt<4 hex>`, pods 10.244.250.0/24 routed only to
that /24 (no default route: nothing from a pod can leave the host), IPAM state under the temp
dir. Teardown removes every pod, stops containerd, deletes the bridge, restores ip_forward (the
bridge plugin's isGateway turns it on) and checks that no process, shim, mount, cgroup or link
of ours is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

from pocketkube.agent.runtime import cni
from pocketkube.agent.runtime.containerd import (
    Containerd,
    mounts_under,
    processes,
    render_plain_http_hosts,
    shim_pids,
)
from pocketkube.agent.runtime.cri import translate
from pocketkube.agent.runtime.cri.client import Unavailable
from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime, cgroup_dirs
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    CreateError,
    ImagePullError,
    InvalidImageName,
    StartError,
)
from pocketkube.testing import images, registry
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import (
    BUSYBOX,
    CONTAINERD,
    REGISTRY,
    ROOT,
    SKOPEO,
    have_containerd,
    is_root,
    requires,
)
from pocketkube.testing.waits import wait_for_async

pytestmark = [
    requires(is_root(), ROOT),
    requires(have_containerd(), CONTAINERD),
    requires(images.have_busybox(), BUSYBOX),
    requires(registry.have_skopeo(), SKOPEO),
    requires(registry.have_registry(), REGISTRY),
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

SUBNET = "10.244.250.0/24"
GATEWAY = "10.244.250.1"
NODE_IP = "127.0.0.1"
CRI_LOG_LINE = re.compile(r"^\S+ (stdout|stderr) ([PF]) (.*)$")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class Env:
    def __init__(self, node: Path, ctrd: Containerd, rt: ContainerdRuntime, refs: dict[str, str],
                 registry_addr: str, bridge: str) -> None:
        self.node, self.ctrd, self.rt, self.refs = node, ctrd, rt, refs
        self.registry_addr, self.bridge = registry_addr, bridge
        self.busybox = translate.normalize_image(refs["busybox"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env():
    node = Path(tempfile.mkdtemp(prefix="pk-crirt-"))
    bridge = f"pkt{secrets.token_hex(2)}"
    node_name = f"crt-{secrets.token_hex(3)}"
    ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    assert not _link_exists(bridge)
    with contextlib.ExitStack() as cleanup, registry.local_registry() as addr:
        cleanup.callback(shutil.rmtree, node, ignore_errors=True)
        cleanup.callback(lambda: _link_exists(bridge) and subprocess.run(["ip", "link", "del", bridge], check=False))
        # Pre-created with its gateway address, as the agent's wiring does (so that the host route
        # to the pod range exists before the first pod); the bridge plugin adopts it.
        for cmd in (["ip", "link", "add", bridge, "type", "bridge"], ["ip", "addr", "add", f"{GATEWAY}/24", "dev", bridge],
                    ["ip", "link", "set", bridge, "up"]):
            subprocess.run(cmd, check=True)
        refs = registry.publish_test_images(addr)
        certs = node / "certs.d"
        (certs / addr).mkdir(parents=True)
        (certs / addr / "hosts.toml").write_text(render_plain_http_hosts(addr))
        cni.write_conflist(node / "cni" / "net.d", cni.render_conflist(
            bridge=bridge, subnet=SUBNET, ipam_dir=node / "cni" / "ipam", routes=[SUBNET]))
        ctrd = Containerd(node / "containerd", sandbox_image=refs["pause"], cni_conf_dir=node / "cni" / "net.d",
                          registry_config_dir=certs)
        rt = ContainerdRuntime(ctrd.endpoint, data_dir=node, node_name=node_name, node_ip=NODE_IP)
        try:
            await ctrd.start()
            await rt.pull_image(refs["pause"])
            await rt.pull_image(refs["busybox"])
            yield Env(node, ctrd, rt, refs, addr, bridge)
        finally:
            for uid in rt.pods():
                with contextlib.suppress(Exception):
                    await rt.remove_pod(uid)
            await rt.close()
            await ctrd.stop()
            rt.remove_node_cgroups()
            Path("/proc/sys/net/ipv4/ip_forward").write_text(ip_forward)
    assert not _link_exists(bridge)
    assert shim_pids(processes(), ctrd.socket) == []
    assert processes_under(node) == []
    assert mounts_under(Path("/proc/self/mountinfo").read_text(), [node]) == []
    assert not any(d.exists() for d in cgroup_dirs(f"/pocketkube/{node_name}"))
    assert not node.exists()


def _pod(name: str, containers: list[dict], **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()), "labels": {"app": name}},
            "spec": {"containers": containers, **spec}}


def _cfg(e: Env, pod: dict, name: str, command: list[str], *, restart_count: int = 0, pod_ip: str = "",
         env: dict[str, str] | None = None) -> ContainerConfig:
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return ContainerConfig(pod_uid=pod["metadata"]["uid"], name=name, command=command, args=[],
                           env=env or {}, restart_count=restart_count, image=e.busybox, pod_ip=pod_ip,
                           pod=pod, spec=spec)


def _http_get(url: str) -> str | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


async def test_pod_network_two_containers_and_exec(env: Env) -> None:
    rt = env.rt
    pod = _pod("web", [{"name": "web", "image": env.busybox}, {"name": "side", "image": env.busybox}])
    uid = pod["metadata"]["uid"]
    ip = await rt.run_pod_sandbox(pod)
    assert ip.startswith("10.244.250.") and ip != GATEWAY
    assert await rt.run_pod_sandbox(pod) == ip  # idempotent: the same sandbox
    web = await rt.start(_cfg(env, pod, "web", ["sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html"
                                                 " && exec httpd -f -p 8080 -h /www"], pod_ip=ip))
    side = await rt.start(_cfg(env, pod, "side", ["sleep", "3600"], pod_ip=ip, env={"GREETING": "hi there"}))
    assert web.running and side.running and web.scheme == "containerd" and web.log_format == "cri"
    assert web.log_path == str(rt.log_path(uid, "web", 0))
    assert web.pid > 0 and Path(f"/proc/{web.pid}/cmdline").read_bytes().startswith(b"httpd")

    # The host reaches the pod on its own network namespace's address, through our bridge.
    body = await wait_for_async(lambda: _http_get(f"http://{ip}:8080/index.html"), timeout=20,
                                what="the pod's httpd to answer from the host")
    assert body == "hello-from-pod\n"
    # Two containers of a pod share its network: localhost reaches the other one.
    out = await rt.exec_sync(uid, "side", ["sh", "-c", 'printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" | nc 127.0.0.1 8080'],
                             env={}, user=None, timeout=10)
    assert out.exit_code == 0 and "hello-from-pod" in out.output, out
    # The pod's own interface, hostname, /etc/hosts and environment.
    out = await rt.exec_sync(uid, "side", ["sh", "-c", "ip -4 addr show eth0; hostname; cat /etc/hosts; echo $GREETING"],
                             env={}, user=None, timeout=10)
    assert f"inet {ip}/24" in out.output and "\nweb\n" in out.output, out.output
    assert f"{ip}\tweb" in out.output and "127.0.0.1\tlocalhost" in out.output and "hi there" in out.output
    out = await rt.exec_sync(uid, "side", ["sh", "-c", "echo out; echo err >&2; exit 7"], env={}, user=None, timeout=10)
    assert (out.exit_code, out.output) == (7, "out\nerr\n")
    # Only the pod's own range is routed: no default route out of the pod.
    out = await rt.exec_sync(uid, "side", ["ip", "route"], env={}, user=None, timeout=10)
    assert "default" not in out.output and "10.244.250.0/24" in out.output, out.output
    assert {r.id for _, r in rt.running()} >= {web.id, side.id}

    await rt.remove_pod(uid)
    assert not web.running and not side.running
    assert _http_get(f"http://{ip}:8080/index.html") is None


async def test_exit_codes_logs_restarts_and_history(env: Env) -> None:
    rt = env.rt
    pod = _pod("once", [{"name": "once", "image": env.busybox}, {"name": "broken", "image": env.busybox},
                        {"name": "msg", "image": env.busybox}], restartPolicy="Always")
    uid = pod["metadata"]["uid"]
    ip = await rt.run_pod_sandbox(pod)
    runs = []
    for n in range(3):
        record = await rt.start(_cfg(env, pod, "once", ["sh", "-c", f"echo hi {n}; exit 3"], restart_count=n, pod_ip=ip))
        done = await rt.exited(record)
        assert (done.exit_code, done.reason, done.restart_count) == (3, "Error", n)
        assert done.finished_at and done.image_id.startswith(f"{env.registry_addr}/busybox@sha256:")
        lines = [CRI_LOG_LINE.match(line) for line in Path(done.log_path).read_text().splitlines()]
        assert [(m[1], m[2], m[3]) for m in lines if m] == [("stdout", "F", f"hi {n}")]
        runs.append(done)
        h = rt.history(uid, "once")
        assert h.current is done and (h.last is runs[-2] if n else h.last is None)
    # Only the current and the last run remain in containerd; the first one's log went with it.
    left = await rt.client.list_containers(api.ContainerFilter(label_selector={translate.POD_UID: uid}))
    assert {c.id for c in left} == {runs[1].id, runs[2].id}
    assert not Path(runs[0].log_path).exists()

    # A missing executable: StartError, and an exited record (exit 128, StartError) from containerd.
    with pytest.raises(StartError, match="nonexistent"):
        await rt.start(_cfg(env, pod, "broken", ["/nonexistent"], pod_ip=ip))
    failed = rt.history(uid, "broken").current
    assert (failed.exit_code, failed.reason) == (128, "StartError") and "nonexistent" in failed.message
    assert rt.record_failed_start(uid, "broken", 0, "ignored") is failed

    # A termination message written by the container becomes the record's message.
    record = await rt.start(_cfg(env, pod, "msg", ["sh", "-c", "echo bye > /dev/termination-log; exit 0"], pod_ip=ip))
    done = await rt.exited(record)
    assert (done.exit_code, done.reason, done.message) == (0, "Completed", "bye\n")
    await rt.remove_pod(uid)
    assert rt.history(uid, "once") is None and not rt.pod_dir(uid).exists()


async def test_host_network_stop_with_grace_and_exec_timeout(env: Env) -> None:
    rt = env.rt
    pod = _pod("hostnet", [{"name": "stubborn", "image": env.busybox}], hostNetwork=True)
    uid = pod["metadata"]["uid"]
    assert await rt.run_pod_sandbox(pod) == NODE_IP
    record = await rt.start(_cfg(env, pod, "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]))
    out = await rt.exec_sync(uid, "stubborn", ["hostname"], env={}, user=None, timeout=10)
    assert out.output.strip() == socket.gethostname()  # the node's network and UTS namespace
    assert (await rt.exec_sync(uid, "stubborn", ["sleep", "10"], env={}, user=None, timeout=1)).exit_code is None
    with pytest.raises(StartError):
        await rt.exec_sync(uid, "stubborn", ["/no/such/binary"], env={}, user=None, timeout=5)
    began = time.monotonic()
    await rt.stop(record, grace=1)
    assert time.monotonic() - began >= 0.9  # the grace period was waited for: SIGTERM is ignored
    assert (record.exit_code, record.reason) == (137, "Error")
    assert (await rt.exited(record)) is record
    await rt.remove_pod(uid)


async def test_pull_failures_are_classified(env: Env) -> None:
    rt = env.rt
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(ImagePullError) as err:
        await rt.pull_image(f"127.0.0.1:{closed}/busybox:latest")
    assert err.value.unreachable and "connection refused" in str(err.value), err.value
    with pytest.raises(ImagePullError) as err:
        await rt.pull_image(f"{env.registry_addr}/busybox:no-such-tag")
    assert not err.value.unreachable and "not found" in str(err.value), err.value
    assert str(err.value).startswith("rpc error: code = NotFound desc = failed to pull and unpack image")
    for bad in ("Not/Valid!", "UPPER", ""):
        with pytest.raises(InvalidImageName):
            await rt.pull_image(bad)
        with pytest.raises(InvalidImageName):
            await rt.image_status(bad)
    assert await rt.image_status(f"{env.registry_addr}/busybox:no-such-tag") is None
    info = await rt.image_status(env.refs["busybox"])
    assert info.ref == env.busybox and info.id.startswith(f"{env.registry_addr}/busybox@sha256:")


async def test_adopt_all_from_a_fresh_instance(env: Env) -> None:
    rt = env.rt
    pod = _pod("adopt", [{"name": "sleeper", "image": env.busybox}, {"name": "done", "image": env.busybox}])
    uid = pod["metadata"]["uid"]
    ip = await rt.run_pod_sandbox(pod)
    sleeper = await rt.start(_cfg(env, pod, "sleeper", ["sleep", "3600"], pod_ip=ip))
    first = await rt.exited(await rt.start(_cfg(env, pod, "done", ["sh", "-c", "exit 4"], pod_ip=ip)))
    second = await rt.exited(await rt.start(_cfg(env, pod, "done", ["true"], restart_count=1, pod_ip=ip)))

    fresh = ContainerdRuntime(env.ctrd.endpoint, data_dir=env.node, node_name=rt.node_name, node_ip=NODE_IP,
                              poll_interval=0.1)
    try:
        await fresh.adopt_all()
        assert fresh.pods()[uid]["ip"] == ip
        assert await fresh.run_pod_sandbox(pod) == ip  # the adopted sandbox, not a new one
        h = fresh.history(uid, "done")
        assert (h.current.id, h.current.exit_code, h.current.reason, h.current.restart_count) == \
            (second.id, 0, "Completed", 1)
        assert (h.last.id, h.last.exit_code, h.last.log_path) == (first.id, 4, first.log_path)
        adopted = fresh.history(uid, "sleeper").current
        assert adopted.id == sleeper.id and adopted.running and adopted.log_path == sleeper.log_path
        assert [r.id for _, r in fresh.running()] == [sleeper.id]
        # The new instance watches it: an exit seen by its poller resolves the future.
        exited = fresh.exited(adopted)
        await env.rt.client.stop_container(sleeper.id, 0)
        assert (await exited).exit_code == 137
        await fresh.remove_pod(uid)
    finally:
        await fresh.close()
    await rt.remove_pod(uid)  # the first instance forgets it too (idempotent in containerd)


async def test_remove_pod_leaves_nothing(env: Env) -> None:
    rt = env.rt
    pod = _pod("gone", [{"name": "c", "image": env.busybox}])
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    await rt.start(_cfg(env, pod, "c", ["sleep", "3600"]))
    sandbox_id = rt._sandboxes[uid].id
    status = await rt.client.pod_sandbox_status(sandbox_id, verbose=True)
    netns = next(n["path"] for n in json.loads(status.info["info"])["runtimeSpec"]["linux"]["namespaces"]
                 if n["type"] == "network")
    assert Path(netns).exists() and any(d.is_dir() for d in cgroup_dirs(rt._cgroup_parent(uid)))
    shims = [p for p, argv in processes() if sandbox_id in argv]
    assert shims

    await rt.remove_pod(uid)
    await rt.remove_pod(uid)  # idempotent
    assert await rt.client.list_pod_sandbox(api.PodSandboxFilter(label_selector={translate.POD_UID: uid})) == []
    assert await rt.client.list_containers(api.ContainerFilter(label_selector={translate.POD_UID: uid})) == []
    assert netns not in mounts_under(Path("/proc/self/mountinfo").read_text(), [env.node])
    assert not Path(netns).exists()
    assert not any(d.exists() for d in cgroup_dirs(rt._cgroup_parent(uid)))
    assert not any(sandbox_id in argv for _, argv in processes())
    assert not rt.pod_dir(uid).exists() and uid not in rt.pods()
    # The IP went back to host-local's pool (its files name the container holding each address).
    ipam = env.node / "cni" / "ipam"
    assert not any(sandbox_id in p.read_text() for p in ipam.rglob("*") if p.is_file())


async def test_security_context_limits_and_oom(env: Env) -> None:
    rt = env.rt
    locked = {"name": "locked", "image": env.busybox, "securityContext": {
        "runAsUser": 1000, "runAsGroup": 1001, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}}}
    hog = {"name": "hog", "image": env.busybox, "resources": {"limits": {"memory": "16Mi"}}}
    nonroot = {"name": "nonroot", "image": env.busybox, "securityContext": {"runAsNonRoot": True}}
    pod = _pod("secure", [locked, hog, nonroot], securityContext={"supplementalGroups": [2000]})
    uid = pod["metadata"]["uid"]
    ip = await rt.run_pod_sandbox(pod)
    await rt.start(_cfg(env, pod, "locked", ["sleep", "3600"], pod_ip=ip))
    out = await rt.exec_sync(uid, "locked", ["sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status; "
                                             "grep NoNewPrivs /proc/self/status; touch /x || echo read-only; "
                                             "echo ok > /dev/termination-log && echo writable"],
                             env={}, user=None, timeout=10)
    lines = out.output.splitlines()
    assert lines[:3] == ["1000", "1001", "1001 2000"], out.output
    assert lines[3].split() == ["CapEff:", "0000000000000000"] and lines[4].split() == ["NoNewPrivs:", "1"]
    assert "read-only" in out.output and "writable" in out.output
    # The memory limit holds: a process outgrowing it is OOM-killed, and the reason says so.
    record = await rt.start(_cfg(env, pod, "hog", ["sh", "-c", "tail /dev/zero"], pod_ip=ip))
    done = await asyncio.wait_for(rt.exited(record), 30)
    assert (done.exit_code, done.reason) == (137, "OOMKilled"), done
    # runAsNonRoot with an image that runs as root is refused before anything is created.
    with pytest.raises(CreateError, match="container has runAsNonRoot and image will run as root"):
        await rt.start(_cfg(env, pod, "nonroot", ["true"], pod_ip=ip))
    assert rt.history(uid, "nonroot") is None
    await rt.remove_pod(uid)


async def test_containerd_restart_under_a_running_pod(env: Env) -> None:
    """containerd killed and started again: the pod keeps running (its shim is its own session),
    the runtime's client reconnects, and the poller still notices the container's exit."""
    rt = env.rt
    pod = _pod("survivor", [{"name": "c", "image": env.busybox}])
    uid = pod["metadata"]["uid"]
    ip = await rt.run_pod_sandbox(pod)
    record = await rt.start(_cfg(env, pod, "c", ["sh", "-c", "while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 5"],
                                 pod_ip=ip))
    exited = rt.exited(record)
    env.ctrd._proc.kill()  # no clean shutdown: as if containerd crashed
    await env.ctrd._proc.wait()

    async def down() -> bool:
        try:
            await rt.client.version()
        except Unavailable:
            return True
        return False
    await wait_for_async(down, timeout=10, what="containerd to be gone")
    assert not exited.done()
    await env.ctrd.start()
    assert await rt.run_pod_sandbox(pod) == ip  # the same sandbox, still ready
    out = await rt.exec_sync(uid, "c", ["touch", "/tmp/stop"], env={}, user=None, timeout=10)
    assert out.exit_code == 0, out
    done = await asyncio.wait_for(exited, 30)
    assert (done.exit_code, done.reason) == (5, "Error")
    await rt.remove_pod(uid)
