"""Printers for the batch group (batch/v1): jobs and cron jobs, after upstream's printJob and
printCronJob (kubectl 1.32 shows a Job's STATUS column)."""

from __future__ import annotations

from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.apiserver.tables.apps import _containers_and_images
from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    NONE,
    Cell,
    Column,
    Printer,
    age,
    as_int,
    as_map,
    dig,
    format_label_selector,
    human_duration,
    maps_in,
    name_of,
    since,
    wide,
)

# The order printJob tests conditions in: the first true one names the STATUS.
_STATUS_ORDER = ("Complete", "Failed", "Terminating", "Suspended", "FailureTarget", "SuccessCriteriaMet")


def job_status(job: dict) -> str:
    true = {c.get("type") for c in maps_in(dig(job, "status", "conditions")) if c.get("status") == "True"}
    for name in _STATUS_ORDER:
        if name == "Terminating":
            if dig(job, "metadata", "deletionTimestamp"):
                return name
        elif name in true:
            return name
    return "Running"


def job_completions(job: dict) -> str:
    spec, succeeded = as_map(job.get("spec")), as_int(dig(job, "status", "succeeded"))
    if spec.get("completions") is not None:
        return f"{succeeded}/{as_int(spec.get('completions'))}"
    parallelism = as_int(spec.get("parallelism"))
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(job: dict, now: float) -> str:
    start = parse_rfc3339(dig(job, "status", "startTime"))
    if start is None:
        return ""
    end = parse_rfc3339(dig(job, "status", "completionTime"))
    return human_duration((now if end is None else end) - start)


def _job_cells(job: dict, now: float) -> list[Cell]:
    spec = as_map(job.get("spec"))
    names, images = _containers_and_images(spec.get("template"))
    return [name_of(job), job_status(job), job_completions(job), job_duration(job, now), age(job, now),
            names, images, format_label_selector(spec.get("selector"))]


def _bool_ptr(value: object) -> str:
    return "<unset>" if value is None else ("True" if value is True else "False")


def _cronjob_cells(cronjob: dict, now: float) -> list[Cell]:
    spec, status = as_map(cronjob.get("spec")), as_map(cronjob.get("status"))
    job_spec = as_map(dig(cronjob, "spec", "jobTemplate", "spec"))
    names, images = _containers_and_images(job_spec.get("template"))
    zone = spec.get("timeZone")
    last = status.get("lastScheduleTime")
    return [name_of(cronjob), str(spec.get("schedule") or ""), zone if isinstance(zone, str) else NONE,
            _bool_ptr(spec.get("suspend")), len(maps_in(status.get("active"))),
            NONE if last is None else since(last, now), age(cronjob, now),
            names, images, format_label_selector(job_spec.get("selector"))]


_TEMPLATE_COLUMNS = (wide("Containers", "Names of each container in the template."),
                     wide("Images", "Images referenced by each container in the template."))

PRINTERS: dict[tuple[str, str], Printer] = {
    ("batch", "jobs"): Printer(
        (NAME, Column("Status", "Status of the job."),
         Column("Completions", "The number of pods which reached phase Succeeded."),
         Column("Duration", "Time required to complete the job."), AGE, *_TEMPLATE_COLUMNS,
         wide("Selector", "A label query over pods that should match the pod count.")),
        _job_cells),
    ("batch", "cronjobs"): Printer(
        (NAME, Column("Schedule", "The schedule in Cron format."),
         Column("Timezone", "The time zone name for the given schedule."),
         Column("Suspend", "Whether subsequent executions are suspended.", type="boolean"),
         Column("Active", "A list of pointers to currently running jobs.", type="integer"),
         Column("Last Schedule", "Information when was the last time the job was successfully scheduled."),
         AGE, *_TEMPLATE_COLUMNS, wide("Selector", "A label query over pods that should match the pod count.")),
        _cronjob_cells),
}
