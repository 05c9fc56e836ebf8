"""The node agent's pure parts and the process runtime: env, $(VAR), images, back-off, status, processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from pocketkube.agent.envvars import EnvError, container_env, expand, service_env, services_for_pod
from pocketkube.agent.kubelet.pod_workers import crash_loop_backoff, go_duration
from pocketkube.agent.logserver import tail_offset
from pocketkube.agent.runtime import images
from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    CreateError,
    ImageInfo,
    ImagePullError,
    InvalidImageName,
    SandboxError,
    StartError,
)
from pocketkube.agent.runtime.pod_ips import PodIPs
from pocketkube.agent.runtime.process import ProcessRuntime, kill_recorded, proc_start_ticks
from pocketkube.net.errors import RangeFull
from pocketkube.testing.requires import NGINX, requires
from pocketkube.testing.waits import wait_for_async

# ---- $(VAR) expansion ----

@pytest.mark.parametrize("text,want", [
    ("$(A)", "a"),
    ("x$(A)y$(B)z", "xaybz"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$a"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$(A", "$(A"),
    ("$A", "$A"),
    ("end$", "end$"),
    ("$()", "$()"),
    ("$(A)$(A)", "aa"),
])
def test_expand_follows_kubernetes_rules(text, want):
    assert expand(text, {"A": "a", "B": "b"}.get) == want


# ---- environment ----

def _svc(name: str, ns: str, ip: str, ports: list[dict]) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


KUBERNETES = _svc("kubernetes", "default", "127.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])
MYAPP = _svc("myapp-service", "shop", "127.96.0.20", [{"port": 80, "protocol": "TCP"},
                                                       {"name": "metrics-port", "port": 9090, "protocol": "TCP"}])
HEADLESS = _svc("headless", "shop", "None", [{"port": 80}])
OTHER_NS = _svc("elsewhere", "default", "127.96.0.30", [{"port": 81}])


def _pod(**spec) -> dict:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"},
                         "annotations": {"team": "blue"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default", **spec}}


def test_service_link_variables_as_kubelet_writes_them():
    env = service_env([MYAPP])
    assert env == {
        "MYAPP_SERVICE_SERVICE_HOST": "127.96.0.20",
        "MYAPP_SERVICE_SERVICE_PORT": "80",
        "MYAPP_SERVICE_SERVICE_PORT_METRICS_PORT": "9090",
        "MYAPP_SERVICE_PORT": "tcp://127.96.0.20:80",
        "MYAPP_SERVICE_PORT_80_TCP": "tcp://127.96.0.20:80",
        "MYAPP_SERVICE_PORT_80_TCP_PROTO": "tcp",
        "MYAPP_SERVICE_PORT_80_TCP_PORT": "80",
        "MYAPP_SERVICE_PORT_80_TCP_ADDR": "127.96.0.20",
        "MYAPP_SERVICE_PORT_9090_TCP": "tcp://127.96.0.20:9090",
        "MYAPP_SERVICE_PORT_9090_TCP_PROTO": "tcp",
        "MYAPP_SERVICE_PORT_9090_TCP_PORT": "9090",
        "MYAPP_SERVICE_PORT_9090_TCP_ADDR": "127.96.0.20",
    }


def test_services_for_pod_own_namespace_plus_kubernetes_and_enable_service_links():
    all_svcs = [KUBERNETES, MYAPP, HEADLESS, OTHER_NS]
    names = [s["metadata"]["name"] for s in services_for_pod(_pod(), all_svcs)]
    assert names == ["kubernetes", "myapp-service"]
    names = [s["metadata"]["name"] for s in services_for_pod(_pod(enableServiceLinks=False), all_svcs)]
    assert names == ["kubernetes"]


def test_container_env_order_expansion_and_field_refs():
    c = {"name": "app", "env": [
        {"name": "GREETING", "value": "hello $(MYAPP_SERVICE_SERVICE_HOST)"},
        {"name": "TWICE", "value": "$(GREETING)/$(GREETING)/$$(GREETING)/$(LATER)"},
        {"name": "LATER", "value": "x"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
    ], "resources": {"requests": {"cpu": "250m"}}}
    env = container_env(_pod(), c, [KUBERNETES, MYAPP], "127.244.1.7", "127.0.1.1", {"memory": "2Gi"})
    assert env["GREETING"] == "hello 127.96.0.20"
    assert env["TWICE"] == "hello 127.96.0.20/hello 127.96.0.20/$(GREETING)/$(LATER)"
    assert (env["NAME"], env["NS"], env["UID"]) == ("web-1", "shop", "u-1")
    assert (env["APP"], env["TEAM"], env["NODE"], env["SA"]) == ("web", "blue", "node-1", "default")
    assert (env["MY_IP"], env["MY_IPS"], env["HOST"]) == ("127.244.1.7", "127.244.1.7", "127.0.1.1")
    assert (env["MEM"], env["CPU"]) == ("2048", "250")
    assert env["KUBERNETES_SERVICE_HOST"] == "127.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["HOSTNAME"] == "web-1" and env["POD_IP"] == "127.244.1.7" and "PATH" in env


def test_user_env_overrides_runtime_defaults_and_missing_configmap_is_an_error():
    env = container_env(_pod(), {"name": "a", "env": [{"name": "POD_IP", "value": "0.0.0.0"}]}, [], "1.2.3.4", "h")
    assert env["POD_IP"] == "0.0.0.0"
    c = {"name": "a", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}
    with pytest.raises(EnvError, match='configmap "cfg" not found'):
        container_env(_pod(), c, [], "1.2.3.4", "h")
    c["env"][0]["valueFrom"]["configMapKeyRef"]["optional"] = True
    assert "X" not in container_env(_pod(), c, [], "1.2.3.4", "h")


# ---- images ----

@pytest.mark.parametrize("ref,normalized,name", [
    ("nginx", "docker.io/library/nginx:latest", "nginx"),
    ("nginx:1.27", "docker.io/library/nginx:1.27", "nginx"),
    ("docker.io/library/nginx:1.27-alpine", "docker.io/library/nginx:1.27-alpine", "nginx"),
    ("bitnami/nginx", "docker.io/bitnami/nginx:latest", "nginx"),
    ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2", "app"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "pause"),
    ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64, "nginx"),
])
def test_parse_image(ref, normalized, name):
    parsed = images.parse_image(ref)
    assert parsed.normalized() == normalized and parsed.name == name


def test_resolve_explicit_command_runs_on_host_whatever_the_image():
    launch = images.resolve({"image": "busybox", "command": ["sleep"], "args": ["3600"]}, "127.244.1.2")
    assert launch.argv == ["sleep", "3600"]
    assert images.resolve({"image": "whatever:1", "args": ["echo", "hi"]}, "x").argv == ["echo", "hi"]
    assert images.resolve({"image": "registry.k8s.io/pause:3.10"}, "x").argv == ["sleep", "infinity"]


def test_unknown_image_without_command_is_not_runnable_with_a_clear_message():
    with pytest.raises(images.ImageNotRunnable) as e:
        images.resolve({"image": "foo:1.0"}, "127.244.1.2")
    assert str(e.value).startswith('image "foo:1.0" cannot be run locally by pocketkube: no local catalog entry '
                                   "(known: ")
    assert "nginx" in str(e.value) and str(e.value).endswith("; or give the container a command)")


@requires(os.access(images.NGINX, os.X_OK), NGINX)
def test_nginx_listens_on_the_pod_ip_and_each_container_port():
    launch = images.resolve({"image": "docker.io/library/nginx:1.27",
                             "ports": [{"containerPort": 8080}, {"containerPort": 80}]}, "127.244.1.9")
    assert launch.argv[0] == images.NGINX and "daemon off;" in launch.argv
    conf = launch.files["nginx/nginx.conf"]
    assert "listen 127.244.1.9:80;" in conf and "listen 127.244.1.9:8080;" in conf
    assert "\nuser " not in conf and "Welcome to nginx!" in launch.files["nginx/html/index.html"]
    default = images.resolve({"image": "nginx"}, "127.244.1.9").files["nginx/nginx.conf"]
    assert "listen 127.244.1.9:80;" in default


# ---- back-off and decisions ----

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_crash_loop_backoff_doubles_caps_and_resets_after_a_long_run():
    clock = FakeClock()
    b = crash_loop_backoff(clock)
    key = "uid/c"
    # First crash: restart at once (not in back-off), then 10 s.
    assert not b.failures_pending(key, clock.now)
    b.next(key, clock.now)
    assert b.delay(key) == 10
    clock.now += 1  # crashed again after 1 s
    finished = clock.now
    assert b.failures_pending(key, finished)
    clock.now += 9.5
    assert b.failures_pending(key, finished) and b.remaining(key, finished) == pytest.approx(0.5)
    clock.now += 0.6
    assert not b.failures_pending(key, finished)
    durations = []
    for _ in range(8):
        b.next(key, clock.now)
        durations.append(b.delay(key))
    assert durations == [20, 40, 80, 160, 300, 300, 300, 300]
    clock.now += 601  # ran for more than 2 × 5 min: forgotten
    assert not b.failures_pending(key, clock.now)
    b.next(key, clock.now)
    assert b.delay(key) == 10


@pytest.mark.parametrize("seconds,text", [(10, "10s"), (40, "40s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s")])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


def test_pod_ips_skip_network_gateway_and_broadcast():
    ips = PodIPs("127.244.3.0/30")
    assert ips.allocate("a") == "127.244.3.2"
    assert ips.allocate("a") == "127.244.3.2"
    with pytest.raises(RangeFull):
        ips.allocate("b")
    ips.release("a")
    ips.restore("c", "127.244.3.2")
    with pytest.raises(RangeFull):
        ips.allocate("d")


def test_pod_ips_restored_after_a_restart_are_never_handed_out_again():
    ips = PodIPs("127.244.3.0/29")  # .2 to .6 usable
    ips.restore("old-1", "127.244.3.4")
    ips.restore("old-2", "127.244.3.9")  # from another CIDR: kept, not allocated from this one
    assert ips.allocate("old-1") == "127.244.3.4"
    fresh = {ips.allocate(f"new-{i}") for i in range(4)}
    assert fresh == {"127.244.3.2", "127.244.3.3", "127.244.3.5", "127.244.3.6"}
    ips.release("old-1")
    assert ips.allocate("new-5") == "127.244.3.4"


def test_tail_offset(tmp_path: Path):
    f = tmp_path / "0.log"
    f.write_bytes(b"one\ntwo\nthree\n")
    data = f.read_bytes()
    assert data[tail_offset(str(f), 1):] == b"three\n"
    assert data[tail_offset(str(f), 2):] == b"two\nthree\n"
    assert data[tail_offset(str(f), 10):] == data
    assert data[tail_offset(str(f), 0):] == b""
    f.write_bytes(b"a\nb")  # unterminated last line
    assert f.read_bytes()[tail_offset(str(f), 1):] == b"b"


# ---- the process runtime, with real processes ----

def _cfg(uid: str, name: str, argv: list[str], restart: int = 0) -> ContainerConfig:
    return ContainerConfig(pod_uid=uid, name=name, command=argv, args=[], env={"PATH": os.environ["PATH"], "X": "42"},
                           restart_count=restart)


async def test_process_runtime_start_exit_log_and_history(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    rec = await rt.start(_cfg("p1", "c", ["sh", "-c", 'echo "out $X"; echo err >&2; pwd; exit 3']))
    done = await asyncio.wait_for(rt.exited(rec), 5)
    assert (done.exit_code, done.reason) == (3, "Error") and done.finished_at
    log = Path(done.log_path).read_text()
    assert log.splitlines() == ["out 42", "err", str(rt.container_dir("p1", "c"))]
    rec2 = await rt.start(_cfg("p1", "c", ["true"], restart=1))
    await asyncio.wait_for(rt.exited(rec2), 5)
    h = ProcessRuntime(tmp_path).history("p1", "c")  # as a restarted agent sees it
    assert h is not None and h.current.restart_count == 1 and h.current.reason == "Completed"
    assert h.last is not None and h.last.exit_code == 3 and h.last.log_path.endswith("/0.log")


async def test_process_runtime_missing_executable_is_a_start_error(tmp_path: Path):
    with pytest.raises(StartError, match='exec: "no-such-binary-xyz": executable file not found in \\$PATH'):
        await ProcessRuntime(tmp_path).start(_cfg("p1", "c", ["no-such-binary-xyz"]))


async def test_stop_kills_the_whole_process_group_with_sigkill_after_grace(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    script = "trap '' TERM; sleep 30 & echo $! > child.pid; wait"
    rec = await rt.start(_cfg("p1", "c", ["sh", "-c", script]))
    child_file = rt.container_dir("p1", "c") / "child.pid"
    for _ in range(100):
        if child_file.exists() and child_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    child = int(child_file.read_text())
    await asyncio.wait_for(rt.stop(rec, grace=0.2), 5)
    assert rec.exit_code == 137
    await wait_for_async(lambda: proc_start_ticks(child) is None, timeout=5,
                         what="the background child to die with its group")


async def test_restarted_runtime_adopts_live_processes_and_notices_dead_ones(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    rt.save_pod("p1", {"ip": "127.244.1.2"})
    live = await rt.start(_cfg("p1", "live", ["sleep", "30"]))
    dead = await rt.start(_cfg("p1", "dead", ["sleep", "30"]))
    try:
        os.killpg(dead.pid, signal.SIGKILL)
        await asyncio.wait_for(rt.exited(dead), 5)
        # Make the saved record look like the agent died before it saw this exit.
        state = rt.container_dir("p1", "dead") / "state.json"
        state.write_text(state.read_text().replace('"exit_code": 137', '"exit_code": null'))
        rt2 = ProcessRuntime(tmp_path)
        await rt2.adopt_all()
        adopted = rt2.history("p1", "live").current
        assert adopted.running and adopted.pid == live.pid
        lost = rt2.history("p1", "dead").current
        assert not lost.running and lost.reason == "ContainerStatusUnknown"
        assert rt2.pods() == {"p1": {"ip": "127.244.1.2"}}
        await rt2.remove_pod("p1")
        assert adopted.exit_code is not None and not rt2.pod_dir("p1").exists()
        await asyncio.wait_for(rt.exited(live), 5)
    finally:
        for r in (live, dead):
            try:
                os.killpg(r.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def test_kill_recorded_stops_what_a_dead_agent_left_running(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    rec = await rt.start(_cfg("p1", "c", ["sleep", "30"]))
    assert kill_recorded(tmp_path) == 1
    done = await asyncio.wait_for(rt.exited(rec), 5)
    assert done.exit_code == 137
    assert kill_recorded(tmp_path) == 0


# ---- the process runtime's sandboxes and images ----

def _sandbox_pod(uid: str, host_network: bool = False) -> dict:
    return {"metadata": {"uid": uid, "name": f"pod-{uid}", "namespace": "ns"},
            "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "image": "busybox"}]}}


async def test_process_sandboxes_own_the_pod_ips(tmp_path: Path):
    rt = ProcessRuntime(tmp_path, pod_cidr="127.244.3.0/29", node_ip="127.0.3.1")
    assert rt.name == "process"
    ip = await rt.run_pod_sandbox(_sandbox_pod("a"))
    assert ip.startswith("127.244.3.") and await rt.run_pod_sandbox(_sandbox_pod("a")) == ip  # idempotent per uid
    assert await rt.run_pod_sandbox(_sandbox_pod("h", host_network=True)) == "127.0.3.1"
    assert rt.pods()["a"] == {"ip": ip, "name": "pod-a", "namespace": "ns", "hostNetwork": False}
    ips = {uid: await rt.run_pod_sandbox(_sandbox_pod(uid)) for uid in "bcde"}
    assert sorted([ip, *ips.values()]) == [f"127.244.3.{i}" for i in range(2, 7)]
    with pytest.raises(SandboxError, match="failed to allocate an IP for the pod from 127.244.3.0/29"):
        await rt.run_pod_sandbox(_sandbox_pod("f"))
    # A restarted agent takes its pods' IPs again, and hands out only free ones.
    rt2 = ProcessRuntime(tmp_path, pod_cidr="127.244.3.0/29", node_ip="127.0.3.1")
    await rt2.adopt_all()
    assert await rt2.run_pod_sandbox(_sandbox_pod("a")) == ip
    await rt2.remove_pod("b")
    assert await rt2.run_pod_sandbox(_sandbox_pod("f")) == ips["b"]  # the only free one
    assert await rt2.run_pod_sandbox(_sandbox_pod("h", host_network=True)) == "127.0.3.1"
    with pytest.raises(SandboxError):
        await ProcessRuntime(tmp_path).run_pod_sandbox(_sandbox_pod("x"))  # no pod CIDR
    with pytest.raises(SandboxError):
        await rt2.run_pod_sandbox(_sandbox_pod(".."))


async def test_process_images_are_the_catalog(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    info = await rt.image_status("busybox:latest")
    assert info == ImageInfo("busybox:latest", "pocketkube-catalog://docker.io/library/busybox=sh")
    assert await rt.pull_image("busybox:1.36") == ImageInfo("busybox:1.36",
                                                            "pocketkube-catalog://docker.io/library/busybox=sh")
    assert await rt.image_status("redis:7") is None
    with pytest.raises(ImagePullError) as e:
        await rt.pull_image("redis:7")
    assert not e.value.unreachable and "no local catalog entry" in str(e.value)
    with pytest.raises(InvalidImageName):
        await rt.image_status("Redis")


async def test_process_start_runs_command_args_or_the_catalog_default(tmp_path: Path):
    rt = ProcessRuntime(tmp_path)
    env = {"PATH": os.environ["PATH"]}
    rec = await rt.start(ContainerConfig(pod_uid="p", name="a", command=["sh", "-c"], args=["echo from-args"],
                                         env=env, restart_count=0, spec={"name": "a", "image": "whatever:1"}))
    assert (rec.scheme, rec.log_format) == ("pocketkube", "raw")
    assert rec.image_id == "pocketkube-catalog://docker.io/library/whatever=sh"
    await asyncio.wait_for(rt.exited(rec), 5)
    assert Path(rec.log_path).read_text() == "from-args\n"
    with pytest.raises(CreateError, match="no local catalog entry"):
        await rt.start(ContainerConfig(pod_uid="p", name="b", command=[], args=[], env=env, restart_count=0,
                                       spec={"name": "b", "image": "redis:7"}))
