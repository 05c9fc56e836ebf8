"""ResourceQuota arithmetic shared by the API server's quota admission and the quota
controller: what one object uses (upstream pkg/quota/v1/evaluator/core) and whether a new object
fits a quota (`exceeded quota: ...`, `must specify ...`), in upstream's words."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pocketkube.api.quantity import fmt, is_binary, parse

# The names counted without the count/ prefix (the "legacy" object counts).
LEGACY_COUNTS = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims",
                 "replicationcontrollers", "resourcequotas")
COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")
INTEGER = set(LEGACY_COUNTS) | {"services.nodeports", "services.loadbalancers"}



def count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def pod_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_totals(pod: dict, kind: str = "requests") -> dict[str, Fraction]:
    """A pod's effective requests (or limits): the containers' sum, or the largest init
    container when that is more (upstream's resource.PodRequests, without overhead)."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in (((c.get("resources") or {}).get(kind) or {}) if isinstance(c, dict) else {}).items():
            if (q := parse(v)) is not None:
                total[k] = total.get(k, Fraction(0)) + q
    for c in spec.get("initContainers") or []:
        for k, v in (((c.get("resources") or {}).get(kind) or {}) if isinstance(c, dict) else {}).items():
            if (q := parse(v)) is not None and q > total.get(k, Fraction(0)):
                total[k] = q
    return total


def _pod_compute(pod: dict) -> dict[str, Fraction]:
    """requests.*/limits.* of a pod, and cpu/memory (= requests)."""
    out: dict[str, Fraction] = {}
    for kind in ("requests", "limits"):
        total = pod_totals(pod, kind)
        for k in ("cpu", "memory"):
            if k in total:
                out[f"{kind}.{k}"] = total[k]
                if kind == "requests":
                    out[k] = total[k]
    return out


def usage(group: str, plural: str, obj: dict) -> dict[str, Fraction]:
    """What one object counts against a quota (nothing for a terminal pod)."""
    if (group, plural) == ("", "pods") and pod_terminal(obj):
        return {}
    out: dict[str, Fraction] = {count_name(group, plural): Fraction(1)}
    if not group and plural in LEGACY_COUNTS:
        out[plural] = Fraction(1)
    if (group, plural) == ("", "pods"):
        out.update(_pod_compute(obj))
    elif (group, plural) == ("", "services"):
        kind = (obj.get("spec") or {}).get("type")
        ports = len((obj.get("spec") or {}).get("ports") or [])
        out["services.nodeports"] = Fraction(ports if kind in ("NodePort", "LoadBalancer") else 0)
        out["services.loadbalancers"] = Fraction(1 if kind == "LoadBalancer" else 0)
    elif (group, plural) == ("", "persistentvolumeclaims"):
        storage = parse((((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))
        out["requests.storage"] = storage or Fraction(0)
    return out


def counts_resource(name: str, group: str, plural: str) -> bool:
    """Whether a quota's resource name concerns objects of this kind."""
    if name == count_name(group, plural) or (not group and name == plural and plural in LEGACY_COUNTS):
        return True
    if (group, plural) == ("", "pods"):
        return name in COMPUTE
    if (group, plural) == ("", "services"):
        return name in ("services.nodeports", "services.loadbalancers")
    return (group, plural) == ("", "persistentvolumeclaims") and name == "requests.storage"


def total(group: str, plural: str, objects: list[dict], names: list[str],
          scopes: list[str] | None = None) -> dict[str, Fraction]:
    """Summed usage of `names` over the stored objects of one kind (those in `scopes`)."""
    out = {n: Fraction(0) for n in names}
    for obj in objects:
        if (obj.get("metadata") or {}).get("deletionTimestamp") and (group, plural) != ("", "pods"):
            continue
        if not in_scope(scopes or [], group, plural, obj):
            continue
        for k, v in usage(group, plural, obj).items():
            if k in out:
                out[k] += v
    return out


def _pretty(values: dict[str, Fraction], hard: dict[str, Any]) -> str:
    return ",".join(f"{k}={fmt(values.get(k, Fraction(0)), is_binary(hard.get(k)))}" for k in sorted(values))


def missing_constraints(pod: dict, hard_names: set[str]) -> str | None:
    """Quota on cpu/memory needs every container to state it (the pod evaluator's Constraints)."""
    required = hard_names & set(COMPUTE)
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        for name in required:
            kind, _, key = name.rpartition(".")
            values = res.get(kind or "requests") or {}
            if key not in values:
                missing.setdefault(name, set()).add(str(c.get("name", "")))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


def exceeded(name: str, hard: dict[str, Any], used: dict[str, Fraction],
             requested: dict[str, Fraction]) -> str | None:
    """The rejection of a request that would take a quota over its hard limits, or None."""
    over = {}
    for k, v in requested.items():
        limit = parse(hard.get(k))
        if limit is not None and v > 0 and used.get(k, Fraction(0)) + v > limit:
            over[k] = v
    if not over:
        return None
    return (f"exceeded quota: {name}, requested: {_pretty(over, hard)}, "
            f"used: {_pretty({k: used.get(k, Fraction(0)) for k in over}, hard)}, "
            f"limited: {_pretty({k: parse(hard[k]) or Fraction(0) for k in over}, hard)}")


def quantity_map(values: dict[str, Fraction], hard: dict[str, Any]) -> dict[str, str]:
    """Usage as the quantities status.used stores, in the format of the matching hard value."""
    return {k: fmt(v, is_binary(hard.get(k))) for k, v in sorted(values.items())}


def kinds_for(names: list[str]) -> set[tuple[str, str]]:
    """The (group, plural) kinds whose objects a set of quota resource names counts."""
    kinds: set[tuple[str, str]] = set()
    for n in names:
        if n.startswith("count/"):
            plural, _, group = n[len("count/"):].partition(".")
            kinds.add((group, plural))
        elif n in LEGACY_COUNTS:
            kinds.add(("", n))
        elif n in COMPUTE:
            kinds.add(("", "pods"))
        elif n.startswith("services."):
            kinds.add(("", "services"))
        elif n == "requests.storage":
            kinds.add(("", "persistentvolumeclaims"))
    return kinds


# ---- scopes (spec.scopes): a scoped quota counts only the pods that match every scope ----

SCOPES = ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating")
_BEST_EFFORT_RESOURCES = {"pods", "count/pods"}
_SCOPED_RESOURCES = {"pods", "count/pods", *COMPUTE}


def best_effort(pod: dict) -> bool:
    """QoS BestEffort: no container requests or limits cpu or memory."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        res = (c.get("resources") or {}) if isinstance(c, dict) else {}
        for kind in ("requests", "limits"):
            if any(k in ("cpu", "memory") for k in (res.get(kind) or {})):
                return False
    return True


def matches_scope(scope: str, pod: dict) -> bool:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    if scope == "Terminating":
        return isinstance(deadline, int) and deadline >= 0
    if scope == "NotTerminating":
        return deadline is None
    if scope == "BestEffort":
        return best_effort(pod)
    if scope == "NotBestEffort":
        return not best_effort(pod)
    return False


def in_scope(scopes: list[str], group: str, plural: str, obj: dict) -> bool:
    """Whether a quota with these scopes counts this object (an unscoped one counts everything)."""
    if not scopes:
        return True
    return (group, plural) == ("", "pods") and all(matches_scope(s, obj) for s in scopes)


def scope_errors(scopes: list, hard: dict) -> list[str]:
    """ValidateResourceQuotaSpec's scope messages (each for the field spec.scopes)."""
    msgs = []
    for scope in scopes:
        if scope not in SCOPES:
            msgs.append("unsupported scope")
            continue
        allowed = _BEST_EFFORT_RESOURCES if scope == "BestEffort" else _SCOPED_RESOURCES
        standard = [k for k in hard if "/" not in k or k.startswith("count/")]
        msgs.extend("unsupported scope applied to resource" for k in standard if k not in allowed)
    for pair in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
        if set(pair) <= set(scopes):
            msgs.append("conflicting scopes")
    return msgs
