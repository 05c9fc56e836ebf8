"""The CronJob controller's decisions, as pure functions (pkg/controller/cronjob/utils.go of 1.32):
which scheduled time is due, whether it was missed, the Job it makes, which finished Jobs the
history limits remove."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from pocketkube.api import cron
from pocketkube.api.meta import deep_get
from pocketkube.api.timestamps import now_rfc3339, parse_rfc3339

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # more missed starts than this are reported (TooManyMissedTimes)


def job_name(cronjob_name: str, scheduled: float) -> str:
    """`<cronjob>-<scheduled minutes since the epoch>`, so each scheduled time makes one Job."""
    return f"{cronjob_name}-{int(scheduled) // 60}"


def zone_of(cronjob: dict) -> tzinfo | None:
    """The CronJob's time zone (None: the controller's local zone); CronError when unknown."""
    name = deep_get(cronjob, "spec", "timeZone")
    return cron.load_zone(name) if name else None


def _aware(t: float, zone: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(t, UTC).astimezone(zone) if zone else datetime.fromtimestamp(t).astimezone()


@dataclass(frozen=True)
class Due:
    scheduled: float | None  # the most recent scheduled time not yet run, if any
    missed: int  # how many scheduled times passed since the last one run
    next: float | None  # the following scheduled time (when to look again)


def most_recent(cronjob: dict, schedule: cron.Schedule, zone: tzinfo | None, now: float) -> Due:
    """mostRecentScheduleTime: scheduled times between the last one run (or the creation, or
    now − startingDeadlineSeconds, whichever is latest) and now."""
    earliest = parse_rfc3339(deep_get(cronjob, "status", "lastScheduleTime")) \
        or parse_rfc3339(deep_get(cronjob, "metadata", "creationTimestamp")) or now
    deadline = deep_get(cronjob, "spec", "startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, now - deadline)
    t = schedule.next(_aware(earliest, zone))
    scheduled: float | None = None
    missed = 0
    while t is not None and t.timestamp() <= now:
        scheduled = t.timestamp()
        missed += 1
        if missed > MAX_MISSED:
            # Too many to walk one by one: jump close to now, as upstream estimates instead.
            t = schedule.next(_aware(now - 61, zone))
            while t is not None and t.timestamp() <= now:
                scheduled = t.timestamp()
                t = schedule.next(t)
            break
        t = schedule.next(t)
    return Due(scheduled, missed, t.timestamp() if t is not None else None)


def too_late(cronjob: dict, scheduled: float, now: float) -> bool:
    deadline = deep_get(cronjob, "spec", "startingDeadlineSeconds")
    return deadline is not None and scheduled + deadline < now


def job_from_template(cronjob: dict, scheduled: float, owner_ref: dict, zone: tzinfo | None) -> dict:
    """getJobFromTemplate2: the jobTemplate's labels, annotations and spec, named after the time."""
    template = deep_get(cronjob, "spec", "jobTemplate", default=None) or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = _aware(scheduled, zone).isoformat()
    meta: dict = {"name": job_name(cronjob["metadata"]["name"], scheduled),
                  "namespace": cronjob["metadata"]["namespace"], "annotations": annotations,
                  "ownerReferences": [owner_ref]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def finished_type(job: dict) -> str | None:
    for c in deep_get(job, "status", "conditions", default=None) or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def object_reference(job: dict) -> dict:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def history_to_delete(cronjob: dict, jobs: list[dict]) -> list[dict]:
    """Finished Jobs beyond successfulJobsHistoryLimit/failedJobsHistoryLimit, oldest first."""
    out: list[dict] = []
    for kind, key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = deep_get(cronjob, "spec", key)
        if limit is None:
            continue
        done = [j for j in jobs if finished_type(j) == kind and not deep_get(j, "metadata", "deletionTimestamp")]
        done.sort(key=_start)
        out.extend(done[:max(0, len(done) - limit)])
    return out


def _start(job: dict) -> tuple:
    start = parse_rfc3339(deep_get(job, "status", "startTime"))
    created = parse_rfc3339(deep_get(job, "metadata", "creationTimestamp")) or 0.0
    return (start is None, start or created, job["metadata"].get("name", ""))


def rfc1123z(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def timestamp(t: float) -> str:
    return now_rfc3339(t)
