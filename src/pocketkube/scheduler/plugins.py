"""Pure filter and score functions of the scheduler (mirrors pkg/scheduler/framework/plugins).

Filters run per node in upstream's order and the first failure is the node's reason:
NodeUnschedulable → TaintToleration (NoSchedule/NoExecute; a node whose Ready condition is
not True counts as carrying the not-ready/unreachable taint, as the node lifecycle controller
would add) → NodeAffinity (nodeSelector and required node affinity) → NodeResourcesFit (the pods capacity,
then the requests of the pods on the node plus this one's against the node's allocatable: every
resource short is a reason, `Insufficient cpu`). Reasons are upstream's strings, so an
unschedulable pod's message reads exactly like Kubernetes'.

Scoring is deliberately simpler than upstream's default profile: spread the pods of one
controller (fewest pods with the same controller uid on the node), then fewest pods overall,
then random.

As upstream (schedule_one.go numFeasibleNodesToFind), a large cluster is not filtered whole for
every pod: filtering starts where the previous pod's stopped and ends once enough feasible nodes
are found (percentageOfNodesToScore, adaptive: 50 % − nodes/125, at least 5 % and 100 nodes).
Only when no node fits has every node been looked at, so the FitError counts all of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from pocketkube.api.nodeaffinity import matches_node_selector_term, pod_matches_node_affinity
from pocketkube.api.quantity import parse
from pocketkube.api.quota import pod_totals
from pocketkube.api.taints import (
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    UNSCHEDULABLE_TAINT,
    find_untolerated_taint,
    node_ready_status,
    tolerates,
)
from pocketkube.scheduler.volumebinding import UNRESOLVABLE as VOLUME_UNRESOLVABLE

__all__ = [
    "NO_NODES_MESSAGE",
    "Decision",
    "NodeInfo",
    "filter_node",
    "filter_reasons",
    "fit_error_message",
    "matches_node_selector_term",
    "num_feasible_nodes_to_find",
    "pod_controller_uid",
    "prefilter_message",
    "select_node",
]

NO_NODES_MESSAGE = "no nodes available to schedule pods"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
# Failures that evicting other pods cannot fix (UnschedulableAndUnresolvable upstream).
_UNRESOLVABLE_PREFIXES = (REASON_UNSCHEDULABLE, REASON_SELECTOR, "node(s) had untolerated taint",
                          *VOLUME_UNRESOLVABLE)
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


@dataclass
class NodeInfo:
    """A node with the pods the scheduler counts on it (bound and assumed)."""
    node: dict
    pod_count: int = 0
    by_controller: dict[str, int] = field(default_factory=dict)
    requested: dict[str, Fraction] = field(default_factory=dict)  # summed requests of its pods
    # The node's allocatable as parsed, and the raw map it was parsed from: quantities are parsed
    # once per change of the node's allocatable, not once per pod and node.
    _parsed: dict[str, Fraction | None] = field(default_factory=dict, repr=False, compare=False)
    _parsed_from: dict | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]

    def allocatable(self, name: str) -> Fraction | None:
        """The node's allocatable `name` parsed (None when it does not report it)."""
        raw = (self.node.get("status") or {}).get("allocatable") or {}
        if raw != self._parsed_from:  # a few short strings: far cheaper than parsing them
            self._parsed, self._parsed_from = {}, dict(raw)
        if name not in self._parsed:
            self._parsed[name] = (parse(raw[name]) or Fraction(0)) if name in raw else None
        return self._parsed[name]

    def add_pod(self, pod: dict, requests: dict[str, Fraction] | None = None) -> None:
        self._account(pod, pod_totals(pod) if requests is None else requests, 1)

    def remove_pod(self, pod: dict, requests: dict[str, Fraction] | None = None) -> None:
        """Undo add_pod (with the same pod object or requests it was added with)."""
        self._account(pod, pod_totals(pod) if requests is None else requests, -1)

    def _account(self, pod: dict, requests: dict[str, Fraction], sign: int) -> None:
        self.pod_count += sign
        for name, amount in requests.items():
            total = self.requested.get(name, Fraction(0)) + sign * amount
            if total:
                self.requested[name] = total
            else:
                self.requested.pop(name, None)
        uid = pod_controller_uid(pod)
        if uid:
            count = self.by_controller.get(uid, 0) + sign
            if count > 0:
                self.by_controller[uid] = count
            else:
                self.by_controller.pop(uid, None)


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""  # why no node fits (FitError), when node is None
    processed: int = 0  # how many nodes were filtered


def pod_controller_uid(pod: dict) -> str:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid", "")
    return ""


def _implied_taints(node: dict) -> list[dict]:
    """The taints a node lifecycle controller puts on a node that is not Ready (TaintNodesByCondition)."""
    status = node_ready_status(node)
    if status == "True":
        return []
    key = NOT_READY_TAINT if status == "False" else UNREACHABLE_TAINT
    return [{"key": key, "effect": "NoSchedule"}]


def _pod_capacity(node: dict) -> int | None:
    status = node.get("status") or {}
    value = (status.get("allocatable") or status.get("capacity") or {}).get("pods")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _insufficient(requests: dict[str, Fraction], info: NodeInfo) -> list[str]:
    """NodeResourcesFit's reasons: each requested resource the node's allocatable cannot hold
    beside its pods' requests. A node that reports no cpu/memory at all is not limited in them;
    an extended resource it does not report has none."""
    if not requests:
        return []
    reasons = []
    for name in ("cpu", "memory", "ephemeral-storage", *sorted(k for k in requests if "/" in k)):
        amount = requests.get(name)
        if amount is None or amount <= 0:
            continue
        available = info.allocatable(name)
        if available is None:
            if "/" not in name:
                continue
            available = 0
        used = info.requested.get(name)
        if (amount if used is None else used + amount) > available:
            reasons.append(f"Insufficient {name}")
    return reasons


def filter_node(pod: dict, info: NodeInfo) -> str | None:
    """Why `pod` cannot run on this node (upstream's first reason string), or None when it fits."""
    reasons = filter_reasons(pod, info, pod_totals(pod))
    return reasons[0] if reasons else None


def filter_reasons(pod: dict, info: NodeInfo, requests: dict[str, Fraction] | None = None) -> list[str]:
    """Why `pod` cannot run on this node: the failing plugin's reasons (upstream's strings).
    `requests`: the pod's effective requests, when the caller has them already."""
    node = info.node
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not any(
            tolerates(t, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}) for t in tolerations):
        return [REASON_UNSCHEDULABLE]
    taints = [*((node.get("spec") or {}).get("taints") or []), *_implied_taints(node)]
    taint = find_untolerated_taint(taints, tolerations, ("NoSchedule", "NoExecute"))
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"]
    if not pod_matches_node_affinity(pod.get("spec") or {}, node):
        return [REASON_SELECTOR]
    capacity = _pod_capacity(node)
    too_many = [REASON_TOO_MANY_PODS] if capacity is not None and info.pod_count + 1 > capacity else []
    return too_many + _insufficient(pod_totals(pod) if requests is None else requests, info)


def _histogram(reasons: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))


def fit_error_message(node_count: int, reasons: list[str] | list[list[str]]) -> str:
    """FitError.Error() followed by the preemption post-filter's verdict, as upstream prints them.
    `reasons` holds each node's reason, or each node's list of reasons (all are counted; the
    preemption verdict is one per node)."""
    if node_count == 0:
        return NO_NODES_MESSAGE
    per_node = [[r] if isinstance(r, str) else r for r in reasons]
    message = f"0/{node_count} nodes are available: {_histogram(r for rs in per_node for r in rs)}."
    preemption = [PREEMPTION_NOT_HELPFUL if any(r.startswith(_UNRESOLVABLE_PREFIXES) for r in rs) else NO_VICTIMS
                  for rs in per_node]
    return message + f" preemption: 0/{node_count} nodes are available: {_histogram(preemption)}."


def prefilter_message(node_count: int, reason: str) -> str:
    """A pod-level (PreFilter) rejection as FitError prints it: no node was even looked at."""
    if node_count == 0:
        return NO_NODES_MESSAGE
    return (f"0/{node_count} nodes are available: {reason}. preemption: 0/{node_count} nodes are available: "
            f"{node_count} {PREEMPTION_NOT_HELPFUL}.")


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes to find before filtering stops (upstream numFeasibleNodesToFind);
    `percentage` 0 = adaptive."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125,
                         MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def select_node(pod: dict, nodes: list[NodeInfo], rng: random.Random | None = None, *,
                extra_filter: Callable[[dict], str | None] | None = None,
                start: int = 0, percentage: int = 0) -> Decision:
    """Filter, then score: fewest pods of the same controller, then fewest pods, then random.
    `extra_filter(node)` runs after the built-in filters (the volume checks). Filtering begins
    at nodes[start] (wrapping) and stops after num_feasible_nodes_to_find(len(nodes), percentage)
    feasible nodes; Decision.processed says how many nodes were looked at (the caller's next start
    is start + processed, as upstream's nextStartNodeIndex)."""
    rng = rng or random.Random()
    feasible: list[NodeInfo] = []
    reasons: list[list[str]] = []
    requests = pod_totals(pod)
    total = len(nodes)
    wanted = num_feasible_nodes_to_find(total, percentage)
    start = start % total if total else 0
    processed = 0
    for i in range(total):
        info = nodes[(start + i) % total]
        processed += 1
        why = filter_reasons(pod, info, requests)
        if not why and extra_filter is not None:
            extra = extra_filter(info.node)
            why = [extra] if extra else []
        if not why:
            feasible.append(info)
            if len(feasible) >= wanted:
                break
        else:
            reasons.append(why)
    if not feasible:
        return Decision(None, fit_error_message(total, reasons), processed)
    owner = pod_controller_uid(pod)
    best = min(feasible, key=lambda i: (i.by_controller.get(owner, 0) if owner else 0, i.pod_count, rng.random()))
    return Decision(best.name, processed=processed)
