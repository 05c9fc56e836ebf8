"""Clusters as a daily tool: `up -d`, `status`, `list`, `logs`, `down [--delete]`, two named
clusters side by side, a killed `up` (stale state) and a resume with its objects.

HOME and POCKETKUBE_DATA_DIR point at a temp dir: the real ~/.kube/config and ~/.pocketkube are
never touched. Address ranges of its own (explicit flags: the automatic choice is unit-tested and
would land on ranges other sessions' clusters use): nodes 127.0.91-92.x, pods 127.191-192/16,
Services 127.193-194/16, load balancers 127.195-196.0/24.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from svc_helpers import nginx_welcome

from pocketkube.clusters import state
from pocketkube.testing.procs import Kubectl, kubectl_binaries, preferred_kubectl, processes_under
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, requires
from pocketkube.testing.waits import wait_for

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.slow,
              pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RANGES = {
    "alpha": ["--node-ip-base", "127.0.91.0", "--pod-cidr-base", "127.191.0.0/16",
              "--service-cidr", "127.193.0.0/16", "--load-balancer-pool", "127.195.0.0/24"],
    "beta": ["--node-ip-base", "127.0.92.0", "--pod-cidr-base", "127.192.0.0/16",
             "--service-cidr", "127.194.0.0/16", "--load-balancer-pool", "127.196.0.0/24"],
}
NODE_IPS = {"alpha": ["127.0.91.1", "127.0.91.2"], "beta": ["127.0.92.1", "127.0.92.2"]}


class Clusters:
    """`pocketkube` commands with HOME and the data dirs in one temp root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.default_dir = root / "pk"
        self.env = dict(os.environ, HOME=str(root / "home"), POCKETKUBE_DATA_DIR=str(self.default_dir))
        self.env.pop("KUBECONFIG", None)

    def dir(self, name: str) -> Path:
        return self.default_dir.parent / f"pk-{name}"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pocketkube", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def up(self, name: str, *extra: str) -> str:
        return self.ok("up", "-d", "--name", name, "--runtime", "process", "--nodes", "2", "--port", "0",
                       "--ingress-http-port", "0", "--ingress-https-port", "0", *RANGES[name], *extra)

    def kubectl(self, name: str) -> Kubectl:
        return preferred_kubectl(self.dir(name) / "kubeconfig")

    def status(self) -> dict[str, list[str]]:
        lines = self.ok("status").splitlines()
        assert lines[0].split() == ["NAME", "STATE", "API", "NODES", "RUNTIME", "DATAPLANE", "UPTIME"]
        return {line.split()[0]: line.split() for line in lines[1:]}


def leftovers(clusters: Clusters) -> list[str]:
    found = processes_under(clusters.root)
    if shutil.which("nft") and os.geteuid() == 0:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        found += [t for t in tables.split() if "127-0-91-" in t or "127-0-92-" in t]
    found += [line for line in Path("/proc/mounts").read_text().splitlines() if str(clusters.root) in line]
    return found


@pytest.fixture
def clusters():
    c = Clusters(Path(tempfile.mkdtemp(prefix="pk-daily-")))
    try:
        yield c
    finally:
        for name in RANGES:
            c.run("down", "--name", name, "--delete")
        left = leftovers(c)
        shutil.rmtree(c.root, ignore_errors=True)
    assert left == [], left


def test_up_detached_status_down_delete_twice_leave_nothing(clusters):
    for _round in range(2):
        out = clusters.up("alpha")
        assert "2 nodes Ready" in out and "Press Ctrl-C" not in out and "pocketkube down --name alpha" in out
        assert "(also available as context 'pocketkube-alpha' in ~/.kube/config)" in out
        st = state.read_state(clusters.dir("alpha"))
        assert st is not None and state.alive(st)
        again = clusters.ok("up", "--name", "alpha")
        assert "already running" in again and f"pid {st.pid}" in again
        row = clusters.status()["alpha"]
        assert row[1] == "Running" and row[3] == "2/2" and row[4] == "process", row
        assert clusters.ok("list") == "alpha\n"
        assert "node-2" in clusters.ok("kubectl", "--name", "alpha", "get", "nodes")
        assert clusters.ok("logs", "--name", "alpha", "up").startswith("• starting API server")
        bad = clusters.run("logs", "nope", "--name", "alpha")
        assert bad.returncode == 1 and "valid: server, controller-manager" in bad.stderr
        assert "stopped" in clusters.ok("down", "--name", "alpha")
        assert leftovers(clusters) == []
        assert clusters.status()["alpha"][1] == "Stopped"
        assert clusters.ok("down", "--name", "alpha") == "cluster 'alpha' is not running\n"
        assert "deleted" in clusters.ok("down", "--name", "alpha", "--delete")
        assert not clusters.dir("alpha").exists()
        config = (clusters.root / "home" / ".kube" / "config").read_text()
        assert "pocketkube-alpha" not in config
        assert clusters.ok("list") == "No clusters found.\n"


def test_bad_name_is_refused():
    done = subprocess.run([sys.executable, "-m", "pocketkube", "up", "--name", "Bad_Name"], capture_output=True,
                          text=True, env=dict(os.environ, HOME="/nonexistent", POCKETKUBE_DATA_DIR="/nonexistent/pk"))
    assert done.returncode == 2 and "invalid cluster name 'Bad_Name'" in done.stderr


def test_failed_detached_up_shows_the_log_tail(clusters):
    done = clusters.run("up", "-d", "--name", "alpha", "--runtime", "process", "--port", "0",
                        "--node-ip-base", "127.0.91.0", "--pod-cidr-base", "not-a-cidr")
    assert done.returncode != 0 and "--pod-cidr-base" in done.stderr and "the whole log is" in done.stderr
    assert state.read_state(clusters.dir("alpha")) is None
    missing = clusters.run("status", "--name", "nope")
    assert missing.returncode == 1 and "no cluster named 'nope'" in missing.stderr



def test_two_clusters_serve_the_seed_and_down_of_one_leaves_the_other(clusters):
    clusters.up("alpha")
    clusters.up("beta")
    for name in RANGES:
        k = clusters.kubectl(name)
        k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
        k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))
    for name in RANGES:
        for ip in NODE_IPS[name]:  # the same NodePort on each cluster's own node IPs
            wait_for(lambda ip=ip: nginx_welcome(ip, 30008), timeout=60, what=f"{name}'s nginx via {ip}:30008")
    rows = clusters.status()
    assert rows["alpha"][1] == rows["beta"][1] == "Running" and rows["alpha"][2] != rows["beta"][2]
    clusters.ok("down", "--name", "alpha")
    assert processes_under(clusters.dir("alpha")) == []
    assert nginx_welcome(NODE_IPS["alpha"][0], 30008) is None
    assert clusters.status()["beta"][1] == "Running"
    for ip in NODE_IPS["beta"]:
        assert nginx_welcome(ip, 30008)


def test_killed_up_is_stale_then_resumes_with_its_objects(clusters):
    clusters.up("alpha")
    k = clusters.kubectl("alpha")
    k.ok("create", "deployment", "web", "--image", "nginx", "--replicas", "2")
    wait_for(lambda: _ready_replicas(k) == 2, timeout=60, what="2 ready replicas")
    ips = _pod_ips(k)
    wait_for(lambda: all(nginx_welcome(ip, 80) for ip in ips), timeout=30, what="nginx in both pods")
    st = state.read_state(clusters.dir("alpha"))
    os.kill(st.pid, signal.SIGKILL)  # as a crash or a host restart leaves it: the children go on alone
    wait_for(lambda: not state.alive(st), timeout=10, what="up gone")
    status = clusters.run("status")
    assert "is gone; removed the stale state" in status.stderr and " Stopped " in status.stdout
    assert processes_under(clusters.dir("alpha")) == [], "status must sweep the killed cluster's processes"
    assert not any(nginx_welcome(ip, 80) for ip in ips), "the killed cluster's pods must be stopped too"
    assert "2 nodes Ready" in clusters.up("alpha")
    assert "deployment.apps/web" in k.ok("get", "deployment", "web", "-o", "name")
    # The pods come back (restartPolicy Always), serving again.
    wait_for(lambda: len(_pod_ips(k)) == 2 and all(nginx_welcome(ip, 80) for ip in _pod_ips(k)), timeout=90,
             what="the Deployment's pods serving again")


def _pod_ips(k: Kubectl) -> list[str]:
    pods = json.loads(k.ok("get", "pods", "-l", "app=web", "-o", "json"))["items"]
    return [p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")]


def _ready_replicas(k: Kubectl) -> int:
    done = k.run("get", "deployment", "web", "-o", "json")
    return json.loads(done.stdout).get("status", {}).get("readyReplicas", 0) if done.returncode == 0 else -1
