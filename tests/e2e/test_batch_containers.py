"""Jobs on the container runtime (containerd, busybox): kubectl's `create job`, restartPolicy
Never and OnFailure as the kubelet runs them, an Indexed Job reading JOB_COMPLETION_INDEX through
the downward API. On this topic's own address ranges."""

from __future__ import annotations

import pytest

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, require_module, requires
from pocketkube.testing.waits import wait_for

kubernetes = require_module("kubernetes")
from kubernetes import client, config  # noqa: E402

RANGES = {"node_ip_base": "10.216.0.0", "pod_cidr_base": "10.226.0.0/16", "service_cidr": "10.236.0.0/16",
          "lb_pool": "10.216.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-batchc-", tmp_path_factory.mktemp("images"), ["busybox"], nodes=1, **RANGES) as c:
        yield c


k = module_kubectl()


@pytest.fixture(scope="module")
def batch(cluster):
    return client.BatchV1Api(config.new_client_from_config(str(cluster.kubeconfig)))


def true_condition(batch: client.BatchV1Api, name: str, type_: str):
    status = batch.read_namespaced_job_status(name, "default").status
    return next((c for c in (status and status.conditions) or [] if c.type == type_ and c.status == "True"), None)


def test_kubectl_create_job_runs_busybox(k, batch):
    assert k.ok("create", "job", "ctr-job", "--image=busybox", "--", "sh", "-c", "echo done").strip() \
        == "job.batch/ctr-job created"
    k.ok("wait", "--for=condition=complete", "job/ctr-job", "--timeout=90s")
    assert k.ok("logs", "job/ctr-job").strip() == "done"
    job = batch.read_namespaced_job("ctr-job", "default")
    assert job.status.succeeded == 1 and job.status.completion_time is not None


def test_never_and_on_failure(batch):
    def body(name: str, policy: str, command: str) -> dict:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
            "backoffLimit": 1, "template": {"spec": {"restartPolicy": policy, "containers": [
                {"name": "c", "image": "busybox", "command": ["sh", "-c", command]}]}}}}
    batch.create_namespaced_job("default", body("ctr-never", "Never", "exit 2"))
    # Never: a new pod per failure; OnFailure: the kubelet restarts the container in place and
    # its restart reaches backoffLimit.
    batch.create_namespaced_job("default", body("ctr-onfailure", "OnFailure", "exit 1"))
    failed = wait_for(lambda: true_condition(batch, "ctr-never", "Failed"), timeout=90, what="ctr-never Failed")
    assert failed.reason == "BackoffLimitExceeded"
    assert batch.read_namespaced_job("ctr-never", "default").status.failed == 2  # two pods, each failed once
    failed = wait_for(lambda: true_condition(batch, "ctr-onfailure", "Failed"), timeout=90, what="ctr-onfailure Failed")
    assert failed.reason == "BackoffLimitExceeded"


def test_indexed_job(batch, k):
    batch.create_namespaced_job("default", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ctr-indexed"}, "spec": {
            "completions": 2, "parallelism": 2, "completionMode": "Indexed", "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": [
                    "sh", "-c", 'echo "index $JOB_COMPLETION_INDEX on $(hostname)"']}]}}}})
    wait_for(lambda: true_condition(batch, "ctr-indexed", "Complete"), timeout=90, what="Complete")
    names = k.ok("get", "pods", "-l", "batch.kubernetes.io/job-name=ctr-indexed", "-o",
                 "jsonpath={.items[*].metadata.name}").split()
    logs = sorted(k.ok("logs", name).strip() for name in names)
    assert logs == ["index 0 on ctr-indexed-0", "index 1 on ctr-indexed-1"]
