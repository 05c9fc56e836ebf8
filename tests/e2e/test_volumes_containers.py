"""Volumes on the containerd runtime: busybox pods with bind mounts of the kubelet's volumes
(ConfigMap and Secret files and their updates, a subPath that keeps its file, FailedMount until
the ConfigMap exists, an emptyDir shared by two containers, a hostPath of the wrong type)."""

from __future__ import annotations

from pathlib import Path

import pytest
import volumes_scenarios as sc

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires

RANGES = {"node_ip_base": "10.214.0.0", "pod_cidr_base": "10.224.0.0/16", "service_cidr": "10.234.0.0/16",
          "lb_pool": "10.214.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-vol-ctr-", tmp_path_factory.mktemp("images"), ["busybox"], nodes=1, **RANGES) as c:
        yield c
    assert str(c.data_dir) not in Path("/proc/self/mounts").read_text()


k = module_kubectl()


def test_configmap_and_secret_files_follow_updates(k):
    assert sc.configmap_secret_update(k, "/") < 10


def test_failed_mount_until_the_configmap_exists(k):
    sc.failed_mount_then_start(k, "/")


def test_empty_dir_shared_between_containers(k, cluster):
    sc.empty_dir_shared(k, "/", cluster.data_dir / "nodes" / "node-1")


def test_hostpath_of_the_wrong_type(k, tmp_path):
    (tmp_path / "file").write_text("x")
    sc.hostpath_type_error(k, tmp_path / "file")


def test_configmap_volumes_are_read_only(k):
    sc.api_data_volumes_are_read_only(k)


def test_empty_dir_over_its_size_limit_evicts_the_pod(k):
    sc.empty_dir_over_its_limit_evicts(k, "/")


def test_projected_volume_with_downward_api(k):
    sc.projected_and_downward_api(k, "/")
