"""CronJob controller: create a Job at each scheduled time (pkg/controller/cronjob, controllerv2).

sync(key) → reconcile status.active with the Jobs the CronJob owns (SawCompletedJob,
MissingJob, UnexpectedJob, lastSuccessfulTime) → remove finished Jobs beyond the history limits
→ unless suspended: find the most recent scheduled time not yet run; skip it when it is past
startingDeadlineSeconds (MissSchedule) or when a run is active and concurrencyPolicy is Forbid
(JobAlreadyActive); with Replace delete the active Jobs; create `<name>-<minutes>` and record
it in status.active and lastScheduleTime → requeue at the next scheduled time.
The clock is injectable, so tests step through schedules without waiting.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

from pocketkube.api import cron, errors
from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers import cronjob_plan as plan
from pocketkube.controllers.base import Controller, SharedInformers, cached_controller, owner_reference

__all__ = ["CRONJOBS", "CronJobController"]

log = logging.getLogger(__name__)

JOBS = BY_PLURAL[("batch", "jobs")]
CRONJOBS = BY_PLURAL[("batch", "cronjobs")]


class CronJobController(Controller):
    name = "cronjob-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 2,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.cronjob_informer = informers.get(CRONJOBS)
        self.job_informer = informers.get(JOBS)
        super().__init__([self.cronjob_informer, self.job_informer], workers=workers)
        self.recorder = recorder
        self.clock = clock
        self.cronjob_informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.job_informer.add_handlers(self._on_job, lambda old, new: self._on_job(new), self._on_job)

    def _on_job(self, job: dict) -> None:
        owner = cached_controller(self.cronjob_informer, job, "CronJob")
        if owner is not None:
            self.enqueue(owner)

    async def sync(self, key: str) -> None:
        cj = self.cronjob_informer.get(key)
        if cj is None:
            return
        uid = cj["metadata"]["uid"]
        jobs = [j for j in self.job_informer.list() if j["metadata"].get("namespace") == cj["metadata"]["namespace"]
                and (controller_ref(j) or {}).get("uid") == uid]
        status = copy.deepcopy(cj.get("status") or {})
        await self._reconcile_active(cj, jobs, status)
        await self._clean_history(cj, jobs)
        delay = None
        if not cj["metadata"].get("deletionTimestamp") and not deep_get(cj, "spec", "suspend"):
            delay = await self._schedule(cj, status)
        if status != (cj.get("status") or {}):
            await self.client.update_status(CRONJOBS, {**cj, "status": status})
        if delay is not None:
            self.queue.add_after(key, delay)

    async def _reconcile_active(self, cj: dict, jobs: list[dict], status: dict) -> None:
        active = list(status.get("active") or [])
        active_uids = {a.get("uid") for a in active}
        for j in jobs:
            m = j["metadata"]
            finished = plan.finished_type(j)
            if m["uid"] not in active_uids and finished is None:
                self.recorder.event(cj, WARNING, "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: {m['name']}", res=CRONJOBS)
            elif m["uid"] in active_uids and finished is not None:
                active = [a for a in active if a.get("uid") != m["uid"]]
                self.recorder.event(cj, NORMAL, "SawCompletedJob",
                                    f"Saw completed job: {m['name']}, condition: {finished}", res=CRONJOBS)
            if finished == "Complete":
                done = deep_get(j, "status", "completionTime")
                last = status.get("lastSuccessfulTime")
                if done and (last is None or (parse_rfc3339(done) or 0) > (parse_rfc3339(last) or 0)):
                    status["lastSuccessfulTime"] = done
        present = {j["metadata"]["uid"] for j in jobs}
        for ref in list(active):
            if ref.get("uid") in present:
                continue
            try:  # the cache may be behind: ask the API server before calling it missing
                live = await self.client.get(JOBS, ref.get("namespace", ""), ref.get("name", ""))
                if live["metadata"].get("uid") == ref.get("uid"):
                    continue
            except errors.NotFound:
                pass
            self.recorder.event(cj, NORMAL, "MissingJob", f"Active job went missing: {ref.get('name')}", res=CRONJOBS)
            active = [a for a in active if a.get("uid") != ref.get("uid")]
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _clean_history(self, cj: dict, jobs: list[dict]) -> None:
        for j in plan.history_to_delete(cj, jobs):
            await self._delete_job(cj, j)

    async def _delete_job(self, cj: dict, job: dict) -> None:
        m = job["metadata"]
        try:
            await self.client.delete(JOBS, m["namespace"], m["name"], propagation="Background",
                                     preconditions={"uid": m["uid"]})
        except errors.NotFound:
            return
        self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {m['name']}", res=CRONJOBS)

    async def _schedule(self, cj: dict, status: dict) -> float | None:
        """Start the due Job, if any; the seconds until the next look (None: never)."""
        now = self.clock()
        try:
            zone = plan.zone_of(cj)
        except cron.CronError as e:
            self.recorder.event(cj, WARNING, "UnknownTimeZone",
                                f"invalid timeZone: {deep_get(cj, 'spec', 'timeZone')!r}: {e}", res=CRONJOBS)
            return None
        schedule_text = deep_get(cj, "spec", "schedule", default="")
        try:
            schedule = cron.parse(schedule_text)
        except cron.CronError as e:
            self.recorder.event(cj, WARNING, "UnparseableSchedule",
                                f'unparseable schedule: "{schedule_text}" : {e}', res=CRONJOBS)
            return None
        due = plan.most_recent({**cj, "status": status}, schedule, zone, now)
        until_next = None if due.next is None else max(0.0, due.next - now) + 0.1
        if due.missed > plan.MAX_MISSED:
            self.recorder.event(cj, WARNING, "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew", res=CRONJOBS)
        if due.scheduled is None:
            return until_next
        if plan.too_late(cj, due.scheduled, now):
            self.recorder.event(cj, WARNING, "MissSchedule",
                                f"Missed scheduled time to start a job: {plan.rfc1123z(due.scheduled)}", res=CRONJOBS)
            return until_next
        name = plan.job_name(cj["metadata"]["name"], due.scheduled)
        active = status.get("active") or []
        if any(a.get("name") == name for a in active):
            return until_next
        policy = deep_get(cj, "spec", "concurrencyPolicy", default="Allow")
        if policy == "Forbid" and active:
            self.recorder.event(cj, NORMAL, "JobAlreadyActive", "Not starting job because prior execution is running "
                                "and concurrency policy is Forbid", res=CRONJOBS)
            return until_next
        if policy == "Replace":
            for ref in active:
                job = self.job_informer.get(f"{ref.get('namespace')}/{ref.get('name')}")
                if job is not None:
                    await self._delete_job(cj, job)
            status.pop("active", None)
        job = plan.job_from_template(cj, due.scheduled, owner_reference(cj, CRONJOBS), zone)
        try:
            created = await self.client.create(JOBS, job, cj["metadata"]["namespace"])
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {name}", res=CRONJOBS)
        except errors.AlreadyExists:
            created = await self.client.get(JOBS, cj["metadata"]["namespace"], name)
            if (controller_ref(created) or {}).get("uid") != cj["metadata"]["uid"]:
                return until_next
        except errors.ApiError as e:
            self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {e}", res=CRONJOBS)
            raise
        if plan.finished_type(created) is None:
            status["active"] = [*(status.get("active") or []), plan.object_reference(created)]
        status["lastScheduleTime"] = plan.timestamp(due.scheduled)
        return until_next
