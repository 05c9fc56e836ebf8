"""`pocketkube up` end to end with the real kubectl: nodes, pods as processes, controllers."""

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pocketkube.agent.runtime.process import kill_recorded
from pocketkube.testing.procs import (
    Kubectl,
    kubectl_binaries,
    running_cluster,
)
from pocketkube.testing.requires import NGINX, have_nginx, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = [requires(have_nginx(), NGINX), pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-up-", extra_args=["--node-monitor-grace-period", "3",
                                               "--pod-eviction-timeout", "2"]) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = Kubectl(kubectl_binaries()["kubectl-1.32"] if "kubectl-1.32" in kubectl_binaries()
                 else next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    yield kc
    kc.close()


def pods(k, selector="app=myapp"):
    return get_json(k, "pods", "-l", selector)["items"]


def test_three_nodes_ready(k, cluster):
    out = k.ok("get", "nodes", "-o", "wide")
    rows = [r.split() for r in out.strip().splitlines()[1:]]
    assert len(rows) == 3
    assert all(r[1] == "Ready" for r in rows)
    assert {r[5] for r in rows} == {cluster.node_ip(i) for i in (1, 2, 3)}


def test_seed_pod_runs_nginx_on_its_pod_ip(k):
    k.ok("create", "-f", str(EXAMPLES / "pod-definition.yaml"))
    try:
        pod = wait_for(lambda: next((p for p in pods(k, "app=myapp,type=front-end") if is_ready(p)), None),
                       what="myapp-pod Ready")
        ip = pod["status"]["podIP"]
        assert ip.startswith("127.245.")
        wide = k.ok("get", "pod", "myapp-pod", "-o", "wide")
        assert ip in wide and pod["spec"]["nodeName"] in wide and "Running" in wide
        body = urllib.request.urlopen(f"http://{ip}:80/", timeout=5).read().decode()
        assert "Welcome to nginx!" in body
        logs = k.run("logs", "myapp-pod")
        assert logs.returncode == 0, logs.stderr
    finally:
        k.run("delete", "-f", str(EXAMPLES / "pod-definition.yaml"), "--wait=true", timeout=60)
    assert k.run("get", "pod", "myapp-pod").returncode == 1


def test_deployment_spreads_scales_rolls_and_cascades(k):
    deploy = str(EXAMPLES / "deployment-definition.yaml")
    k.ok("create", "-f", deploy)
    try:
        k.ok("rollout", "status", "deployment/myapp-deployment", "--timeout=60s")
        ps = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(is_ready(p) for p in ps) else None)(
            pods(k, "type=front-end")), what="3 ready pods")
        assert len({p["spec"]["nodeName"] for p in ps}) >= 2, "replicas should spread over nodes"
        k.ok("scale", "deployment", "myapp-deployment", "--replicas=5")
        k.ok("rollout", "status", "deployment/myapp-deployment", "--timeout=60s")
        assert len(pods(k, "type=front-end")) == 5
        k.ok("scale", "deployment", "myapp-deployment", "--replicas=3")
        wait_for(lambda: len([p for p in pods(k, "type=front-end")
                              if not p["metadata"].get("deletionTimestamp")]) == 3, what="scale down to 3")
        k.ok("set", "image", "deployment/myapp-deployment", "nginx-container=nginx:1.27")
        min_available = 3
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            d = get_json(k, "deploy", "myapp-deployment")
            st = d.get("status", {})
            min_available = min(min_available, st.get("availableReplicas", 0))
            if (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == 3
                    and st.get("replicas") == 3 and st.get("availableReplicas") == 3):
                break
            time.sleep(0.1)
        else:
            pytest.fail("rolling update did not finish")
        # maxUnavailable 25% of 3 rounds down to 0: never fewer than 3 available
        assert min_available >= 3, min_available
        rs = get_json(k, "rs")["items"]
        assert sorted(r["spec"]["replicas"] for r in rs) == [0, 3]
    finally:
        k.run("delete", "-f", deploy, "--wait=true", timeout=60)
    wait_for(lambda: not pods(k, "type=front-end") and not get_json(k, "rs")["items"],
             what="deployment cascade")


def test_crashing_container_backs_off(k, tmp_path):
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["/bin/false"]}]}}
    path = tmp_path / "crasher.yaml"
    path.write_text(yaml.safe_dump(manifest))
    k.ok("create", "-f", str(path))
    try:
        def crashing():
            p = get_json(k, "pod", "crasher")
            cs = (p.get("status", {}).get("containerStatuses") or [{}])[0]
            waiting = cs.get("state", {}).get("waiting", {})
            return cs if waiting.get("reason") == "CrashLoopBackOff" and cs.get("restartCount", 0) >= 1 else None
        wait_for(crashing, timeout=40, what="CrashLoopBackOff")
        assert "CrashLoopBackOff" in k.ok("get", "pod", "crasher")
    finally:
        k.run("delete", "pod", "crasher", "--wait=true", timeout=60)


def test_failing_readiness_probe_keeps_pod_not_ready(k, tmp_path):
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready"},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                                         "readinessProbe": {"httpGet": {"path": "/no-such-page", "port": 80},
                                                            "periodSeconds": 1}}]}}
    path = tmp_path / "unready.yaml"
    path.write_text(yaml.safe_dump(manifest))
    k.ok("create", "-f", str(path))
    try:
        wait_for(lambda: get_json(k, "pod", "unready").get("status", {}).get("phase")
                 == "Running", what="Running")
        time.sleep(3)  # on purpose: three probe periods in which the pod must never turn ready
        p = get_json(k, "pod", "unready")
        assert not is_ready(p)
        assert "0/1" in k.ok("get", "pod", "unready")
    finally:
        k.run("delete", "pod", "unready", "--wait=true", timeout=60)


def test_unrunnable_image_fails_visibly(k):
    k.ok("run", "ghost", "--image=example.com/ghost:1.0")
    try:
        def failed():
            p = get_json(k, "pod", "ghost")
            cs = (p.get("status", {}).get("containerStatuses") or [{}])[0]
            return cs.get("state", {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
        wait_for(failed, what="ErrImagePull")
        assert "cannot be run locally" in k.ok("describe", "pod", "ghost")
    finally:
        k.run("delete", "pod", "ghost", "--wait=true", timeout=60)


def test_node_crash_evicts_and_replaces_pods(k, cluster):
    """Kill one agent and its pods (a simulated machine crash): NotReady, eviction, replacement."""
    k.ok("create", "deployment", "crashy", "--image=nginx", "--replicas=3")
    try:
        wait_for(lambda: (lambda ps: len(ps) == 3 and all(is_ready(p) for p in ps))(pods(k, "app=crashy")),
                 timeout=60, what="3 ready pods")
        victim_pod = pods(k, "app=crashy")[0]
        node = victim_pod["spec"]["nodeName"]
        agent = cluster.agent_pids()[node]
        node_dir = cluster.data_dir / "nodes" / node
        os.kill(agent, signal.SIGKILL)
        kill_recorded(node_dir)  # the machine's pods die with it
        wait_for(lambda: "NotReady" in k.ok("get", "node", node), timeout=30, what=f"{node} NotReady")

        def replaced():
            ps = [p for p in pods(k, "app=crashy") if not p["metadata"].get("deletionTimestamp")]
            return len(ps) == 3 and all(is_ready(p) and p["spec"]["nodeName"] != node for p in ps)
        wait_for(replaced, timeout=60, what="pods replaced on other nodes")
    finally:
        k.run("delete", "deployment", "crashy", "--wait=true", timeout=60)
