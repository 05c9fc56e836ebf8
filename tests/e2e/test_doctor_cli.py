"""`pocketkube doctor` and `up` on a host with prerequisites hidden: PATH without `nft` and
`containerd` (a temp dir of symlinks to every other program). doctor names each missing piece and
its fix and exits 1; `up` falls back to the process runtime and the userspace data plane and says
so in its one line. Address ranges of its own: nodes 127.189.0.x, pods 127.190.0.0/16, Services
127.191.0.0/16, load balancers 127.192.0.0/24."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HIDDEN = ("nft", "containerd")
UP_ARGS = ["--nodes", "1", "--node-ip-base", "127.189.0.0", "--pod-cidr-base", "127.190.0.0/16",
           "--service-cidr", "127.191.0.0/16", "--load-balancer-pool", "127.192.0.0/24", "--port", "0",
           "--no-user-kubeconfig", "--no-dns", "--ingress-http-port", "0", "--ingress-https-port", "0"]


@pytest.fixture
def hidden_path(tmp_path) -> str:
    """A PATH holding every program of the real one but `nft` and `containerd`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = list(Path(d).iterdir())
        except OSError:
            continue
        for entry in entries:
            target = bin_dir / entry.name
            if entry.name not in HIDDEN and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry.resolve())
    return str(bin_dir)


def pocketkube(*args: str, path: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketkube", *args], capture_output=True, text=True,
                          env=dict(os.environ, PATH=path), timeout=timeout, check=False)


def test_doctor_names_hidden_programs_and_their_fixes(hidden_path):
    done = pocketkube("doctor", path=hidden_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "✗ containerd: not found on PATH" in out
    assert "fix: apt-get install -y containerd" in out
    assert "pods run as host processes (--runtime process), no real images" in out
    if os.geteuid() == 0:
        assert "✗ nft (nftables): not found on PATH" in out and "fix: apt-get install -y nftables" in out
        assert "pocketkube up would run: runtime process, data plane userspace: no nft, containerd" in out
    else:
        assert "pocketkube up would run: runtime process, data plane userspace: not root" in out
    assert "\x1b[" not in out  # no colour when not a terminal


def test_doctor_json_for_tools(hidden_path):
    done = pocketkube("doctor", "--output", "json", path=hidden_path)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    checks = {c["id"]: c for c in doc["checks"]}
    assert doc["ok"] is False
    assert checks["containerd"]["status"] == "missing" and checks["containerd"]["fix"] == "apt-get install -y containerd"
    assert checks["nft"]["status"] == "missing"
    assert doc["mode"]["runtime"] == "process" and doc["mode"]["dataplane"] == "userspace"


def test_up_falls_back_and_says_so_in_one_line(hidden_path, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube", "up", "--data-dir", str(tmp_path / "data"),
                             *UP_ARGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PATH=hidden_path), start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "nodes Ready" in line:
                break
        out = "".join(lines)
        assert "nodes Ready" in out, out
        [mode] = [line for line in lines if line.startswith("• runtime ")]
        assert mode.startswith("• runtime process, data plane userspace: "), mode
        assert mode.rstrip().endswith("pocketkube doctor tells more)")
        assert ("no nft, containerd (apt-get install -y nftables containerd" in mode if os.geteuid() == 0
                else "not root (sudo pocketkube up" in mode), mode
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
    assert proc.returncode == 0 and "• stopped" in rest, rest
