"""Two named containerd clusters at once: each on its own bridges and ranges; `down` of one
leaves the other's; a killed `up` is swept (bridges, filter table, containerds) by `status`.

Ranges of its own: nodes 10.141.0.x / 10.144.0.x, load balancers 10.141.1.0/24 / 10.144.1.0/24,
pods 10.142/16 / 10.145/16, Services 10.143/16 / 10.146/16; no pod egress.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pocketkube.clusters import state
from pocketkube.net import hostnet
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import wait_for

pytestmark = [requires(have_containerd(), CONTAINERD), pytest.mark.slow, pytest.mark.timeout(240)]

RANGES = {
    "one": ["--node-ip-base", "10.141.0.0", "--load-balancer-pool", "10.141.1.0/24",
            "--pod-cidr-base", "10.142.0.0/16", "--service-cidr", "10.143.0.0/16"],
    "two": ["--node-ip-base", "10.144.0.0", "--load-balancer-pool", "10.144.1.0/24",
            "--pod-cidr-base", "10.145.0.0/16", "--service-cidr", "10.146.0.0/16"],
}


def test_two_container_clusters_side_by_side_and_a_killed_one_swept():
    root = Path(tempfile.mkdtemp(prefix="pk-daily-cd-"))
    env = dict(os.environ, HOME=str(root / "home"), POCKETKUBE_DATA_DIR=str(root / "pk"))
    env.pop("KUBECONFIG", None)

    def pk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pocketkube", *args], capture_output=True, text=True,
                              env=env, timeout=180)

    cids = {name: hostnet.cluster_id_of(root / f"pk-{name}") for name in RANGES}
    try:
        for name, ranges in RANGES.items():
            up = pk("up", "-d", "--name", name, "--runtime", "containerd", "--nodes", "2", "--port", "0",
                    "--no-pod-egress", "--ingress-http-port", "0", "--ingress-https-port", "0", *ranges)
            assert up.returncode == 0, up.stdout + up.stderr
            assert "2 nodes Ready" in up.stdout
        assert cids["one"] != cids["two"]
        for cid in cids.values():
            assert hostnet.cluster_links(cid) and hostnet.cluster_table_exists(cid)
        rows = pk("status").stdout
        assert rows.count("Running") == 2 and rows.count("containerd") == 2, rows
        assert "stopped" in pk("down", "--name", "one").stdout
        assert not hostnet.cluster_links(cids["one"]) and not hostnet.cluster_table_exists(cids["one"])
        assert processes_under(root / "pk-one") == []
        assert hostnet.cluster_links(cids["two"]), "down of one must leave the other"
        # A killed `up`: its agents and containerds go on; `status` finds it stale and sweeps it.
        st = state.read_state(root / "pk-two")
        os.kill(st.pid, signal.SIGKILL)
        wait_for(lambda: not state.alive(st), timeout=10, what="up gone")
        swept = pk("status")
        assert "removed the stale state" in swept.stderr, swept.stderr
        assert processes_under(root / "pk-two") == []
        assert not hostnet.cluster_links(cids["two"]) and not hostnet.cluster_table_exists(cids["two"])
    finally:
        for name in RANGES:
            pk("down", "--name", name, "--delete")
        for cid in cids.values():
            hostnet.remove_leftovers(cid)
        left = processes_under(root)
        mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]
        shutil.rmtree(root, ignore_errors=True)
    assert left == [] and mounts == [], (left, mounts)
