"""`pocketkube up` as a user meets it: resume on the same data dir, a clean Ctrl-C, `pocketkube
kubectl`, the merged user kubeconfig and a busy port. Address ranges of its own: nodes 127.0.14.x,
pods 127.252.0.0/16, Services 127.102.0.0/16, load balancers 127.206.0.0/24."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pocketkube.testing.procs import Kubectl, kubectl_binaries, processes_under
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.slow, pytest.mark.timeout(300)]

NODE_IPS = ["127.0.14.1", "127.0.14.2", "127.0.14.3"]
UP_ARGS = ["--nodes", "3", "--node-ip-base", "127.0.14.0", "--pod-cidr-base", "127.252.0.0/16",
           "--service-cidr", "127.102.0.0/16", "--load-balancer-pool", "127.206.0.0/24", "--runtime", "process"]
OTHER_CONTEXT = {
    "apiVersion": "v1", "kind": "Config", "current-context": "work",
    "clusters": [{"name": "work", "cluster": {"server": "https://203.0.113.7:6443"}}],
    "users": [{"name": "work-admin", "user": {"token": "keep-me"}}],
    "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-admin"}}],
}


class Up:
    """`pocketkube up` with the user's kubeconfig enabled (HOME is a temp dir), as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.home = root / "home"
        self.proc: subprocess.Popen | None = None
        self.output = ""

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self, timeout: float = 30) -> Up:
        env = dict(os.environ, HOME=str(self.home))
        env.pop("KUBECONFIG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "pocketkube", "up", "--data-dir", str(self.data_dir),
                                      "--port", "0", *UP_ARGS], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        assert self.proc.stdout is not None
        lines = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                self.output = "".join(lines)
                return self
        self.stop()
        raise AssertionError("pocketkube up did not start:\n" + "".join(lines))

    def stop(self, timeout: float = 30) -> str:
        """Ctrl-C, as a user would; what `up` printed after it."""
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGINT)
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            rest, _ = self.proc.communicate()
        self.proc = None
        return rest


def listening_on(ips: list[str]) -> list[str]:
    """"ip:port" of TCP sockets in LISTEN state on any of `ips` (from /proc/net/tcp)."""
    wanted = {socket.inet_aton(ip)[::-1].hex().upper(): ip for ip in ips}
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port = local.split(":")
        if state == "0A" and addr in wanted:
            found.append(f"{wanted[addr]}:{int(port, 16)}")
    return found


def nft_tables_of(ips: list[str]) -> list[str] | None:
    """This cluster's nftables tables (named pocketkube-<node>-<node ip with dashes>); None when
    this host has no nftables data plane."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return None
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    suffixes = tuple("-" + ip.replace(".", "-") for ip in ips)
    return [line.split()[-1] for line in out.splitlines() if line.split()[-1].endswith(suffixes)]


def ready_pods(k: Kubectl, selector: str) -> list[dict]:
    return [p for p in get_json(k, "pods", "-l", selector)["items"]
            if p.get("status", {}).get("phase") == "Running" and is_ready(p)]


def serves_nginx(pod_ip: str) -> bool:
    return "Welcome to nginx!" in urllib.request.urlopen(f"http://{pod_ip}:80/", timeout=3).read().decode()


@pytest.fixture(scope="module")
def up():
    root = Path(tempfile.mkdtemp(prefix="pk-up-e2e-"))
    (root / "home" / ".kube").mkdir(parents=True)
    (root / "home" / ".kube" / "config").write_text(yaml.safe_dump(OTHER_CONTEXT))
    cluster = Up(root)
    try:
        yield cluster.start()
    finally:  # also when the start failed: its data dir goes too
        cluster.stop()
        leftovers = processes_under(root)
        if not os.environ.get("POCKETKUBE_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)
    assert leftovers == [], f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def k(up):
    kc = Kubectl(next(iter(kubectl_binaries().values())), up.kubeconfig)
    yield kc
    kc.close()


def pocketkube_kubectl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketkube", "kubectl", *args], capture_output=True, text=True,
                          env=env, timeout=30, check=False)


def test_pocketkube_kubectl_finds_the_running_cluster(up):
    base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "POCKETKUBE_DATA_DIR")}
    base["HOME"] = str(up.root / "nohome")  # no user kubeconfig to fall back on
    by_flag = pocketkube_kubectl("--data-dir", str(up.data_dir), "get", "nodes", "--no-headers", env=base)
    assert by_flag.returncode == 0, by_flag.stderr
    assert [line.split()[:2] for line in by_flag.stdout.splitlines()] == [
        ["node-1", "Ready"], ["node-2", "Ready"], ["node-3", "Ready"]]
    # kubectl's own flags pass through untouched
    by_env = pocketkube_kubectl("-n", "kube-system", "get", "nodes", "-o", "name",
                                env=dict(base, POCKETKUBE_DATA_DIR=str(up.data_dir)))
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.split() == ["node/node-1", "node/node-2", "node/node-3"]


def test_user_kubeconfig_gains_the_pocketkube_context_and_keeps_others(up):
    merged = yaml.safe_load((up.home / ".kube" / "config").read_text())
    assert {c["name"] for c in merged["contexts"]} == {"work", "pocketkube"}
    assert merged["current-context"] == "work", "the user's current context is theirs to change"
    assert next(u for u in merged["users"] if u["name"] == "work-admin")["user"]["token"] == "keep-me"
    ours = next(c for c in merged["clusters"] if c["name"] == "pocketkube")["cluster"]["server"]
    assert ours == yaml.safe_load(up.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    env = dict(os.environ, HOME=str(up.home))
    env.pop("KUBECONFIG", None)
    out = subprocess.run([next(iter(kubectl_binaries().values())), "--context", "pocketkube", "get", "nodes",
                          "-o", "name"], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 3


def test_ctrl_c_leaves_nothing_and_up_resumes_the_cluster(up, k):
    k.ok("create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80")
    k.ok("expose", "deployment", "web", "--type=NodePort", "--port=80")
    before = get_json(k, "service", "web")["spec"]
    assert ipaddress.ip_address(before["clusterIP"]) in ipaddress.ip_network("127.102.0.0/16")
    wait_for(lambda: len(ready_pods(k, "app=web")) == 2, timeout=20, what="2 web pods Ready")
    assert listening_on(NODE_IPS), "a running cluster listens on its node IPs (kubelet log servers)"
    tables = nft_tables_of(NODE_IPS)
    assert tables is None or sorted(tables) == [f"pocketkube-node-{i}-127-0-14-{i}" for i in (1, 2, 3)]

    out = up.stop()
    assert "stopped" in out and "Traceback" not in out, out
    assert processes_under(up.root) == [], "no pod, agent or server process is left"
    assert listening_on(NODE_IPS) == []
    assert nft_tables_of(NODE_IPS) in (None, [])

    up.start()
    after = get_json(k, "service", "web")["spec"]
    assert after["clusterIP"] == before["clusterIP"]
    assert after["ports"][0]["nodePort"] == before["ports"][0]["nodePort"]
    wait_for(lambda: len(ready_pods(k, "app=web")) == 2, timeout=20,
             what="web pods Running again after the resume")
    pods = ready_pods(k, "app=web")
    assert all(serves_nginx(p["status"]["podIP"]) for p in pods), "the pods are real processes again"


def test_up_on_a_busy_port_fails_with_a_clear_message(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        cp = subprocess.run([sys.executable, "-m", "pocketkube", "up", "--data-dir", str(tmp_path / "data"),
                             "--port", str(port), "--no-user-kubeconfig", *UP_ARGS],
                            capture_output=True, text=True, timeout=30, check=False)
    assert cp.returncode == 1
    assert "Traceback" not in cp.stderr + cp.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in cp.stderr and "Address already in use" in cp.stderr, cp.stderr
    assert processes_under(tmp_path) == []
