"""Volumes on the process runtime: a process pod's root is its working directory, where each
volume appears at its mount path (so scripts read `etc/config/k`, relative)."""

from __future__ import annotations

from pathlib import Path

import pytest
import volumes_scenarios as sc

from pocketkube.testing.procs import Kubectl, kubectl_binaries, preferred_kubectl, running_cluster
from pocketkube.testing.requires import TMPFS, is_root, requires

pytestmark = [requires(is_root(), TMPFS), pytest.mark.slow, pytest.mark.timeout(180)]
RANGES = {"node_ip_base": "127.0.214.0", "pod_cidr_base": "127.214.0.0/16", "service_cidr": "127.215.0.0/16",
          "lb_pool": "127.216.0.0/24"}


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-vol-proc-", nodes=1, **RANGES) as c:
        yield c
    assert str(c.data_dir) not in Path("/proc/self/mounts").read_text()


@pytest.fixture(scope="module")
def k(cluster):
    kc = preferred_kubectl(cluster.kubeconfig)
    yield kc
    kc.close()


@pytest.mark.parametrize("binary", list(kubectl_binaries().values()), ids=list(kubectl_binaries()))
def test_configmap_and_secret_files_follow_updates(cluster, binary):
    kc = Kubectl(binary, cluster.kubeconfig)
    try:
        assert sc.configmap_secret_update(kc, "") < 10
    finally:
        kc.close()


def test_failed_mount_until_the_configmap_exists(k):
    sc.failed_mount_then_start(k, "")


def test_empty_dir_shared_between_containers(k, cluster):
    sc.empty_dir_shared(k, "", cluster.data_dir / "nodes" / "node-1")


def test_hostpath_of_the_wrong_type(k, tmp_path):
    (tmp_path / "file").write_text("x")
    sc.hostpath_type_error(k, tmp_path / "file")


def test_empty_dir_over_its_size_limit_evicts_the_pod(k):
    sc.empty_dir_over_its_limit_evicts(k, "")


def test_projected_volume_with_downward_api(k):
    sc.projected_and_downward_api(k, "")
