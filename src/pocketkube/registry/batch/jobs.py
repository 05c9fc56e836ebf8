"""Job defaulting and validation (batch/v1), worded as pkg/apis/batch/validation words them.

At create the selector is generated from the Job's uid (upstream's generateSelector) unless
spec.manualSelector is true: the pod template gets `batch.kubernetes.io/controller-uid`,
`batch.kubernetes.io/job-name` and their legacy twins `controller-uid`/`job-name`, and the
selector matches the uid label. The template is immutable once the Job has started.
"""

from __future__ import annotations

import copy
from typing import Any

from pocketkube.api.fields import FieldError, Path, duplicate, invalid, required
from pocketkube.api.selectors import LabelSelector, validate_label_selector
from pocketkube.api.validation import dns1123_subdomain_errors, qualified_name_errors, wrong_type
from pocketkube.registry.apps.replicasets import default_template
from pocketkube.registry.core.pods.typed import (
    dict_items,
    get_bool,
    get_int,
    get_list,
    nonnegative,
    not_supported_ordered,
)
from pocketkube.registry.core.pods.validation import validate_template
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import (
    IMMUTABLE,
    get_spec,
    get_str,
    validate_object_meta,
    validate_object_meta_update,
)

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
COMPLETION_MODES = ["NonIndexed", "Indexed"]
RESTART_POLICIES = ["OnFailure", "Never"]
RULE_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
MAX_PARALLELISM_INDEXED = 100000
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_EXIT_CODES = 255
# What a suspended, never-started Job may still change in its template (scheduling directives).
_MUTABLE_WHILE_SUSPENDED = ("nodeSelector", "tolerations", "affinity", "schedulingGates")


# ---- defaulting ----

def default(obj: dict) -> None:
    obj.setdefault("status", {})  # PrepareForCreate starts every Job with an empty status
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    default_job_spec(spec)
    template = spec.get("template")
    tlabels = template.get("metadata", {}).get("labels") if isinstance(template, dict) and isinstance(
        template.get("metadata"), dict) else None
    meta = obj.setdefault("metadata", {})
    labels_from_template = isinstance(tlabels, dict) and not meta.get("labels")
    if spec.get("manualSelector") is not True and meta.get("uid"):
        _generate_selector(obj, spec)
    if labels_from_template:
        # SetDefaults_Job shares the template's label map, which the generated labels then join.
        meta["labels"] = dict(spec["template"]["metadata"]["labels"])


def default_job_spec(spec: dict) -> None:
    """SetDefaults_Job's spec part (shared with a CronJob's job template)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    policy = spec.get("podFailurePolicy")
    if isinstance(policy, dict):
        for rule in policy.get("rules") or []:
            for pattern in (rule.get("onPodConditions") or []) if isinstance(rule, dict) else []:
                if isinstance(pattern, dict) and not pattern.get("status"):
                    pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if policy is not None else "TerminatingOrFailed"
    default_template(spec)


def _generate_selector(job: dict, spec: dict) -> None:
    template = spec.get("template")
    if not isinstance(template, dict):
        return
    tmeta = template.setdefault("metadata", {})
    if not isinstance(tmeta, dict):
        return
    labels = tmeta.get("labels")
    if labels is None:
        labels = tmeta["labels"] = {}
    if not isinstance(labels, dict):
        return
    uid, name = job["metadata"]["uid"], job["metadata"].get("name", "")
    for key, value in ((LEGACY_JOB_NAME, name), (JOB_NAME, name), (LEGACY_CONTROLLER_UID, uid), (CONTROLLER_UID, uid)):
        labels.setdefault(key, value)  # a user's own value is kept, and then rejected below
    selector = spec.get("selector")
    if selector is None:
        selector = spec["selector"] = {}
    if isinstance(selector, dict):
        match = selector.get("matchLabels")
        if match is None:
            match = selector["matchLabels"] = {}
        if isinstance(match, dict):
            match.setdefault(CONTROLLER_UID, uid)


# ---- validation ----

def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = get_spec(obj, errs)
    if spec is None:
        return errs
    path = Path("spec")
    errs.extend(_generated_selector_errors(obj, spec))
    errs.extend(validate_job_spec(spec, path))
    errs.extend(_selector_errors(spec, path))
    return errs


def _generated_selector_errors(job: dict, spec: dict) -> list[FieldError]:
    """ValidateGeneratedSelector: a selector the server generated must select exactly this Job's pods."""
    if spec.get("manualSelector") is True or not job["metadata"].get("uid") or spec.get("selector") is None:
        return []
    uid, name = job["metadata"]["uid"], job["metadata"].get("name", "")
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(tlabels, dict):
        return []
    errs: list[FieldError] = []
    lpath = Path("spec", "template", "metadata", "labels")
    for key, want in ((LEGACY_CONTROLLER_UID, uid), (CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name), (JOB_NAME, name)):
        if key not in tlabels:
            errs.append(required(lpath.key(key), f"`{key}` must be specified"))
        elif tlabels[key] != want:
            errs.append(invalid(lpath.key(key), tlabels[key], f"must be '{want}'"))
    try:
        selector = LabelSelector.from_dict(spec["selector"])
    except ValueError:
        return errs
    if not selector.matches({CONTROLLER_UID: uid}):
        errs.append(invalid(Path("spec", "selector"), spec["selector"], "`selector` not auto-generated"))
    return errs


def _selector_errors(spec: dict, path: Path) -> list[FieldError]:
    selector_path = path.child("selector")
    if spec.get("selector") is None:
        return [required(selector_path)]
    errs = validate_label_selector(spec["selector"], selector_path)
    try:
        selector = LabelSelector.from_dict(spec["selector"])
    except ValueError:
        return errs
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if isinstance(tlabels, dict) and not selector.matches(tlabels):
        errs.append(invalid(path.child("template", "metadata", "labels"), tlabels,
                            "`selector` does not match template `labels`"))
    return errs


def validate_job_spec(spec: dict, path: Path) -> list[FieldError]:
    """validateJobSpec: counts, modes, podFailurePolicy and the pod template."""
    errs: list[FieldError] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        errs.extend(nonnegative(get_int(spec, key, path, errs), path.child(key)))
    get_bool(spec, "suspend", path, errs)
    get_bool(spec, "manualSelector", path, errs)
    mode = get_str(spec, "completionMode", path, errs)
    if spec.get("completionMode") is not None and mode not in COMPLETION_MODES:
        errs.append(not_supported_ordered(path.child("completionMode"), mode, COMPLETION_MODES))
    if mode == "Indexed":
        if spec.get("completions") is None:
            errs.append(required(path.child("completions"), "when completion mode is Indexed"))
        parallelism = spec.get("parallelism")
        if isinstance(parallelism, int) and parallelism > MAX_PARALLELISM_INDEXED:
            errs.append(invalid(path.child("parallelism"), parallelism,
                                f"must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"))
    else:
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                errs.append(invalid(path.child(key), spec[key], "requires indexed completion mode"))
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(required(path.child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
    errs.extend(_replacement_policy_errors(spec, path.child("podReplacementPolicy")))
    if spec.get("podFailurePolicy") is not None:
        errs.extend(_pod_failure_policy_errors(spec, path.child("podFailurePolicy")))
    errs.extend(_template_errors(spec, path.child("template")))
    return errs


def _replacement_policy_errors(spec: dict, path: Path) -> list[FieldError]:
    value = spec.get("podReplacementPolicy")
    if value is None:
        return []
    allowed = ["Failed"] if spec.get("podFailurePolicy") is not None else ["Failed", "TerminatingOrFailed"]
    return [] if value in allowed else [not_supported_ordered(path, value, allowed)]


def _template_errors(spec: dict, path: Path) -> list[FieldError]:
    template = spec.get("template")
    errs = validate_template(template, path)
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return errs
    pod_spec = template["spec"]
    policy = pod_spec.get("restartPolicy")
    rp_path = path.child("spec", "restartPolicy")
    # The defaulting gives a template without one "Always", so both read as a missing choice.
    if policy in (None, "", "Always"):
        errs.append(required(rp_path, 'valid values: "OnFailure", "Never"'))
    elif policy not in RESTART_POLICIES:
        errs.append(not_supported_ordered(rp_path, policy, RESTART_POLICIES))
    elif spec.get("podFailurePolicy") is not None and policy != "Never":
        errs.append(invalid(rp_path, policy, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _pod_failure_policy_errors(spec: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = spec["podFailurePolicy"]
    if not isinstance(policy, dict):
        return [wrong_type(path, policy, "object")]
    rules_path = path.child("rules")
    rules = get_list(policy, "rules", path, errs)
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        errs.append(FieldError("TooMany", str(rules_path), len(rules),
                               f"must have at most {MAX_POD_FAILURE_POLICY_RULES} items"))
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    container_names = {c.get("name") for key in ("containers", "initContainers") for c in pod_spec.get(key) or []
                       if isinstance(c, dict)}
    for i, rule in dict_items(rules, rules_path, errs):
        errs.extend(_rule_errors(rule, rules_path.index(i), spec, container_names))
    return errs


def _rule_errors(rule: dict, path: Path, spec: dict, container_names: set) -> list[FieldError]:
    errs: list[FieldError] = []
    action = get_str(rule, "action", path, errs)
    apath = path.child("action")
    if not action:
        errs.append(required(apath, 'valid values: ["Count" "FailIndex" "FailJob" "Ignore"]'))
    elif action == "FailIndex":
        if spec.get("backoffLimitPerIndex") is None:
            errs.append(invalid(apath, action, "requires the backoffLimitPerIndex to be set"))
    elif action not in RULE_ACTIONS:
        errs.append(not_supported_ordered(apath, action, RULE_ACTIONS))
    codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
    if codes is not None:
        errs.extend(_exit_codes_errors(codes, path.child("onExitCodes"), container_names))
    if conditions:
        cpath = path.child("onPodConditions")
        patterns = get_list(rule, "onPodConditions", path, errs)
        if len(patterns) > MAX_POD_FAILURE_POLICY_RULES:
            errs.append(FieldError("TooMany", str(cpath), len(patterns), f"must have at most {MAX_POD_FAILURE_POLICY_RULES} items"))
        for j, pattern in dict_items(patterns, cpath, errs):
            ppath = cpath.index(j)
            errs.extend(invalid(ppath.child("type"), pattern.get("type"), m)
                        for m in qualified_name_errors(pattern.get("type")))
            status = pattern.get("status")
            if not status:
                errs.append(required(ppath.child("status"), 'valid values: ["False" "True" "Unknown"]'))
            elif status not in ("False", "True", "Unknown"):
                errs.append(not_supported_ordered(ppath.child("status"), status, ["False", "True", "Unknown"]))
    if codes is not None and conditions:
        errs.append(FieldError("Invalid", str(path), detail="specifying both OnExitCodes and OnPodConditions is not supported"))
    if codes is None and not conditions:
        errs.append(FieldError("Invalid", str(path), detail="specifying one of OnExitCodes and OnPodConditions is required"))
    return errs


def _exit_codes_errors(codes: Any, path: Path, container_names: set) -> list[FieldError]:
    if not isinstance(codes, dict):
        return [wrong_type(path, codes, "object")]
    errs: list[FieldError] = []
    operator = get_str(codes, "operator", path, errs)
    if not operator:
        errs.append(required(path.child("operator"), 'valid values: ["In" "NotIn"]'))
    elif operator not in ("In", "NotIn"):
        errs.append(not_supported_ordered(path.child("operator"), operator, ["In", "NotIn"]))
    name = codes.get("containerName")
    if name is not None and name not in container_names:
        errs.append(invalid(path.child("containerName"), name,
                            "must be one of the container or initContainer names in the pod template"))
    values = get_list(codes, "values", path, errs)
    vpath = path.child("values")
    if not values:
        errs.append(invalid(vpath, values, "at least one value is required"))
    elif len(values) > MAX_EXIT_CODES:
        errs.append(FieldError("TooMany", str(vpath), len(values), f"must have at most {MAX_EXIT_CODES} items"))
    seen: set[int] = set()
    ordered = True
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool):
            errs.append(wrong_type(vpath.index(i), v, "integer"))
            return errs
        if operator == "In" and v == 0:
            errs.append(invalid(vpath.index(i), v, "must not be 0 for the In operator"))
        if v in seen:
            errs.append(duplicate(vpath.index(i), v))
        seen.add(v)
        if i > 0 and values[i - 1] > v:
            ordered = False
    if not ordered:
        errs.append(invalid(vpath, values, "must be ordered"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate(new) + validate_object_meta_update(new, old)
    ns, os_ = new.get("spec"), old.get("spec")
    if not isinstance(ns, dict) or not isinstance(os_, dict):
        return errs
    path = Path("spec")
    for key in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "manualSelector"):
        if ns.get(key) != os_.get(key):
            errs.append(invalid(path.child(key), ns.get(key), IMMUTABLE))
    if ns.get("completions") != os_.get("completions"):
        # Indexed Jobs may scale completions together with parallelism (ElasticIndexedJob).
        if ns.get("completionMode") != "Indexed":
            errs.append(invalid(path.child("completions"), ns.get("completions"), IMMUTABLE))
        elif ns.get("completions") is not None and ns.get("completions") != ns.get("parallelism"):
            errs.append(invalid(path.child("completions"), ns.get("completions"),
                                "can only be modified in tandem with spec.parallelism"))
    if ns.get("template") != os_.get("template") and not _template_change_allowed(new, old):
        errs.append(invalid(path.child("template"), ns.get("template"), IMMUTABLE))
    return errs


def _template_change_allowed(new: dict, old: dict) -> bool:
    """Only a suspended Job that never started may change its template's scheduling directives."""
    if not (new["spec"].get("suspend") is True and not (old.get("status") or {}).get("startTime")):
        return False
    a, b = copy.deepcopy(new["spec"].get("template")), copy.deepcopy(old["spec"].get("template"))
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    for t in (a, b):
        t.pop("metadata", None)
        for key in _MUTABLE_WHILE_SUSPENDED:
            (t.get("spec") or {}).pop(key, None)
    return a == b


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update, tracks_generation=True)


__all__ = ["CONTROLLER_UID", "JOB_NAME", "default", "default_job_spec", "strategy", "validate",
           "validate_job_spec", "validate_update"]
