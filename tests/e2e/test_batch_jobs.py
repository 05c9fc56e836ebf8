"""Jobs and CronJobs on a real (process-runtime) cluster: kubectl 1.32 and 1.37 generator
commands (protobuf bodies), tables, and the official Python client."""

from __future__ import annotations

import pytest

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import KUBECTL, require_module, requires
from pocketkube.testing.waits import wait_for

kubernetes = require_module("kubernetes")
from kubernetes import client, config  # noqa: E402

KUBECTL_PARAMS = sorted(kubectl_binaries()) or [pytest.param("none", marks=requires(False, KUBECTL))]
BAD_JOB = """apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  template:
    spec:
      restartPolicy: Always
      containers: [{name: c, image: busybox, command: ["true"]}]
"""


@pytest.fixture(scope="module")
def cluster():
    # Process pods on loopback ranges of this topic's own (10.216/226/236 in container mode).
    with running_cluster("pk-batch-", nodes=1, node_ip_base="127.0.216.0", pod_cidr_base="127.226.0.0/16",
                         service_cidr="127.236.0.0/16", lb_pool="127.216.1.0/24") as c:
        yield c


@pytest.fixture(params=KUBECTL_PARAMS)
def k(request, cluster, tmp_path):
    kc = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig, cwd=tmp_path)
    kc.version = request.param.replace("kubectl-", "").replace(".", "")
    yield kc
    kc.close()


@pytest.fixture(scope="module")
def api(cluster):
    return config.new_client_from_config(str(cluster.kubeconfig))


def table(k: Kubectl, *args: str) -> list[list[str]]:
    lines = k.ok("get", *args).strip().splitlines()
    return [line.split("  ") and [c for c in line.split("  ") if c.strip()] for line in lines]


def test_create_job_completes(k):
    name = f"job-{k.version}"
    assert k.ok("create", "job", name, "--image=busybox", "--", "true").strip() == f"job.batch/{name} created"
    k.ok("wait", "--for=condition=complete", f"job/{name}", "--timeout=45s")
    rows = table(k, "job", name)
    assert [c.strip() for c in rows[0]] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert [c.strip() for c in rows[1][:3]] == [name, "Complete", "1/1"]
    pods = k.ok("get", "pods", "-l", f"batch.kubernetes.io/job-name={name}", "-o",
                "jsonpath={.items[*].status.phase}").split()
    assert pods == ["Succeeded"]
    k.ok("delete", "job", name)


def test_create_cronjob_and_job_from_it(k):
    cj, job = f"cj-{k.version}", f"from-{k.version}"
    out = k.ok("create", "cronjob", cj, "--image=busybox", "--schedule=0 0 1 1 *", "--", "true")
    assert out.strip() == f"cronjob.batch/{cj} created"
    rows = table(k, "cronjob", cj)
    assert [c.strip() for c in rows[0]] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    assert [c.strip() for c in rows[1][:6]] == [cj, "0 0 1 1 *", "<none>", "False", "0", "<none>"]
    assert k.ok("create", "job", job, f"--from=cronjob/{cj}").strip() == f"job.batch/{job} created"
    k.ok("wait", "--for=condition=complete", f"job/{job}", "--timeout=45s")
    owner = k.ok("get", "job", job, "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.annotations}")
    assert owner.startswith("CronJob/") and "cronjob.kubernetes.io/instantiate" in owner
    k.ok("delete", "cronjob", cj)
    wait_for(lambda: k.run("get", "job", job).returncode != 0, timeout=30, what="the job goes with its cronjob")


def test_restart_policy_always_is_rejected(k):
    err = k.run("create", "-f", "-", input=BAD_JOB).stderr
    assert ('The Job "bad" is invalid: spec.template.spec.restartPolicy: Required value: '
            'valid values: "OnFailure", "Never"') in err, err


def job_body(name: str, command: list[str], **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox", "command": command}]}}, **spec}}


def condition(batch: client.BatchV1Api, name: str, type_: str):
    job = batch.read_namespaced_job_status(name, "default")
    return next((c for c in (job.status and job.status.conditions) or [] if c.type == type_ and c.status == "True"), None)


def test_failing_job_hits_backoff_limit(api):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job("default", job_body("py-fails", ["false"], backoffLimit=0))
    failed = wait_for(lambda: condition(batch, "py-fails", "Failed"), timeout=40, what="Failed")
    assert failed.reason == "BackoffLimitExceeded"
    job = batch.read_namespaced_job("py-fails", "default")
    assert job.status.failed == 1 and job.status.succeeded is None


def test_indexed_job_gets_its_index(api):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job("default", job_body(
        "py-indexed", ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"], completions=3, parallelism=3,
        completionMode="Indexed", ttlSecondsAfterFinished=5))
    wait_for(lambda: condition(batch, "py-indexed", "Complete"), timeout=40, what="Complete")
    assert batch.read_namespaced_job("py-indexed", "default").status.completed_indexes == "0-2"
    pods = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=py-indexed").items
    logs = sorted(core.read_namespaced_pod_log(p.metadata.name, "default").strip() for p in pods)
    assert logs == ["index=0", "index=1", "index=2"]
    # ttlSecondsAfterFinished: the Job and, through the garbage collector, its pods go.
    wait_for(lambda: not [j for j in batch.list_namespaced_job("default").items if j.metadata.name == "py-indexed"],
             timeout=30, what="the TTL controller deletes the job")


def test_cronjob_schedules_jobs(api):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_cron_job("default", {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "py-every"},
        "spec": {"schedule": "@every 2s", "successfulJobsHistoryLimit": 1, "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox",
                                                                   "command": ["true"]}]}}}}}})
    wait_for(lambda: batch.read_namespaced_cron_job("py-every", "default").status.last_successful_time,
             timeout=40, what="a scheduled job succeeded")
    cj = batch.read_namespaced_cron_job("py-every", "default")
    assert cj.status.last_schedule_time is not None
    jobs = [j for j in batch.list_namespaced_job("default").items if j.metadata.name.startswith("py-every-")]
    assert jobs and all(j.metadata.owner_references[0].uid == cj.metadata.uid for j in jobs)
    batch.patch_namespaced_cron_job("py-every", "default", {"spec": {"suspend": True}})
    batch.delete_namespaced_cron_job("py-every", "default", propagation_policy="Foreground")


def test_on_failure_restarts_count_toward_backoff_limit(api):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    body = job_body("py-onfailure", ["false"], backoffLimit=1)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    batch.create_namespaced_job("default", body)
    # The kubelet restarts the container in place (one pod); its first restart reaches the limit.
    failed = wait_for(lambda: condition(batch, "py-onfailure", "Failed"), timeout=45, what="Failed")
    assert failed.reason == "BackoffLimitExceeded"
    # Its one pod, still running, was deleted (counted as failed) and is gone with its finalizer.
    assert batch.read_namespaced_job("py-onfailure", "default").status.failed == 1
    wait_for(lambda: not core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=py-onfailure")
             .items, timeout=30, what="the pod deleted")


PI_JOB = """apiVersion: batch/v1
kind: Job
metadata: {name: NAME}
spec:
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
        command: ["sh", "-c", "echo 3.14159"]
"""


def test_apply_a_tutorial_job_and_describe_it(k):
    name = f"pi-{k.version}"
    manifest = PI_JOB.replace("NAME", name)
    assert k.ok("apply", "-f", "-", input=manifest).strip() == f"job.batch/{name} created"
    k.ok("wait", "--for=condition=complete", f"job/{name}", "--timeout=45s")
    assert k.ok("apply", "-f", "-", input=manifest).strip() == f"job.batch/{name} unchanged"
    assert k.ok("logs", f"job/{name}").strip() == "3.14159"
    described = k.ok("describe", "job", name)
    assert "Pods Statuses:" in described and "1 Succeeded" in described and "Completed" in described, described
    k.ok("delete", "job", name)
