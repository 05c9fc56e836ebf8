"""Resource limits through containerd's cgroups: the limits reach the container's cgroup, a pod
over its memory limit is OOMKilled and restarted, and `kubectl top` reads the cgroup stats."""

from __future__ import annotations

import json

import pytest

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# This module's own ranges.
RANGES = {"node_ip_base": "10.218.0.0", "pod_cidr_base": "10.228.0.0/16", "service_cidr": "10.238.0.0/16",
          "lb_pool": "10.218.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-res-ctr-", tmp_path_factory.mktemp("images"), ["busybox"], nodes=1, **RANGES) as c:
        yield c


k = module_kubectl()


def busybox_pod(name: str, script: str, resources: dict) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                           "name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                           "command": ["sh", "-c", script], "resources": resources}]}})


def test_limits_reach_the_cgroup(k):
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
              "2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; sleep 3600")
    k.ok("apply", "-f", "-", input=busybox_pod("limited", script, {"limits": {"cpu": "500m", "memory": "64Mi"}}))
    out = wait_for(lambda: k.run("logs", "limited").stdout.split(), timeout=60, what="the cgroup files")
    assert out[0] == str(64 * 1024 * 1024)
    assert out[1] == "50000"
    k.ok("delete", "pod", "limited", "--wait=false")


def test_over_the_memory_limit_is_oomkilled_and_restarted(k):
    script = "x=$(dd if=/dev/zero bs=1M count=256 2>/dev/null | tr '\\0' a); sleep 3600"
    k.ok("apply", "-f", "-", input=busybox_pod("hog", script, {"limits": {"memory": "32Mi"}}))

    def oom_restarted():
        status = (get_json(k, "pod", "hog").get("status") or {}).get("containerStatuses") or [{}]
        last = (status[0].get("lastState") or {}).get("terminated") or {}
        return status[0].get("restartCount", 0) >= 1 and last.get("reason") == "OOMKilled" and last
    last = wait_for(oom_restarted, timeout=90, what="an OOMKilled restart")
    assert last["exitCode"] == 137
    k.ok("delete", "pod", "hog", "--wait=false")


def test_top_reads_the_cgroup_stats(k):
    k.ok("apply", "-f", "-", input=busybox_pod("spin", "while :; do :; done", {"limits": {"cpu": "200m"}}))
    wait_for(lambda: (get_json(k, "pod", "spin").get("status") or {}).get("phase") == "Running", timeout=60,
             what="the spinning pod")

    def cpu_milli():
        r = k.run("top", "pod", "spin", "--no-headers")
        return r.returncode == 0 and int(r.stdout.split()[1].removesuffix("m")) >= 50 and r.stdout
    out = wait_for(cpu_milli, timeout=30, what="kubectl top to show the spinning pod's CPU").split()
    assert int(out[1].removesuffix("m")) <= 260, out  # the 200m CFS quota holds (with sampling slack)
    nodes = k.ok("top", "nodes", "--no-headers").split()
    assert nodes[0] == "node-1" and int(nodes[1].removesuffix("m")) >= 50, nodes
    k.ok("delete", "pod", "spin", "--wait=false")
