"""The disruption controller's pure decisions (upstream pkg/controller/disruption): which pods a
budget selects, how many are healthy, how many must stay, and the status that follows."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pocketkube.api.selectors.labels import LabelSelector
from pocketkube.api.timestamps import parse_rfc3339

DELETION_TIMEOUT = 120.0  # seconds an eviction stays in disruptedPods unless the pod goes first


def selector_of(pdb: dict) -> LabelSelector:
    """policy/v1: an empty selector selects every pod of the namespace, a missing one none."""
    try:
        return LabelSelector.from_dict((pdb.get("spec") or {}).get("selector"))
    except ValueError:
        return LabelSelector.nothing()


def selected_pods(pdb: dict, pods: list[dict]) -> list[dict]:
    ns = pdb["metadata"].get("namespace")
    sel = selector_of(pdb)
    return [p for p in pods if p["metadata"].get("namespace") == ns and sel.matches(p["metadata"].get("labels") or {})]


def is_ready(pod: dict) -> bool:
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def scaled(value: Any, total: int, round_up: bool) -> int:
    """GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def expected_and_desired(pdb: dict, pods: list[dict], scale_of: Callable[[dict], int | None]) -> tuple[int, int]:
    """(expectedPods, desiredHealthy): an integer minAvailable counts the selected pods; a
    percentage or maxUnavailable counts the replicas their controllers want."""
    spec = pdb.get("spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if max_unavailable is not None:
        expected = expected_scale(pods, scale_of)
        return expected, max(0, expected - scaled(max_unavailable, expected, True))
    if min_available is not None:
        if isinstance(min_available, int):
            return len(pods), min_available
        expected = expected_scale(pods, scale_of)
        return expected, scaled(min_available, expected, True)
    return 0, 0


def expected_scale(pods: list[dict], scale_of: Callable[[dict], int | None]) -> int:
    """The summed replicas of the pods' controllers, each counted once; a pod without a
    controller counts as one."""
    seen: dict[str, int] = {}
    loose = 0
    for p in pods:
        ref = next((r for r in p["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if ref is None:
            loose += 1
            continue
        if ref.get("uid") not in seen:
            replicas = scale_of(ref)
            seen[ref.get("uid")] = 1 if replicas is None else replicas
    return loose + sum(seen.values())


def live_disruptions(pdb: dict, pods: list[dict], now: float) -> tuple[dict[str, str], float | None]:
    """disruptedPods still pending (pod present, not deleting, not expired), and when the next
    one expires."""
    names = {p["metadata"]["name"]: p for p in pods}
    out: dict[str, str] = {}
    next_expiry: float | None = None
    for name, ts in ((pdb.get("status") or {}).get("disruptedPods") or {}).items():
        pod = names.get(name)
        t = parse_rfc3339(ts, 0.0) or 0.0
        if pod is None or pod["metadata"].get("deletionTimestamp") or t + DELETION_TIMEOUT <= now:
            continue
        out[name] = ts
        expiry = t + DELETION_TIMEOUT
        next_expiry = expiry if next_expiry is None else min(next_expiry, expiry)
    return out, next_expiry


def budget_status(pdb: dict, all_pods: list[dict], scale_of: Callable[[dict], int | None], now: float,
                  now_text: str) -> tuple[dict, float | None]:
    """The PDB's status from its pods; and when to look again (a disruption expiring)."""
    pods = selected_pods(pdb, all_pods)
    disrupted, next_expiry = live_disruptions(pdb, pods, now)
    healthy = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
                  and p["metadata"]["name"] not in disrupted and is_ready(p))
    expected, desired = expected_and_desired(pdb, pods, scale_of)
    allowed = max(0, healthy - desired) if expected > 0 or desired == 0 else 0
    generation = pdb["metadata"].get("generation", 0)
    old = pdb.get("status") or {}
    condition = {"type": "DisruptionAllowed", "status": "True" if allowed > 0 else "False",
                 "reason": "SufficientPods" if allowed > 0 else "InsufficientPods", "message": "",
                 "observedGeneration": generation}
    previous = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    same = previous is not None and previous.get("status") == condition["status"] \
        and previous.get("reason") == condition["reason"]
    condition["lastTransitionTime"] = previous.get("lastTransitionTime") if same and previous else now_text
    status: dict = {"observedGeneration": generation, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                    "desiredHealthy": desired, "expectedPods": expected, "conditions": [condition]}
    if disrupted:
        status["disruptedPods"] = disrupted
    return status, next_expiry
