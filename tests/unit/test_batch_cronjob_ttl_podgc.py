"""CronJob, TTL-after-finished and pod GC: pure decisions, and the controllers on the FakeClient
with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from async_waits import until

from pocketkube.api import cron
from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.controllers import cronjob_plan as cplan
from pocketkube.controllers import podgc
from pocketkube.controllers.cronjob import CronJobController
from pocketkube.controllers.ttlafterfinished import TTLAfterFinishedController, expires_in
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

JOBS = BY_PLURAL[("batch", "jobs")]
CRONJOBS = BY_PLURAL[("batch", "cronjobs")]
PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
EVENTS = BY_PLURAL[("", "events")]
T0 = datetime(2026, 12, 5, 10, 0, 30, tzinfo=UTC).timestamp()


def cronjob(**spec) -> dict:
    return {"metadata": {"name": "tick", "namespace": "ns", "uid": "cj-1", "creationTimestamp": now_rfc3339(T0 - 600)},
            "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "t"}}, "spec": {"template": {"spec": {}}}}, **spec}}


def test_most_recent_and_missed():
    cj = cronjob()
    due = cplan.most_recent(cj, cron.parse("*/5 * * * *"), UTC, T0)
    assert due.scheduled == T0 - 30 and due.missed == 2 and due.next == T0 + 270
    cj["status"] = {"lastScheduleTime": now_rfc3339(T0 - 30)}
    assert cplan.most_recent(cj, cron.parse("*/5 * * * *"), UTC, T0).scheduled is None
    assert cplan.too_late(cronjob(startingDeadlineSeconds=10), T0 - 30, T0)
    assert not cplan.too_late(cronjob(startingDeadlineSeconds=60), T0 - 30, T0)


def test_job_from_template():
    job = cplan.job_from_template(cronjob(), T0 - 30, {"kind": "CronJob", "uid": "cj-1"}, UTC)
    assert job["metadata"]["name"] == f"tick-{int(T0 - 30) // 60}"
    assert job["metadata"]["labels"] == {"app": "t"}
    assert job["metadata"]["annotations"][cplan.SCHEDULED_TIMESTAMP] == "2026-12-05T10:00:00+00:00"


def test_history_limits():
    def finished(name: str, kind: str, start: int) -> dict:
        return {"metadata": {"name": name}, "status": {"startTime": now_rfc3339(T0 + start),
                                                        "conditions": [{"type": kind, "status": "True"}]}}
    jobs = [finished(f"ok{i}", "Complete", i) for i in range(5)] + [finished(f"bad{i}", "Failed", i) for i in range(3)]
    assert [j["metadata"]["name"] for j in cplan.history_to_delete(cronjob(), jobs)] == ["ok0", "ok1", "bad0", "bad1"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def cron_controller() -> AsyncIterator[tuple[FakeClient, CronJobController, Clock]]:
    clock = Clock(T0)
    # Objects are created ten minutes before the controller's "now", whatever the real time is.
    fake = FakeClient(clock=lambda: T0 - 600)
    async with controllers_on(fake, lambda informers, recorder: CronJobController(fake, informers, recorder, clock=clock),
                              component="cronjob-controller") as (c,):
        yield fake, c, clock


async def test_cronjob_creates_a_job_per_schedule_and_forbids_overlap(cron_controller):
    fake, controller, clock = cron_controller
    cj = cronjob(concurrencyPolicy="Forbid")
    del cj["metadata"]["uid"]
    cj = await fake.create(CRONJOBS, cj)
    job = await until(lambda: fake.objects(JOBS) and fake.objects(JOBS)[0], "a job")
    assert job["metadata"]["name"] == f"tick-{int(T0 - 30) // 60}"
    assert job["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    status = await until(lambda: deep_get(fake.objects(CRONJOBS)[0], "status", "active"), "status.active")
    assert status[0]["name"] == job["metadata"]["name"]
    assert fake.objects(CRONJOBS)[0]["status"]["lastScheduleTime"] == now_rfc3339(T0 - 30)
    clock.t = T0 + 300
    controller.queue.add("ns/tick")
    await until(lambda: any(e.get("reason") == "JobAlreadyActive" for e in fake.objects(EVENTS)), "Forbid")
    assert len(fake.objects(JOBS)) == 1
    done = {**job, "status": {"completionTime": now_rfc3339(T0 + 200),
                              "conditions": [{"type": "Complete", "status": "True"}]}}
    await fake.update_status(JOBS, done)
    await until(lambda: len(fake.objects(JOBS)) == 2, "the next run once the first completed")
    cjs = fake.objects(CRONJOBS)[0]["status"]
    assert cjs["lastSuccessfulTime"] == now_rfc3339(T0 + 200)
    await until(lambda: any(e.get("reason") == "SawCompletedJob" for e in fake.objects(EVENTS)), "SawCompletedJob")


async def test_cronjob_starting_deadline(cron_controller):
    fake, controller, _ = cron_controller
    cj = cronjob(startingDeadlineSeconds=10)  # the 10:00 run was due 30 s ago: too late
    del cj["metadata"]["uid"]
    await fake.create(CRONJOBS, cj)
    await until(lambda: controller.cronjob_informer.get("ns/tick"), "cached")
    await controller.sync("ns/tick")
    assert not fake.objects(JOBS)
    current = fake.objects(CRONJOBS)[0]
    await fake.update(CRONJOBS, {**current, "spec": {**current["spec"], "startingDeadlineSeconds": 60}})
    await until(lambda: fake.objects(JOBS), "a job within the deadline")


async def test_ttl_after_finished_deletes_the_job():
    fake = FakeClient()
    clock = Clock(T0)
    job = await fake.create(JOBS, {"metadata": {"name": "j", "namespace": "ns"}, "spec": {"ttlSecondsAfterFinished": 0}})
    finished = {**job, "status": {"conditions": [{"type": "Complete", "status": "True",
                                                  "lastTransitionTime": now_rfc3339(T0 - 5)}]}}
    await fake.update_status(JOBS, finished)
    assert expires_in(finished, T0) == -5 and expires_in(job, T0) is None
    async with controllers_on(fake, lambda informers, _: TTLAfterFinishedController(fake, informers, clock=clock)):
        await until(lambda: not fake.objects(JOBS), "job deleted")
        assert fake.actions_of("delete", "jobs")


def pod(name: str, phase: str = "Running", node: str = "n1", created: float = T0, **meta) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": now_rfc3339(created), **meta},
            "spec": {"nodeName": node}, "status": {"phase": phase}}


def test_podgc_decisions():
    pods = [pod("a", "Succeeded", created=T0 + 1), pod("b", "Failed", created=T0), pod("c"), pod("d", "Succeeded")]
    pods[0]["status"]["reason"] = "Evicted"
    assert [p["metadata"]["name"] for p in podgc.terminated_to_delete(pods, 1)] == ["a", "b"]
    assert podgc.terminated_to_delete(pods, 0) == []
    assert podgc.orphaned(pods, {"n2": {}}).keys() == {"n1"}
    nodes = {"n1": {"spec": {"taints": [{"key": podgc.OUT_OF_SERVICE, "effect": "NoExecute"}]},
                    "status": {"conditions": [{"type": "Ready", "status": "False"}]}}}
    terminating = pod("t", deletionTimestamp=now_rfc3339(T0))
    unscheduled = pod("u", node="", deletionTimestamp=now_rfc3339(T0))
    assert {p["metadata"]["name"] for p in podgc.terminating_to_delete([terminating, unscheduled, pods[2]], nodes)} \
        == {"t", "u"}
    nodes["n1"]["status"]["conditions"][0]["status"] = "True"
    assert [p["metadata"]["name"] for p in podgc.terminating_to_delete([terminating], nodes)] == []


async def test_podgc_controller_threshold_and_orphans():
    fake = FakeClient()
    await fake.create(NODES, {"metadata": {"name": "n1"}})
    for i in range(3):
        await fake.create(PODS, {"metadata": {"name": f"done{i}", "namespace": "ns"}, "spec": {"nodeName": "n1"}})
    for p in fake.objects(PODS):
        await fake.update_status(PODS, {**p, "status": {"phase": "Succeeded"}})
    await fake.create(PODS, {"metadata": {"name": "orphan", "namespace": "ns"}, "spec": {"nodeName": "gone"}})
    async with controllers_on(fake, lambda informers, _: podgc.PodGCController(
            fake, informers, terminated_pod_threshold=1, period=0.01, quarantine=0.0)):
        await until(lambda: len(fake.objects(PODS)) == 1, "two terminated pods and the orphan deleted")
        assert fake.objects(PODS)[0]["status"]["phase"] == "Succeeded"
