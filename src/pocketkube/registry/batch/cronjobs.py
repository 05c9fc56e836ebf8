"""CronJob defaulting and validation (batch/v1), worded as pkg/apis/batch/validation words them."""

from __future__ import annotations

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
from pocketkube.registry.validation import get_str, validate_object_meta, validate_object_meta_update

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
    return _validate(obj, allow_tz=False)


def _validate(obj: dict, allow_tz: bool) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        errs.append(invalid(Path("metadata", "name"), name, f"must be no more than {MAX_NAME_LENGTH} characters"))
    spec = obj.get("spec")
    path = Path("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return errs + [wrong_type(path, spec, "object")]
    errs.extend(_schedule_errors(spec, path, allow_tz))
    policy = get_str(spec, "concurrencyPolicy", path, errs)
    if not policy:
        errs.append(required(path.child("concurrencyPolicy")))
    elif policy not in CONCURRENCY_POLICIES:
        errs.append(not_supported_ordered(path.child("concurrencyPolicy"), policy, CONCURRENCY_POLICIES))
    get_bool(spec, "suspend", path, errs)
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs.extend(nonnegative(get_int(spec, key, path, errs), path.child(key)))
    errs.extend(_job_template_errors(spec, path.child("jobTemplate"), errs))
    return errs


def _schedule_errors(spec: dict, path: Path, allow_tz: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    schedule = get_str(spec, "schedule", path, errs)
    spath = path.child("schedule")
    if not schedule:
        if not errs:
            errs.append(required(spath))
    elif "TZ" in schedule and not allow_tz:
        errs.append(invalid(spath, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    else:
        try:
            cron.parse(schedule)
        except cron.CronError as e:
            errs.append(invalid(spath, schedule, str(e)))
    zone = spec.get("timeZone")
    zpath = path.child("timeZone")
    if zone is not None:
        if not isinstance(zone, str):
            errs.append(wrong_type(zpath, zone, "string"))
        elif zone == "":
            errs.append(invalid(zpath, zone, "timeZone must be nil or non-empty string"))
        elif zone.lower() == "local":
            errs.append(invalid(zpath, zone, "timeZone must be an explicit time zone as defined in "
                                             "https://www.iana.org/time-zones"))
        else:
            try:
                cron.load_zone(zone)
            except cron.CronError as e:
                errs.append(invalid(zpath, zone, str(e)))
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
    # A schedule that already used TZ= may keep it (AllowTZInSchedule), new ones may not.
    old_schedule = (old.get("spec") or {}).get("schedule")
    allow_tz = isinstance(old_schedule, str) and "TZ" in old_schedule
    return _validate(new, allow_tz) + validate_object_meta_update(new, old)


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update, tracks_generation=True)
