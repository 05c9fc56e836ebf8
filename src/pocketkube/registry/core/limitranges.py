"""LimitRange: defaulting and validation (upstream SetDefaults_LimitRangeItem, ValidateLimitRange),
and the LimitRanger admission decisions for pods (plugin/pkg/admission/limitranger), as pure
functions over JSON: defaults applied to containers, then min/max/ratio checked."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pocketkube.api import errors
from pocketkube.api.fields import FieldError, Path, duplicate, invalid, required
from pocketkube.api.quantity import fmt, is_binary, parse
from pocketkube.api.validation import dns1123_subdomain_errors, qualified_name_errors, wrong_type
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update

LIMIT_TYPES = ("Pod", "Container", "PersistentVolumeClaim")
_FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


def _items(obj: dict) -> list:
    spec = obj.get("spec")
    limits = spec.get("limits") if isinstance(spec, dict) else None
    return limits if isinstance(limits, list) else []


def default(obj: dict) -> None:
    """A Container item's default limit falls back to max, its default request to the default
    limit, then to min (SetDefaults_LimitRangeItem)."""
    for item in _items(obj):
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        if not all(isinstance(item.get(k, {}), dict) for k in ("max", "min", "default", "defaultRequest")):
            continue
        dflt = item.setdefault("default", {})
        request = item.setdefault("defaultRequest", {})
        for key, value in (item.get("max") or {}).items():
            dflt.setdefault(key, value)
        for key, value in dflt.items():
            request.setdefault(key, value)
        for key, value in (item.get("min") or {}).items():
            request.setdefault(key, value)
        for key in ("default", "defaultRequest"):
            if not item[key]:
                del item[key]


def _resource_name_errors(name: str, path: Path) -> list[FieldError]:
    errs = [invalid(path, name, m) for m in qualified_name_errors(name)]
    if not errs and "/" not in name and name not in ("cpu", "memory", "ephemeral-storage", "storage") \
            and not name.startswith("hugepages-"):
        errs.append(invalid(path, name, "must be a standard resource type or fully qualified"))
    return errs


def _quantities(item: dict, key: str, path: Path, errs: list[FieldError]) -> dict[str, tuple[Any, Fraction]]:
    values = item.get(key)
    if values is None:
        return {}
    if not isinstance(values, dict):
        errs.append(wrong_type(path.child(key), values, "object"))
        return {}
    out: dict[str, tuple[Any, Fraction]] = {}
    for name, value in values.items():
        qpath = path.child(key).key(name)
        errs.extend(_resource_name_errors(name, qpath))
        q = parse(value)
        if q is None:
            errs.append(invalid(qpath, value, "must be a valid resource quantity"))
        elif q < 0:
            errs.append(invalid(qpath, value, "must be greater than or equal to 0"))
        else:
            out[name] = (value, q)
    return out


def _s(pair: tuple[Any, Fraction]) -> str:
    return fmt(pair[1], is_binary(pair[0]))


def validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs + [required(Path("spec"))]
    limits = spec.get("limits")
    if not isinstance(limits, list):
        return errs + [wrong_type(Path("spec", "limits"), limits, "array")] if limits is not None else errs
    seen: set[str] = set()
    for i, item in enumerate(limits):
        path = Path("spec", "limits").index(i)
        if not isinstance(item, dict):
            errs.append(wrong_type(path, item, "object"))
            continue
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            errs.append(required(path.child("type")))
        elif kind not in LIMIT_TYPES and (qualified_name_errors(kind) or "/" not in kind):
            errs.append(invalid(path.child("type"), kind, "must be a standard limit type or fully qualified"))
        elif kind in seen:
            errs.append(duplicate(path.child("type"), kind))
        else:
            seen.add(kind)
        q = {key: _quantities(item, key, path, errs) for key in _FIELDS}
        if kind == "Pod":
            for key in ("default", "defaultRequest"):
                if item.get(key):
                    errs.append(invalid(path.child(key), item[key], "may not be specified when `type` is 'Pod'"))
        errs.extend(_order_errors(q, path))
    return errs


# ValidateLimitRange's ordering checks, in its order: (lower, upper, their names in the message,
# the field reported and whose value it shows).
_ORDER = (
    ("min", "max", "min value", "max value", "min", "min"),
    ("min", "defaultRequest", "min value", "default request value", "defaultRequest", "defaultRequest"),
    ("defaultRequest", "max", "default request value", "max value", "defaultRequest", "defaultRequest"),
    ("defaultRequest", "default", "default request value", "default limit value", "defaultRequest",
     "defaultRequest"),
    ("min", "default", "min value", "default value", "default", "min"),
    ("default", "max", "default value", "max value", "default", "max"),
)


def _order_errors(q: dict[str, dict[str, tuple[Any, Fraction]]], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    mn, mx, ratio = q["min"], q["max"], q["maxLimitRequestRatio"]
    for k in sorted(set().union(*q.values())):
        for lo, hi, lo_name, hi_name, field, shown in _ORDER:
            if k in q[lo] and k in q[hi] and q[lo][k][1] > q[hi][k][1]:
                errs.append(invalid(path.child(field).key(k), q[shown][k][0],
                                    f"{lo_name} {_s(q[lo][k])} is greater than {hi_name} {_s(q[hi][k])}"))
        if k in ratio and ratio[k][1] < 1:
            errs.append(invalid(path.child("maxLimitRequestRatio").key(k), ratio[k][0],
                                f"ratio {_s(ratio[k])} is less than 1"))
        if k in ratio and k in mn and k in mx and mn[k][1] > 0:
            bound = mx[k][1] / mn[k][1]
            if ratio[k][1] > bound:
                errs.append(invalid(path.child("maxLimitRequestRatio").key(k), ratio[k][0],
                                    f"ratio {_s(ratio[k])} is greater than max/min = {float(bound):f}"))
    return errs


def validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate_object_meta_update(new, old) + validate(new)


def strategy() -> Strategy:
    return Strategy(default, validate, validate_update)


# ---------------------------------------------------------------------------------------------
# LimitRanger admission
# ---------------------------------------------------------------------------------------------

def _containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in (spec.get(key) or [])
            if isinstance(c, dict)]


def apply_defaults(pod: dict, ranges: list[dict]) -> None:
    """Container items' default limits and requests, for the resources a container leaves unset
    (mergePodResourceRequirements). The first LimitRange naming a resource wins."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for lr in ranges:
        for item in _items(lr):
            if isinstance(item, dict) and item.get("type") == "Container":
                for k, v in (item.get("default") or {}).items():
                    limits.setdefault(k, v)
                for k, v in (item.get("defaultRequest") or {}).items():
                    requests.setdefault(k, v)
    if not limits and not requests:
        return
    for c in _containers(spec):
        resources = c.setdefault("resources", {})
        if not isinstance(resources, dict):
            continue
        for key, defaults in (("limits", limits), ("requests", requests)):
            if not defaults:
                continue
            current = resources.setdefault(key, {})
            if isinstance(current, dict):
                for k, v in defaults.items():
                    current.setdefault(k, v)


def _sum_pod(spec: dict, key: str) -> tuple[dict[str, Fraction], dict[str, Any], set[str]]:
    """Pod totals of requests or limits (the larger of the containers' sum and any init
    container's value); the names some container leaves unset."""
    total: dict[str, Fraction] = {}
    raw: dict[str, Any] = {}
    missing: set[str] = set()
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    names = {k for c in _containers(spec) for k in ((c.get("resources") or {}).get(key) or {})}
    for c in containers:
        values = (c.get("resources") or {}).get(key) or {}
        for k in names:
            q = parse(values.get(k))
            if q is None:
                missing.add(k)
            else:
                total[k] = total.get(k, Fraction(0)) + q
                raw.setdefault(k, values.get(k))
    for c in spec.get("initContainers") or []:
        values = ((c.get("resources") or {}).get(key) or {}) if isinstance(c, dict) else {}
        for k, v in values.items():
            q = parse(v)
            if q is not None and q > total.get(k, Fraction(0)):
                total[k], raw[k] = q, v
    return total, raw, missing


def _bound_msgs(bounds: Any, which: str, what: str, values: dict[str, Fraction], raw: dict[str, Any],
                raw_prefix: str, missing: set[str], kind: str) -> list[str]:
    """minConstraint (the request at least min) or maxConstraint (the limit at most max)."""
    msgs: list[str] = []
    for k, v in sorted((bounds or {}).items()):
        bound = parse(v)
        if bound is None:
            continue
        value = values.get(k)
        text = f"{which} {k} usage per {kind} is {fmt(bound, is_binary(v))}"
        if value is None or k in missing:
            msgs.append(f"{text}.  No {what} is specified")
        elif (value < bound) if which == "minimum" else (value > bound):
            msgs.append(f"{text}, but {what} is {fmt(value, is_binary(raw.get(raw_prefix + k)))}")
    return msgs


def _check(kind: str, item: dict, requests: dict[str, Fraction], limits: dict[str, Fraction],
           raw: dict[str, Any], missing_req: set[str], missing_lim: set[str]) -> list[str]:
    """upstream's minConstraint, maxConstraint and limitRequestRatioConstraint."""
    msgs = (_bound_msgs(item.get("min"), "minimum", "request", requests, raw, "r:", missing_req, kind)
            + _bound_msgs(item.get("max"), "maximum", "limit", limits, raw, "l:", missing_lim, kind))
    for k, v in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        ratio = parse(v)
        req, lim = requests.get(k), limits.get(k)
        if ratio is None:
            continue
        text = f"{k} max limit to request ratio per {kind} is {fmt(ratio)}"
        if req is None or req == 0 or k in missing_req:
            msgs.append(f"{text}, but no request is specified or request is 0")
        elif lim is None or k in missing_lim:
            msgs.append(f"{text}, but no limit is specified")
        elif lim / req > ratio:
            msgs.append(f"{text}, but provided ratio is {float(lim / req):f}")
    return msgs


def claim_violations(claim: dict, ranges: list[dict]) -> list[str]:
    """PersistentVolumeClaim items: the requested storage within min and max (upstream's
    minConstraint and maxRequestConstraint)."""
    resources = ((claim.get("spec") or {}).get("resources") or {}) if isinstance(claim.get("spec"), dict) else {}
    requests = resources.get("requests") if isinstance(resources.get("requests"), dict) else {}
    msgs: list[str] = []
    for lr in ranges:
        for item in _items(lr):
            if not isinstance(item, dict) or item.get("type") != "PersistentVolumeClaim":
                continue
            for key, word in (("min", "minimum"), ("max", "maximum")):
                for k, v in sorted((item.get(key) or {}).items()):
                    bound, req = parse(v), parse(requests.get(k))
                    if bound is None:
                        continue
                    text = f"{word} {k} usage per PersistentVolumeClaim is {fmt(bound, is_binary(v))}"
                    if req is None:
                        msgs.append(f"{text}.  No request is specified")
                    elif (req < bound) if key == "min" else (req > bound):
                        msgs.append(f"{text}, but request is {fmt(req, is_binary(requests.get(k)))}")
    return msgs


def violations(pod: dict, ranges: list[dict]) -> list[str]:
    """What the namespace's LimitRanges forbid in a (defaulted) pod, in upstream's words."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    msgs: list[str] = []
    for lr in ranges:
        for item in _items(lr):
            if not isinstance(item, dict):
                continue
            if item.get("type") == "Container":
                for c in _containers(spec):
                    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
                    req_raw = res.get("requests") if isinstance(res.get("requests"), dict) else {}
                    lim_raw = res.get("limits") if isinstance(res.get("limits"), dict) else {}
                    req = {k: q for k, v in req_raw.items() if (q := parse(v)) is not None}
                    lim = {k: q for k, v in lim_raw.items() if (q := parse(v)) is not None}
                    raw = {**{"r:" + k: v for k, v in req_raw.items()}, **{"l:" + k: v for k, v in lim_raw.items()}}
                    msgs.extend(_check("Container", item, req, lim, raw, set(), set()))
            elif item.get("type") == "Pod":
                req, req_raw, missing_req = _sum_pod(spec, "requests")
                lim, lim_raw, missing_lim = _sum_pod(spec, "limits")
                raw = {**{"r:" + k: v for k, v in req_raw.items()}, **{"l:" + k: v for k, v in lim_raw.items()}}
                msgs.extend(_check("Pod", item, req, lim, raw, missing_req, missing_lim))
    return msgs


def forbidden(resource: str, name: str, msgs: list[str]) -> errors.Forbidden:
    """An admission rejection as upstream words it: `pods "x" is forbidden: <error>`, several
    errors aggregated in brackets."""
    text = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    return errors.Forbidden(f'{resource} "{name}" is forbidden: {text}',
                            {"name": name, "kind": resource})
