"""Job controller: run pods until enough of them succeed (pkg/controller/job of 1.32).

sync(key) → the Job's pods from the cache → count newly finished pods through
status.uncountedTerminatedPods and the tracking finalizer → decide whether the Job has failed
(podFailurePolicy FailJob, backoffLimit, container restarts under OnFailure,
activeDeadlineSeconds) or succeeded (FailureTarget/SuccessCriteriaMet first, Failed/Complete
once no pod is left terminating) → otherwise suspend/resume, and create pods (after the failure
back-off) or delete extra ones → write status and Events. The decisions are in job_plan.py.

Pods whose Job is gone or finished lose their finalizer (key "pod:<ns>/<name>"), so deleting a
Job cascades through the garbage collector without pods stuck on the finalizer.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.informer import object_key
from pocketkube.client.interface import STRATEGIC_PATCH, Client
from pocketkube.controllers import job_plan as plan
from pocketkube.controllers.base import (
    Controller,
    SharedInformers,
    cached_controller,
    owner_reference,
    split_key,
)
from pocketkube.controllers.expectations import Expectations
from pocketkube.controllers.replicaset import slow_start_batch

__all__ = ["JOBS", "JobController"]

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
JOBS = BY_PLURAL[("batch", "jobs")]
_POD_KEY = "pod:"


class JobController(Controller):
    name = "job-controller"

    def __init__(self, client: Client, informers: SharedInformers, recorder: EventRecorder, *, workers: int = 5,
                 clock: Callable[[], float] = time.time, backoff_base: float = plan.DEFAULT_BACKOFF,
                 backoff_max: float = plan.MAX_BACKOFF) -> None:
        self.client = client
        self.job_informer = informers.get(JOBS)
        self.pod_informer = informers.get(PODS)
        super().__init__([self.job_informer, self.pod_informer], workers=workers)
        self.recorder = recorder
        self.expectations = Expectations()
        # Per Job key, the resourceVersions our own status writes replaced: a cached Job still at
        # one of them is older than what we wrote, and acting on it (pods are created before any
        # write, as upstream does) could replace pods its newer status already gave up on.
        self._superseded: dict[str, set[str]] = {}
        self.clock = clock
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.watch_own_kind(self.job_informer, self._on_job_delete)
        self.pod_informer.add_handlers(self._on_pod_add, lambda old, new: self._on_pod(new), self._on_pod_delete)

    # ---- handlers ----

    def _on_job_delete(self, job: dict) -> None:
        self.expectations.delete(object_key(job))
        self._superseded.pop(object_key(job), None)
        for pod in self.pod_informer.list():
            if (controller_ref(pod) or {}).get("uid") == job["metadata"].get("uid") and plan.has_finalizer(pod):
                self.queue.add(_POD_KEY + object_key(pod))

    def _on_pod(self, pod: dict) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return
        job = cached_controller(self.job_informer, pod, "Job")
        if job is None:
            if plan.has_finalizer(pod):
                self.queue.add(_POD_KEY + object_key(pod))
            return
        self.enqueue(job)

    def _on_pod_add(self, pod: dict) -> None:
        job = cached_controller(self.job_informer, pod, "Job")
        if job is not None:
            self.expectations.creation_observed(object_key(job))
        self._on_pod(pod)

    def _on_pod_delete(self, pod: dict) -> None:
        job = cached_controller(self.job_informer, pod, "Job")
        if job is not None:
            self.enqueue(job)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        if key.startswith(_POD_KEY):
            await self._release_orphan(key[len(_POD_KEY):])
            return
        job = self.job_informer.get(key)
        if job is None:
            self.expectations.delete(key)
            return
        if plan.is_stale(job, self._superseded, key):
            return  # our newer write's watch event syncs it again
        namespace, _ = split_key(key)
        uid = job["metadata"]["uid"]
        pods = [p for p in self.pod_informer.list() if p["metadata"].get("namespace") == namespace
                and (controller_ref(p) or {}).get("uid") == uid]
        if plan.is_finished(job):
            await self._remove_finalizers([p for p in pods if plan.has_finalizer(p)])
            return
        if job["metadata"].get("deletionTimestamp"):
            # A foreground delete waits for the pods, and they for their finalizer: release the
            # ones being deleted or done (the Job's counts no longer matter).
            await self._remove_finalizers([p for p in pods if plan.has_finalizer(p) and (
                p["metadata"].get("deletionTimestamp") or plan.phase(p) in ("Succeeded", "Failed"))])
            return
        await self._sync_job(key, job, pods)

    async def _sync_job(self, key: str, job: dict, pods: list[dict]) -> None:
        now = self.clock()
        status = copy.deepcopy(job.get("status") or {})
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        unc_s, unc_f = list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or [])
        known = set(unc_s) | set(unc_f)
        fail_message: str | None = None
        ignored: list[dict] = []
        for p in pods:
            if not plan.has_finalizer(p) or p["metadata"]["uid"] in known:
                continue
            if plan.phase(p) == "Succeeded":
                unc_s.append(p["metadata"]["uid"])
            elif plan.is_failed(p, job):
                match = plan.match_pod_failure_policy(job, p) if plan.phase(p) == "Failed" else None
                if match is not None and match[0] == "Ignore":
                    ignored.append(p)
                    continue
                if match is not None and match[0] == "FailJob" and fail_message is None:
                    fail_message = match[1]
                unc_f.append(p["metadata"]["uid"])
        indexed = deep_get(job, "spec", "completionMode") == "Indexed"
        completions = deep_get(job, "spec", "completions") or 0
        done = plan.parse_indexes(status.get("completedIndexes"), completions) if indexed else set()
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        for u in unc_s:
            idx = plan.completion_index(by_uid[u]) if u in by_uid else None
            if idx is not None and idx < completions:
                done.add(idx)
        if indexed:
            status["completedIndexes"] = plan.format_indexes(done)
        succeeded, failed = (status.get("succeeded") or 0) + len(unc_s), (status.get("failed") or 0) + len(unc_f)
        active = [p for p in pods if plan.is_active(p)]
        terminating = [p for p in pods if plan.is_terminating(p)]
        finished = self._finished_condition(job, active, succeeded, failed, done, fail_message, now)
        created = deleted = 0
        manage_error: errors.ApiError | None = None
        if finished is None and not deep_get(job, "spec", "suspend"):
            # Replacements first, as upstream's syncJob (manageJob before the status and finalizer
            # writes): a pod that just finished is replaced without waiting for two API writes, and
            # a failed create does not hold the finished pods' accounting back.
            try:
                created, deleted = await self._manage(key, job, pods, active, succeeded, done, now)
            except errors.ApiError as e:
                manage_error = e
        if (unc_s, unc_f) != (uncounted.get("succeeded") or [], uncounted.get("failed") or []):
            # Step 1: record the finished pods before their finalizers go, so none is counted twice.
            uncounted.update(succeeded=unc_s, failed=unc_f)
            job = await self._write_status(job, status)
            status = copy.deepcopy(job["status"])
        # Step 2: remove the finalizers; step 3: move what was released into the counters.
        removable = [by_uid[u] for u in unc_s + unc_f if u in by_uid and plan.has_finalizer(by_uid[u])] + ignored
        released = await self._remove_finalizers(removable)
        gone = {u for u in unc_s + unc_f if u not in by_uid or not plan.has_finalizer(by_uid[u]) or u in released}
        prior_s, prior_f = status.get("succeeded") or 0, status.get("failed") or 0
        status["succeeded"] = prior_s + sum(u in gone for u in unc_s)
        status["failed"] = prior_f + sum(u in gone for u in unc_f)
        status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", [u for u in unc_s if u not in gone]),
                                                                ("failed", [u for u in unc_f if u not in gone])) if v}
        conditions = status.setdefault("conditions", [])
        if finished is not None:
            plan.ensure_condition(conditions, finished)  # FailureTarget or SuccessCriteriaMet
            deleted = await self._delete_pods(job, active)
            if not status["uncountedTerminatedPods"] and not terminating and not active:
                final = {"FailureTarget": "Failed", "SuccessCriteriaMet": "Complete"}[finished["type"]]
                reason, message = finished.get("reason", ""), finished.get("message", "")
                plan.ensure_condition(conditions, plan.new_condition(final, "True", reason, message, now))
                if final == "Complete":
                    status["completionTime"] = now_rfc3339(now)
                    self.recorder.event(job, NORMAL, "Completed", "Job completed", res=JOBS)
                else:
                    self.recorder.event(job, WARNING, reason, message, res=JOBS)
        elif deep_get(job, "spec", "suspend"):
            deleted = await self._delete_pods(job, active)
            if plan.ensure_condition(conditions, plan.new_condition("Suspended", "True", "JobSuspended",
                                                                    "Job suspended", now)):
                self.recorder.event(job, NORMAL, "Suspended", "Job suspended", res=JOBS)
        else:
            if plan.is_true(job, "Suspended"):
                plan.ensure_condition(conditions, plan.new_condition("Suspended", "False", "JobResumed",
                                                                     "Job resumed", now))
                self.recorder.event(job, NORMAL, "Resumed", "Job resumed", res=JOBS)
                status["startTime"] = now_rfc3339(now)
            if not status.get("startTime"):
                status["startTime"] = now_rfc3339(now)
            deadline = deep_get(job, "spec", "activeDeadlineSeconds")
            start = parse_rfc3339(status.get("startTime"))
            if deadline is not None and start is not None:
                self.queue.add_after(key, max(0.0, start + deadline - now) + 0.05)
        if not conditions:
            del status["conditions"]
        status["active"] = len(active) + created - deleted
        status["ready"] = sum(plan.is_ready(p) for p in active)
        status["terminating"] = len(terminating) + deleted
        for k in ("succeeded", "failed"):
            if not status.get(k):
                status.pop(k, None)
        if not status["active"]:
            del status["active"]
        await self._write_status(job, status)
        if manage_error is not None:
            raise manage_error  # retried with the queue's back-off

    def _finished_condition(self, job: dict, active: list[dict], succeeded: int, failed: int, done: set[int],
                            fail_message: str | None, now: float) -> dict | None:
        """The terminal condition to reach: an interim one (FailureTarget, SuccessCriteriaMet) when
        first decided, the final one (Failed, Complete) when the interim one is already set."""
        for interim in ("FailureTarget", "SuccessCriteriaMet"):
            c = plan.condition(job, interim)
            if c is not None and c.get("status") == "True":
                return c
        limit = deep_get(job, "spec", "backoffLimit", default=6)
        if fail_message is not None:
            return plan.new_condition("FailureTarget", "True", plan.REASON_POLICY, fail_message, now)
        if failed > limit or plan.restarts_exceed_limit(job, active):
            return plan.new_condition("FailureTarget", "True", plan.REASON_BACKOFF, plan.MSG_BACKOFF, now)
        if plan.past_active_deadline(job, now):
            return plan.new_condition("FailureTarget", "True", plan.REASON_DEADLINE, plan.MSG_DEADLINE, now)
        if plan.is_complete(job, succeeded, len(active), done):
            return plan.new_condition("SuccessCriteriaMet", "True", plan.REASON_COMPLETIONS, plan.MSG_COMPLETIONS, now)
        return None

    async def _manage(self, key: str, job: dict, pods: list[dict], active: list[dict], succeeded: int,
                      done: set[int], now: float) -> tuple[int, int]:
        if not self.expectations.satisfied(key):
            return 0, 0
        decision = plan.plan_active(job, active, succeeded, done)
        deleted = await self._delete_pods(job, decision.delete) if decision.delete else 0
        if not decision.create:
            return 0, deleted
        wait = plan.backoff_remaining(pods, now, self.backoff_base, self.backoff_max)
        if wait > 0:
            self.queue.add_after(key, wait)
            return 0, deleted
        owner = owner_reference(job, JOBS)
        indexes = list(decision.create)
        self.expectations.expect_creations(key, len(indexes))
        namespace = job["metadata"]["namespace"]

        async def create_one() -> None:
            pod = plan.pod_from_template(job, owner, indexes.pop(0))
            try:
                pod = await self.client.create(PODS, pod, namespace)
            except errors.ApiError as e:
                self.recorder.event(job, WARNING, "FailedCreate", f"Error creating: {e}", res=JOBS)
                raise
            self.recorder.event(job, NORMAL, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", res=JOBS)

        count = len(indexes)
        made, error = await slow_start_batch(count, 1, create_one)
        for _ in range(count - made):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error
        return made, deleted

    async def _delete_pods(self, job: dict, pods: list[dict]) -> int:
        async def delete_one(pod: dict) -> bool:
            m = pod["metadata"]
            try:
                await self.client.delete(PODS, m["namespace"], m["name"], preconditions={"uid": m["uid"]})
            except errors.NotFound:
                return False
            self.recorder.event(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {m['name']}", res=JOBS)
            return True
        results = await asyncio.gather(*(delete_one(p) for p in pods), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return sum(bool(r) for r in results)

    async def _remove_finalizers(self, pods: list[dict]) -> set[str]:
        """Remove the tracking finalizer; the uids released (or already gone). A strategic-merge
        patch, as upstream's: it never conflicts with the kubelet's concurrent status writes."""
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [plan.TRACKING_FINALIZER]}}

        async def remove(pod: dict) -> str:
            m = pod["metadata"]
            try:
                await self.client.patch(PODS, m["namespace"], m["name"], patch, STRATEGIC_PATCH)
            except errors.NotFound:
                pass
            return m["uid"]
        results = await asyncio.gather(*(remove(p) for p in pods), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return {r for r in results if isinstance(r, str)}

    async def _release_orphan(self, pod_key: str) -> None:
        """A pod whose Job is gone (or another one now) keeps no tracking finalizer."""
        pod = self.pod_informer.get(pod_key)
        if pod is None or not plan.has_finalizer(pod):
            return
        ref = controller_ref(pod) or {}
        ns = pod["metadata"]["namespace"]
        try:
            job = await self.client.get(JOBS, ns, ref.get("name", ""))
            if job["metadata"].get("uid") == ref.get("uid") and not plan.is_finished(job):
                return
        except errors.NotFound:
            pass
        await self._remove_finalizers([pod])

    async def _write_status(self, job: dict, status: dict) -> dict:
        if job.get("status") == status:
            return job
        written = await self.client.update_status(JOBS, {**job, "status": status})
        before = job["metadata"].get("resourceVersion", "")
        if deep_get(written, "metadata", "resourceVersion", default=before) != before:  # a no-op write sends no event
            self._superseded.setdefault(object_key(job), set()).add(before)
        return written
