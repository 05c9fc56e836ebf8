"""CronJob defaulting and validation (batch/v1), worded as pkg/apis/batch/validation words them."""

from __future__ import annotations

import re

from pocketkube.api import cron
from pocketkube.api.fields import FieldError, Path, invalid, required
from pocketkube.api.validation import dns1123_subdomain_errors, wrong_type
from pocketkube.registry.apps.replicasets import default_template
from pocketkube.registry.batch.jobs import validate_job_spec
from pocketkube.registry.core.pods.typed import (
    get_bool,
    get_dict,
    get_int,
    nonnegative,
    not_supported_ordered,
)
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import (
    get_spec,
    get_str,
    validate_object_meta,
    validate_object_meta_update,
)

CONCURRENCY_POLICIES = ["Allow", "Forbid", "Replace"]
# Job names are `<cronjob>-<minutes>` (11 characters more) and must fit a 63-character label.
MAX_NAME_LENGTH = 52


def default(obj: dict) -> None:
    obj.setdefault("status", {})  # as PrepareForCreate: an empty status from the start
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for key, value in (("concurrencyPolicy", "Allow"), ("suspend", False), ("successfulJobsHistoryLimit", 3),
                       ("failedJobsHistoryLimit", 1)):
        if spec.get(key) is None:
            spec[key] = value
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        default_template(job_template["spec"])


def validate(obj: dict) -> list[FieldError]:
    errs = _validate(obj, None)
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:  # at create only: old long names stay editable
        errs.append(invalid(Path("metadata", "name"), name, f"must be no more than {MAX_NAME_LENGTH} characters"))
    return errs


def _validate(obj: dict, old_spec: dict | None) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = get_spec(obj, errs)
    if spec is None:
        return errs
    path = Path("spec")
    errs.extend(_schedule_errors(spec, path, old_spec))
    errs.extend(nonnegative(get_int(spec, "startingDeadlineSeconds", path, errs), path.child("startingDeadlineSeconds")))
    if old_spec is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errs.extend(_time_zone_errors(spec.get("timeZone"), path.child("timeZone")))
    policy = get_str(spec, "concurrencyPolicy", path, errs)
    if not policy:
        errs.append(required(path.child("concurrencyPolicy")))
    elif policy not in CONCURRENCY_POLICIES:
        errs.append(not_supported_ordered(path.child("concurrencyPolicy"), policy, CONCURRENCY_POLICIES))
    get_bool(spec, "suspend", path, errs)
    errs.extend(_job_template_errors(spec, path.child("jobTemplate"), errs))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs.extend(nonnegative(get_int(spec, key, path, errs), path.child(key)))
    return errs


def _schedule_errors(spec: dict, path: Path, old_spec: dict | None) -> list[FieldError]:
    errs: list[FieldError] = []
    schedule = get_str(spec, "schedule", path, errs)
    spath = path.child("schedule")
    if errs:
        return errs
    if not schedule:
        return [required(spath)]
    try:
        cron.parse(schedule)
    except cron.CronError as e:
        errs.append(invalid(spath, schedule, str(e)))
    # A schedule that already used TZ= may keep it (AllowTZInSchedule); new ones may not.
    old_schedule = (old_spec or {}).get("schedule")
    allow_tz = isinstance(old_schedule, str) and "TZ" in old_schedule
    if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
        errs.append(invalid(spath, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    elif not allow_tz and "TZ" in schedule:
        errs.append(invalid(spath, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return errs


_ZONE_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")


def _time_zone_errors(zone: object, path: Path) -> list[FieldError]:
    if zone is None:
        return []
    if not isinstance(zone, str):
        return [wrong_type(path, zone, "string")]
    if zone == "":
        return [invalid(path, zone, "timeZone must be nil or non-empty string")]
    for part in zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not _ZONE_PART.fullmatch(part):
            return [invalid(path, zone, f"unknown time zone {zone}")]
    errs = []
    if zone.lower() == "local":
        errs.append(invalid(path, zone, "timeZone must be an explicit time zone as defined in "
                                        "https://www.iana.org/time-zones"))
        return errs  # Go loads "Local" fine; Python has no such zone
    try:
        cron.load_zone(zone)
    except cron.CronError as e:
        errs.append(invalid(path, zone, str(e)))
    return errs


def _job_template_errors(spec: dict, path: Path, errs: list[FieldError]) -> list[FieldError]:
    """ValidateJobTemplateSpec: the Job spec, with a selector the controller will generate."""
    template = get_dict(spec, "jobTemplate", Path("spec"), errs)
    out: list[FieldError] = []
    job_spec = template.get("spec")
    if job_spec is None:
        job_spec = {}
    if not isinstance(job_spec, dict):
        return [wrong_type(path.child("spec"), job_spec, "object")]
    out.extend(validate_job_spec(job_spec, path.child("spec")))
    if job_spec.get("selector") is not None:
        out.append(invalid(path.child("spec", "selector"), job_spec["selector"], "`selector` will be auto-generated"))
    if job_spec.get("manualSelector") is True:
        out.append(not_supported_ordered(path.child("spec", "manualSelector"), True, ["nil", "false"]))
    return out


def validate_update(new: dict, old: dict) -> list[FieldError]:
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    return validate_object_meta_update(new, old) + _validate(new, old_spec)


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update, tracks_generation=True)
