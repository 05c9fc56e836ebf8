"""The Job controller against the FakeClient: a fake "kubelet" finishes pods by hand."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import pytest
from async_waits import until

from pocketkube.api import errors
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers import job_plan as plan
from pocketkube.controllers.job import JobController
from pocketkube.registry.batch import jobs as job_strategy
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
JOBS = BY_PLURAL[("batch", "jobs")]
EVENTS = BY_PLURAL[("", "events")]


@pytest.fixture
async def controller() -> AsyncIterator[FakeClient]:
    fake = FakeClient()
    async with controllers_on(fake, lambda informers, recorder: JobController(
            fake, informers, recorder, workers=2, backoff_base=0.01, backoff_max=0.05), component="job-controller"):
        yield fake


async def create_job(fake: FakeClient, name: str = "pi", **spec) -> dict:
    job = {"metadata": {"name": name, "namespace": "ns", "uid": "pending"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}, **spec}}
    created = await fake.create(JOBS, job)  # the FakeClient assigns the uid; default with it, as the registry does
    job_strategy.default(created)
    assert job_strategy.validate(created) == []
    return await fake.update(JOBS, created)


async def finish(fake: FakeClient, pod: dict, exit_code: int) -> None:
    p = copy.deepcopy(pod)
    p["status"] = {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
        {"name": "c", "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "finishedAt": now_rfc3339()}}}]}
    await fake.update_status(PODS, p)


def running(fake: FakeClient) -> list[dict]:
    return [p for p in fake.objects(PODS) if plan.is_active(p)]


def job_of(fake: FakeClient, name: str = "pi") -> dict:
    return next(j for j in fake.objects(JOBS) if j["metadata"]["name"] == name)


def condition_types(job: dict) -> list[str]:
    return [c["type"] for c in deep_get(job, "status", "conditions", default=None) or [] if c["status"] == "True"]


def reasons(fake: FakeClient) -> list[str]:
    return [e.get("reason") for e in fake.objects(EVENTS)]


async def test_completions_with_parallelism(controller):
    fake = controller
    await create_job(fake, completions=3, parallelism=2)
    for _ in range(3):
        pods = await until(lambda: running(fake), "a running pod")
        assert len(pods) <= 2
        for p in pods:
            assert plan.TRACKING_FINALIZER in p["metadata"]["finalizers"]
            assert p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
        await finish(fake, pods[0], 0)
        await until(lambda: deep_get(job_of(fake), "status", "succeeded", default=0) >= _ + 1 or
                    "Complete" in condition_types(job_of(fake)), "counted")
    job = await until(lambda: "Complete" in condition_types(job_of(fake)) and job_of(fake), "Complete")
    assert condition_types(job) == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["succeeded"] == 3 and job["status"]["completionTime"]
    assert job["status"]["uncountedTerminatedPods"] == {}
    assert job["status"]["ready"] == 0 and job["status"]["terminating"] == 0
    assert all(not p["metadata"].get("finalizers") for p in fake.objects(PODS))
    await until(lambda: "Completed" in reasons(fake) and "SuccessfulCreate" in reasons(fake), "events")


async def test_backoff_limit_fails_the_job(controller):
    fake = controller
    await create_job(fake, backoffLimit=1)
    for _ in range(2):
        pod = (await until(lambda: running(fake), "a pod"))[0]
        await finish(fake, pod, 1)
    job = await until(lambda: "Failed" in condition_types(job_of(fake)) and job_of(fake), "Failed")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert "FailureTarget" in condition_types(job) and job["status"]["failed"] == 2
    await until(lambda: "BackoffLimitExceeded" in reasons(fake), "event")


async def test_indexed_job(controller):
    fake = controller
    await create_job(fake, completions=3, parallelism=3, completionMode="Indexed")
    pods = await until(lambda: len(running(fake)) == 3 and running(fake), "three pods")
    indexes = sorted(plan.completion_index(p) for p in pods)
    assert indexes == [0, 1, 2]
    for p in pods:
        i = plan.completion_index(p)
        assert p["metadata"]["name"].startswith(f"pi-{i}-") and p["spec"]["hostname"] == f"pi-{i}"
        assert p["metadata"]["labels"][plan.COMPLETION_INDEX] == str(i)
        assert {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in p["spec"]["containers"][0]["env"]
    failing = next(p for p in pods if plan.completion_index(p) == 1)
    await finish(fake, failing, 3)
    replacement = await until(lambda: [p for p in running(fake) if plan.completion_index(p) == 1], "index 1 again")
    for p in [*[p for p in pods if p is not failing], replacement[0]]:
        await finish(fake, fake._stored(PODS, "ns", p["metadata"]["name"]), 0)
    job = await until(lambda: "Complete" in condition_types(job_of(fake)) and job_of(fake), "Complete")
    assert job["status"]["completedIndexes"] == "0-2" and job["status"]["failed"] == 1


async def test_pod_failure_policy_fail_job(controller):
    fake = controller
    await create_job(fake, podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})
    pod = (await until(lambda: running(fake), "a pod"))[0]
    await finish(fake, pod, 42)
    job = await until(lambda: "Failed" in condition_types(job_of(fake)) and job_of(fake), "Failed")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"].startswith("Container c for pod ns/pi-") and "exit code 42" in failed["message"]


async def test_suspend_and_resume(controller):
    fake = controller
    await create_job(fake, suspend=True)
    job = await until(lambda: "Suspended" in condition_types(job_of(fake)) and job_of(fake), "Suspended")
    assert not fake.objects(PODS) and "startTime" not in job["status"]
    await fake.update(JOBS, {**job, "spec": {**job["spec"], "suspend": False}})
    await until(lambda: running(fake), "a pod after resume")
    await until(lambda: "Resumed" in reasons(fake), "Resumed event")


async def test_deleted_job_releases_its_pods(controller):
    fake = controller
    job = await create_job(fake, parallelism=2, completions=2)
    pods = await until(lambda: len(running(fake)) == 2 and running(fake), "two pods")
    await fake.delete(JOBS, "ns", job["metadata"]["name"])
    for p in pods:  # the garbage collector's part
        await fake.delete(PODS, "ns", p["metadata"]["name"])
    await until(lambda: not fake.objects(PODS), "pods gone once their finalizer is removed")


async def test_active_deadline(controller):
    fake = controller
    await create_job(fake, activeDeadlineSeconds=0)
    job = await until(lambda: "Failed" in condition_types(job_of(fake)) and job_of(fake), "Failed", timeout=5)
    assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"


def test_completed_indexes_format():
    assert plan.format_indexes({1, 3, 4, 5, 7}) == "1,3-5,7"
    assert plan.format_indexes({0, 1}) == "0,1"
    assert plan.parse_indexes("1,3-5,7,x", 6) == {1, 3, 4, 5}


def test_backoff_doubles_and_caps():
    def failed(at: float) -> dict:
        return {"status": {"phase": "Failed", "containerStatuses": [
            {"state": {"terminated": {"finishedAt": now_rfc3339(at)}}}]}}
    base = 1_000_000.0
    assert plan.backoff_remaining([], base) == 0
    assert plan.backoff_remaining([failed(base)], base) == 10
    assert plan.backoff_remaining([failed(base - 100), failed(base)], base) == 20
    assert plan.backoff_remaining([failed(base - i) for i in range(10)], base) == 360
    ok = {"status": {"phase": "Succeeded", "containerStatuses": [
        {"state": {"terminated": {"finishedAt": now_rfc3339(base - 1)}}}]}}
    assert plan.backoff_remaining([failed(base - 5), ok, failed(base)], base) == 10


def test_restarts_count_toward_backoff_limit_with_on_failure():
    job = {"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}}
    pod = {"status": {"phase": "Running", "containerStatuses": [{"restartCount": 2}]}}
    assert plan.restarts_exceed_limit(job, [pod])
    pod["status"]["containerStatuses"][0]["restartCount"] = 1
    assert not plan.restarts_exceed_limit(job, [pod])


async def test_foreground_deleted_job_releases_terminating_pods(controller):
    fake = controller
    job = await create_job(fake)
    pod = (await until(lambda: running(fake), "a pod"))[0]
    current = job_of(fake)
    await fake.update(JOBS, {**current, "metadata": {**current["metadata"], "finalizers": ["foregroundDeletion"]}})
    await fake.delete(JOBS, "ns", job["metadata"]["name"])  # stays: its foregroundDeletion finalizer
    await fake.delete(PODS, "ns", pod["metadata"]["name"])  # the garbage collector's part
    await until(lambda: not fake.objects(PODS), "the pod released while its Job is being deleted")


async def test_a_finished_pod_is_replaced_before_its_accounting_writes(controller):
    # Upstream's syncJob runs manageJob before trackJobStatusAndRemoveFinalizers: the next pod
    # does not wait for the uncounted-pods status write and the finalizer patch.
    fake = controller
    await create_job(fake, completions=2, parallelism=1)
    first = (await until(lambda: running(fake), "a running pod"))[0]
    mark = len(fake.actions)
    await finish(fake, first, 0)
    await until(lambda: len(fake.objects(PODS)) == 2 and not any(
        p["metadata"].get("finalizers") for p in fake.objects(PODS) if p["metadata"]["uid"] == first["metadata"]["uid"]),
        "replaced and released")
    after = [(a.verb, a.resource, a.subresource) for a in fake.actions[mark:]]
    create = after.index(("create", "pods", ""))
    assert create < after.index(("patch", "pods", ""))  # the finalizer's removal
    assert create < after.index(("update", "jobs", "status"))


async def test_a_failed_create_does_not_hold_back_the_finished_pods_accounting(controller):
    fake = controller
    await create_job(fake, completions=2, parallelism=1)
    first = (await until(lambda: running(fake), "a running pod"))[0]
    await until(lambda: "SuccessfulCreate" in reasons(fake), "the first pod's event")
    fake.fail_next("create", errors.ServiceUnavailable("try later"))
    await finish(fake, first, 0)
    job = await until(lambda: deep_get(job_of(fake), "status", "succeeded", default=0) == 1 and job_of(fake),
                      "the finished pod counted")
    assert not job["status"].get("uncountedTerminatedPods")
    await until(lambda: "FailedCreate" in reasons(fake), "FailedCreate")
    # The sync's error requeues it: the replacement comes after the back-off.
    await until(lambda: len(running(fake)) == 1, "the replacement")


def test_a_cached_job_our_own_write_replaced_is_stale():
    superseded: dict[str, set[str]] = {}
    job = {"metadata": {"name": "pi", "namespace": "ns", "resourceVersion": "7"}}
    assert not plan.is_stale(job, superseded, "ns/pi")
    superseded["ns/pi"] = {"7", "8"}  # two writes of one sync: 7 -> 8 -> 9
    assert plan.is_stale(job, superseded, "ns/pi")
    assert plan.is_stale({"metadata": {"resourceVersion": "8"}}, superseded, "ns/pi")
    assert not plan.is_stale({"metadata": {"resourceVersion": "9"}}, superseded, "ns/pi")  # caught up
    assert "ns/pi" not in superseded

