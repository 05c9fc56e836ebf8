"""Container mode under faults and bad input, with images pulled from a local registry.

One 2-node `pocketkube up --runtime containerd` whose agents know the test registry through
`--insecure-registry` and use it as a docker.io mirror (`--registry-mirror`). What is proven:
- a pull from the registry (imagePullPolicy Always): `Pulled` event, imageID in the status; a
  short docker.io name pulled through the mirror;
- bad input, each with its reason while the node stays Ready: InvalidImageName, a registry that
  answers 404 and a port that closes every connection (ErrImagePull → ImagePullBackOff with the
  registry's message), a container that exits at once (CrashLoopBackOff with lastState), a wrong
  `--container-runtime-endpoint` (a CLI message, exit non-zero, nothing left behind); node
  bridges keep their MAC while pods come and go (the pods' gateway);
- an agent killed with SIGKILL and started again re-adopts its pods (same container IDs, same
  restartCount, still served through the NodePort) and starts new ones;
- both killed, the agent started again starts containerd again and re-adopts the same containers;
- containerd killed under a running agent is started again by it, the pods keep running; a frozen
  containerd fails syncs with a clear Event (DeadlineExceeded) and pods start once it answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from pocketkube.agent.runtime.containerd import containerd_pids
from pocketkube.net import hostnet
from pocketkube.testing import images, registry
from pocketkube.testing.procs import Kubectl, kubectl_binaries, processes_under, running_cluster
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, REGISTRY, SKOPEO, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# This module's own ranges (no other test file's, never kind's defaults).
RANGES = {"node_ip_base": "10.254.0.0", "pod_cidr_base": "10.248.0.0/16", "service_cidr": "10.100.0.0/16",
          "lb_pool": "10.254.1.0/24"}
RANGE_ARGS = ["--node-ip-base", RANGES["node_ip_base"], "--pod-cidr-base", RANGES["pod_cidr_base"],
              "--service-cidr", RANGES["service_cidr"], "--load-balancer-pool", RANGES["lb_pool"]]
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              requires(registry.have_registry(), REGISTRY), requires(registry.have_skopeo(), SKOPEO),
              pytest.mark.slow, pytest.mark.timeout(240)]

# A busybox web server: its pod name on every GET.
HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"


def _mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


def pocketkube(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketkube", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# ---- before the cluster: `up` refuses a wrong endpoint ------------------------------------------


def test_wrong_container_runtime_endpoint_is_a_clear_cli_error():
    root = Path(tempfile.mkdtemp(prefix="pk-ctrf-ep-"))
    try:
        common = ["up", "--nodes", "1", "--runtime", "containerd", "--data-dir", str(root / "data"), "--port", "0",
                  "--no-user-kubeconfig", "--no-pod-egress", *RANGE_ARGS]
        # Not a unix:// URL: refused before anything starts.
        bad = pocketkube(*common, "--container-runtime-endpoint", str(root / "cri.sock"))
        assert bad.returncode == 2, bad
        assert "must be unix:///<absolute socket path>" in bad.stderr and "Traceback" not in bad.stderr
        assert not (root / "data").exists()
        # A socket nobody serves: the node says why, `up` exits non-zero and removes what it made.
        absent = pocketkube(*common, "--container-runtime-endpoint", f"unix://{root}/cri.sock")
        assert absent.returncode == 1, absent
        err = absent.stderr
        assert f"node node-1: the container runtime at unix://{root}/cri.sock does not answer" in err, err
        assert "No such file or directory" in err and "Traceback" not in err + absent.stdout
        assert processes_under(root) == []
        assert hostnet.cluster_links(hostnet.cluster_id_of((root / "data").resolve())) == []
        assert not hostnet.cluster_table_exists(hostnet.cluster_id_of((root / "data").resolve()))
        # A malformed registry flag: argparse's own message.
        flag = pocketkube(*common, "--insecure-registry", "http://127.0.0.1:5000")
        assert flag.returncode == 2 and "must be HOST:PORT" in flag.stderr, flag
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- the cluster --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reg():
    """The local registry with busybox as `<addr>/busybox:<tag>` and, for the mirror, as
    `library/busybox:mirrored` (what docker.io's `busybox:mirrored` resolves to)."""
    with registry.local_registry() as addr:
        built = images.busybox_image()
        registry.push(built.layout, f"{addr}/busybox:{built.tag}", tag=built.tag)
        registry.push(built.layout, f"{addr}/library/busybox:mirrored", tag=built.tag)
        yield {"addr": addr, "busybox": f"{addr}/busybox:{built.tag}"}


@pytest.fixture(scope="module")
def refusing():
    """A loopback port that accepts and at once closes every connection: a registry that refuses."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join(5)
    srv.close()


@pytest.fixture(scope="module")
def cluster(reg):
    args = ["--no-pod-egress", "--insecure-registry", reg["addr"], "--registry-mirror", f"http://{reg['addr']}"]
    with running_cluster("pk-ctrf-", nodes=2, runtime="containerd", extra_args=args, **RANGES) as c:
        cid = hostnet.cluster_id_of(c.data_dir)
        c.restarted = []
        yield c
        for agent in c.restarted:  # not children of `up`: stop them first, as `up` stops its own
            agent.send_signal(signal.SIGTERM)
            agent.wait(40)
        root = c.data_dir.parent
    assert _mounts_under(root) == []
    assert hostnet.cluster_links(cid) == []
    assert not hostnet.cluster_table_exists(cid)


@pytest.fixture(scope="module")
def k(cluster):
    kc = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    yield kc
    kc.close()


def pods(k, selector):
    return get_json(k, "pods", "-l", selector)["items"]


def status(pod: dict) -> dict:
    return (pod["status"].get("containerStatuses") or [{}])[0]


def waiting_reason(k, name: str) -> str:
    pod = get_json(k, "pod", name)
    return status(pod).get("state", {}).get("waiting", {}).get("reason", "")


def nodes_ready(k) -> bool:
    return all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
               for n in get_json(k, "nodes")["items"])


def get(ip: str, port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://{ip}:{port}/", timeout=3).read().decode().strip()
    except OSError:
        return ""


def node_ips(cluster) -> list[str]:
    return [cluster.node_ip(i) for i in range(1, cluster.nodes + 1)]


@pytest.fixture(scope="module")
def web(cluster, k, reg):
    """2 busybox httpd pods pulled from the registry (policy Always) behind a NodePort Service."""
    k.ok("create", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}}}],
                "containers": [{"name": "web", "image": reg["busybox"], "imagePullPolicy": "Always",
                                "command": ["sh", "-c", HTTPD], "ports": [{"containerPort": 8080}],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}}))
    k.ok("expose", "deployment", "web", "--type=NodePort", "--port=80", "--target-port=8080")
    k.ok("rollout", "status", "deployment/web", "--timeout=90s")
    port = get_json(k, "svc", "web")["spec"]["ports"][0]["nodePort"]
    wait_for(lambda: all(get(ip, port) for ip in node_ips(cluster)), timeout=30, what="NodePort on every node")
    return port


def test_pull_from_the_local_registry(cluster, k, web, reg):
    assert f"• registries: plain HTTP to {reg['addr']}; docker.io via http://{reg['addr']}" in "".join(cluster.output)
    for pod in pods(k, "app=web"):
        cs = status(pod)
        assert cs["ready"] and cs["image"] == reg["busybox"]
        assert cs["imageID"].startswith(f"{reg['addr']}/busybox@sha256:"), cs["imageID"]
        events = k.ok("get", "events", "--field-selector", f"involvedObject.name={pod['metadata']['name']}")
        assert "Pulled" in events and "Successfully pulled image" in events, events


def test_docker_hub_name_through_the_mirror(k):
    k.ok("run", "mirrored", "--image=busybox:mirrored", "--restart=Never", "--", "sh", "-c", "sleep 3600")
    try:
        pod = wait_for(lambda: (p := get_json(k, "pod", "mirrored"))["status"].get("phase") == "Running" and p,
                       timeout=60, what="the mirrored pod Running")
        # The same image as the registry's busybox (imageID names one of its repo digests).
        assert "@sha256:" in status(pod)["imageID"], status(pod)
        events = k.ok("get", "events", "--field-selector", "involvedObject.name=mirrored")
        assert 'Successfully pulled image "busybox:mirrored"' in events, events
    finally:
        k.run("delete", "pod", "mirrored", "--wait=false")


def bridge_macs(cluster) -> dict[str, str]:
    """node bridge -> its MAC address (the pods' gateway's)."""
    out = {}
    for pid in cluster.agent_pids().values():
        args = cmdline(pid)
        bridge = args[args.index("--node-bridge") + 1]
        out[bridge] = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
    return out


def test_bad_input_each_with_its_reason(cluster, k, reg, refusing):
    # Pods come and go below: the gateway's MAC must not follow them (pods' ARP entries would go stale).
    macs = bridge_macs(cluster)
    runs = {
        "badname": ("Busy_Box/UPPER:tag", "InvalidImageName"),
        "absent": (f"{reg['addr']}/absent:1", "ImagePullBackOff"),
        "refused": (f"{refusing}/absent:1", "ImagePullBackOff"),
    }
    for name, (image, _) in runs.items():  # a manifest: `kubectl run` checks the image name itself
        k.ok("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{"name": name, "image": image}]}}))
    k.ok("run", "crash", f"--image={reg['busybox']}", "--restart=Always", "--", "sh", "-c", "echo bye; exit 3")
    try:
        for name, (_, reason) in runs.items():
            wait_for(lambda name=name, reason=reason: waiting_reason(k, name) == reason, timeout=60,
                     what=f"{name}: {reason}")
        described = {name: k.ok("describe", "pod", name) for name in runs}
        assert "couldn't parse image reference" in described["badname"], described["badname"]
        assert "not found" in described["absent"], described["absent"]
        assert "ErrImagePull" in described["absent"] and "Failed to pull image" in described["absent"]
        assert "Failed to pull image" in described["refused"], described["refused"]
        # A port that closes every connection, as Go's HTTP client words it (which one depends on
        # when the close lands: mid-read, before the reply, or on a reused idle connection).
        closed = ("connection reset", "EOF", "connection refused", "server closed idle connection")
        assert any(w in described["refused"] for w in closed), described["refused"]
        crash = wait_for(lambda: (cs := status(get_json(k, "pod", "crash"))).get("state", {}).get("waiting", {})
                         .get("reason") == "CrashLoopBackOff" and cs, timeout=60, what="CrashLoopBackOff")
        assert crash["lastState"]["terminated"]["exitCode"] == 3
        assert crash["lastState"]["terminated"]["reason"] == "Error"
        assert "Back-off restarting failed container" in k.ok("describe", "pod", "crash")
        assert nodes_ready(k)
        assert bridge_macs(cluster) == macs
    finally:
        k.run("delete", "pod", *runs, "crash", "--wait=false")


def cmdline(pid: int) -> list[str]:
    return open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1]


def containers(k) -> dict[str, tuple[str, int]]:
    """pod name -> (container ID, restartCount) of the web pods."""
    return {p["metadata"]["name"]: (status(p).get("containerID"), status(p).get("restartCount"))
            for p in pods(k, "app=web")}


def kill_agent(cluster, node: str) -> list[str]:
    """SIGKILL `node`'s agent; its command line, to start it again."""
    agent = cluster.agent_pids()[node]
    args = cmdline(agent)
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{agent}") or open(f"/proc/{agent}/stat").read().split()[2] == "Z",
             timeout=10, what="the agent gone")
    return args


def start_agent(cluster, args: list[str]) -> None:
    with open(cluster.data_dir / "logs" / "restarted-agent.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    cluster.restarted.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("Node ready: "), line


def test_killed_agent_restarts_and_readopts_its_containers(cluster, k, web):
    before = containers(k)
    node = pods(k, "app=web")[0]["spec"]["nodeName"]
    args = kill_agent(cluster, node)
    # Its containerd, in its own session, and the containers keep serving meanwhile.
    served = {ip: [get(ip, web) for _ in range(4)] for ip in node_ips(cluster)}
    assert all(all(answers) for answers in served.values()), served
    start_agent(cluster, args)
    # Same containers, not restarted; still served through every node.
    assert containers(k) == before
    wait_for(lambda: all(get(ip, web) for ip in node_ips(cluster)), timeout=15, what="NodePort on every node")
    assert nodes_ready(k)
    # One containerd per node: the restarted agent adopted its predecessor's.
    cfg = cluster.data_dir / "nodes" / node / "containerd" / "config.toml"
    assert len(containerd_pids(_procs(), cfg)) == 1
    # The restarted agent starts new pods.
    k.ok("scale", "deployment", "web", "--replicas=4")
    k.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert len({p["spec"]["nodeName"] for p in pods(k, "app=web")}) == 2


def _procs() -> list[tuple[int, list[str]]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out.append((int(entry), cmdline(int(entry))))
            except OSError:
                pass
    return out


def test_containerd_killed_under_a_running_agent_is_restarted(cluster, k, web):
    """On every node (one agent is the restarted one, whose containerd it adopted rather than
    started): kill containerd; the agent starts it again, and the pods keep running."""
    before = containers(k)
    failed: list[str] = []
    stop = threading.Event()

    def load():  # the pods serve throughout, through every node
        while not stop.is_set():
            failed.extend(ip for ip in node_ips(cluster) if not get(ip, web))
            stop.wait(0.05)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for i in range(1, cluster.nodes + 1):
            cfg = cluster.data_dir / "nodes" / f"node-{i}" / "containerd" / "config.toml"
            [old] = containerd_pids(_procs(), cfg)
            os.kill(old, signal.SIGKILL)
            new = wait_for(lambda cfg=cfg, old=old: [p for p in containerd_pids(_procs(), cfg) if p != old],
                           timeout=30, what=f"node-{i}'s containerd started again")
            assert len(new) == 1
        logs = lambda: "".join((cluster.data_dir / "logs" / name).read_text() for name in  # noqa: E731
                               ("node-1.log", "node-2.log", "restarted-agent.log"))
        wait_for(lambda: logs().count("containerd is back") >= 2, timeout=30, what="both containerds back")
    finally:
        stop.set()
        loader.join()
    assert failed == []
    # The kubelet reaches containerd again: a new pod starts on each node.
    k.ok("scale", "deployment", "web", "--replicas=6")
    k.ok("rollout", "status", "deployment/web", "--timeout=60s")
    after = containers(k)
    assert {name: after[name] for name in before} == before
    assert nodes_ready(k)
    assert "containerd exited" in logs() and "not initialized" not in logs()


def test_a_hung_containerd_fails_syncs_clearly_and_pods_start_once_it_answers(cluster, k, reg):
    """containerd frozen (SIGSTOP): the kubelet's CRI calls time out (Unavailable), it says so in
    an Event and retries; the node stays Ready, and the pod starts once containerd answers."""
    cfg = cluster.data_dir / "nodes" / "node-1" / "containerd" / "config.toml"
    [pid] = containerd_pids(_procs(), cfg)
    os.kill(pid, signal.SIGSTOP)
    try:
        k.ok("run", "during", f"--image={reg['busybox']}", "--overrides",
             json.dumps({"spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}}}), "--", "sleep", "3600")
        events = wait_for(lambda: (e := k.ok("get", "events", "--field-selector", "involvedObject.name=during"))
                          and "FailedCreatePodSandBox" in e and e, timeout=30, what="the failed sandbox Event")
        assert "DeadlineExceeded" in events, events
        assert nodes_ready(k)
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        k.ok("wait", "--for=condition=Ready", "pod/during", "--timeout=60s")
        assert status(get_json(k, "pod", "during"))["restartCount"] == 0
        assert containerd_pids(_procs(), cfg) == [pid]  # frozen is not dead: the same containerd
    finally:
        k.run("delete", "pod", "during", "--wait=false")


def test_agent_and_containerd_both_killed_then_the_agent_brings_both_back(cluster, k, web):
    """The agent dies and its containerd too (the shims live on): the agent started again starts
    a containerd on the same state, which finds the containers; the agent re-adopts them."""
    restarted = {p.pid for p in cluster.restarted}
    node = next(n for n, pid in cluster.agent_pids().items() if pid not in restarted)
    before = containers(k)
    args = kill_agent(cluster, node)
    cfg = cluster.data_dir / "nodes" / node / "containerd" / "config.toml"
    [old] = containerd_pids(_procs(), cfg)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: containerd_pids(_procs(), cfg) == [], timeout=10, what="containerd gone")
    served = {ip: [get(ip, web) for _ in range(4)] for ip in node_ips(cluster)}
    assert all(all(answers) for answers in served.values()), served
    start_agent(cluster, args)
    assert containers(k) == before
    [new] = containerd_pids(_procs(), cfg)
    assert new != old
    wait_for(lambda: all(get(ip, web) for ip in node_ips(cluster)), timeout=15, what="NodePort on every node")
    k.ok("scale", "deployment", "web", "--replicas=8")
    k.ok("rollout", "status", "deployment/web", "--timeout=60s")
    assert nodes_ready(k)
