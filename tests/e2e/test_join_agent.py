"""An agent joins a `pocketkube up` cluster from "another host" (its own data dir, no access to
the server's): the join command `up` prints, `pocketkube agent --server --token`, a node client
certificate through an auto-approved CSR; the node becomes Ready, runs a pod, serves its logs,
and a restart reuses the certificate. A wrong token fails with the clear message."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pocketkube.testing.procs import preferred_kubectl, read_until, running_cluster
from pocketkube.testing.waits import wait_for

# Process pods on this topic's own loopback ranges (the 127/8 analogues of 10.241-10.245).
RANGES = {"node_ip_base": "127.241.0.0", "pod_cidr_base": "127.242.0.0/16", "service_cidr": "127.243.0.0/16",
          "lb_pool": "127.245.0.0/24"}
REMOTE_IP, REMOTE_PODS = "127.241.0.99", "127.242.99.0/24"
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-join-e2e-", nodes=1, extra_args=["--dataplane", "userspace", "--no-dns",
                                                               "--ingress-http-port", "0",
                                                               "--ingress-https-port", "0"], **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = preferred_kubectl(cluster.kubeconfig)
    yield kc
    kc.close()


def join_args(cluster) -> list[str]:
    """The join command `up` printed, with this test's node filled in."""
    line = next(x for x in "".join(cluster.output).splitlines() if x.strip().startswith("pocketkube agent --server"))
    args = shlex.split(line.strip())
    server, token = args[args.index("--server") + 1], args[args.index("--token") + 1]
    return ["--server", server, "--token", token]


def start_agent(cluster, args: list[str], name: str = "remote-1") -> subprocess.Popen:
    data = cluster.data_dir.parent / name
    cmd = [sys.executable, "-m", "pocketkube", "agent", *args, "--node-name", name, "--node-ip", REMOTE_IP,
           "--pod-cidr", REMOTE_PODS, "--data-dir", str(data), "--kubelet-port", "0", "--dataplane", "userspace",
           "--lease-interval", "2"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    return out


def wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    seen: list[str] = []

    def done(line: str) -> bool:
        seen.append(line)
        return line.startswith(prefix) or line.startswith("Node failed")
    read_until(proc, done, timeout)
    return seen[-1] if seen else ""


def test_up_prints_a_join_command(cluster):
    args = join_args(cluster)
    assert re.fullmatch(r"K10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{16}", args[3])


def test_wrong_token_is_a_clear_error(cluster):
    args = join_args(cluster)
    args[3] = args[3].split("::")[0] + "::abcdef.0123456789abcdef"
    proc = start_agent(cluster, args, name="intruder")
    try:
        line = wait_line(proc, "Node ready")
        assert proc.wait(30) == 1
    finally:
        stop(proc)
    assert "join token rejected by the server (401)" in line and "pocketkube token create" in line


def test_joined_agent_runs_a_pod_and_restarts_with_its_certificate(cluster, k):
    proc = start_agent(cluster, join_args(cluster))
    pod = "joined-pod"
    try:
        assert wait_line(proc, "Node ready").startswith("Node ready: remote-1"), stop(proc)
        k.ok("wait", "--for=condition=Ready", "node/remote-1", "--timeout=30s")
        csrs = k.ok("get", "csr")
        assert "system:bootstrap:" in csrs and "Approved,Issued" in csrs
        k.ok("run", pod, "--image=busybox", "--restart=Never", "--overrides",
             '{"spec":{"nodeName":"remote-1"}}', "--command", "--", "sh", "-c", "echo hello from afar; sleep 300")
        k.ok("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=30s")
        assert k.ok("get", "pod", pod, "-o", "jsonpath={.status.podIP}").startswith("127.242.99.")
        wait_for(lambda: "hello from afar" in k.run("logs", pod).stdout, timeout=20, what="logs through the node")
        cert = (cluster.data_dir.parent / "remote-1" / "pki" / "kubelet-client.crt").read_bytes()
        stop(proc)
        proc = start_agent(cluster, join_args(cluster))
        assert wait_line(proc, "Node ready").startswith("Node ready: remote-1"), stop(proc)
        assert (cluster.data_dir.parent / "remote-1" / "pki" / "kubelet-client.crt").read_bytes() == cert
        assert len([x for x in k.ok("get", "csr", "-o", "name").split() if x]) == 1
    finally:
        k.run("delete", "pod", pod, "--wait=false")
        k.run("delete", "node", "remote-1", "--wait=false")
        stop(proc)
    assert not Path(f"/proc/{proc.pid}").exists()
