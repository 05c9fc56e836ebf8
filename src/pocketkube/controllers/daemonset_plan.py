"""DaemonSet decisions (pure; mirrors pkg/controller/daemon: daemon_controller.go, update.go and
util/daemonset_util.go).

- Which nodes should run a daemon pod: the template's nodeSelector and required node affinity,
  and the node's taints against the template's tolerations plus the ones every daemon pod gets
  (not-ready/unreachable NoExecute; disk/memory/pid pressure and unschedulable NoSchedule;
  network-unavailable for host-network pods). An untolerated NoSchedule taint stops new pods but
  keeps a running one; an untolerated NoExecute taint removes it.
- Daemon pods are pinned to their node with a required node affinity on `metadata.name`
  (matchFields) and bound by the scheduler, as upstream since 1.12.
- Per node, what to create and delete (podsShouldBeOnNode), then the rolling update
  (maxUnavailable, or maxSurge: the new pod first, the old one once the new is available).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

from pocketkube.api.meta import deep_get
from pocketkube.api.nodeaffinity import pod_matches_node_affinity
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.taints import (
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    UNSCHEDULABLE_TAINT,
    find_untolerated_taint,
)
from pocketkube.controllers.base import owner_reference
from pocketkube.controllers.deployment_plan import created_at, scaled_value
from pocketkube.controllers.history import REVISION_HASH_LABEL, observed
from pocketkube.controllers.replicaset import is_pod_available, is_pod_ready

__all__ = [
    "DAEMONSETS",
    "TEMPLATE_GENERATION",
    "TEMPLATE_GENERATION_LABEL",
    "NodePlan",
    "daemon_pod",
    "daemon_tolerations",
    "plan_nodes",
    "rolling_update",
    "should_run",
    "status_of",
    "target_node",
]

DAEMONSETS = BY_PLURAL[("apps", "daemonsets")]
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
_PRESSURE_TAINTS = ("node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                    "node.kubernetes.io/pid-pressure", UNSCHEDULABLE_TAINT)
_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"


def daemon_tolerations(pod_spec: dict) -> list[dict]:
    """The template's tolerations plus those every daemon pod gets (AddOrUpdateDaemonPodTolerations)."""
    tolerations = list(pod_spec.get("tolerations") or [])
    wanted = [{"key": k, "operator": "Exists", "effect": "NoExecute"} for k in (NOT_READY_TAINT, UNREACHABLE_TAINT)]
    wanted += [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in _PRESSURE_TAINTS]
    if pod_spec.get("hostNetwork"):
        wanted.append({"key": _NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"})
    for t in wanted:
        tolerations = [x for x in tolerations if not (x.get("key") == t["key"] and x.get("effect") == t["effect"])]
        tolerations.append(t)
    return tolerations


def should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(should run a new pod, should keep a running one) on `node` (NodeShouldRunDaemonPod)."""
    spec = deep_get(ds, "spec", "template", "spec", default=None) or {}
    wanted_node = spec.get("nodeName")
    if wanted_node and wanted_node != node["metadata"]["name"]:
        return False, False
    if not pod_matches_node_affinity(spec, node):
        return False, False
    tolerations = daemon_tolerations(spec)
    taints = deep_get(node, "spec", "taints", default=None) or []
    if find_untolerated_taint(taints, tolerations, ("NoExecute",)) is not None:
        return False, False
    if find_untolerated_taint(taints, tolerations, ("NoSchedule",)) is not None:
        return False, True
    return True, True


def target_node(pod: dict) -> str:
    """The node a daemon pod is for: its nodeName, or the node its affinity pins it to (GetTargetNodeName)."""
    node = deep_get(pod, "spec", "nodeName", default="")
    if node:
        return node
    terms = deep_get(pod, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                     "nodeSelectorTerms", default=None) or []
    for term in terms:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(values) == 1:
                return values[0]
    return ""


def _pin_to_node(pod_spec: dict, node_name: str) -> None:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: one required term, matchFields metadata.name In [node]."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = pod_spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = (required or {}).get("nodeSelectorTerms") or []
    if not terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
        return
    for t in terms:  # keep each term's label expressions, replace its field requirements
        t["matchFields"] = copy.deepcopy(term["matchFields"])


def template_generation(ds: dict) -> str | None:
    return (deep_get(ds, "metadata", "annotations", default=None) or {}).get(TEMPLATE_GENERATION)


def daemon_pod(ds: dict, node_name: str, hash_: str) -> dict:
    """The pod for one node: template labels plus the revision hash and template generation."""
    template = deep_get(ds, "spec", "template", default=None) or {}
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[REVISION_HASH_LABEL] = hash_
    generation = template_generation(ds)
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = generation
    meta: dict = {"generateName": ds["metadata"]["name"] + "-", "namespace": ds["metadata"]["namespace"],
                  "labels": labels, "ownerReferences": [owner_reference(ds, DAEMONSETS)]}
    for key in ("annotations", "finalizers"):
        if tmeta.get(key):
            meta[key] = copy.deepcopy(tmeta[key])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["tolerations"] = daemon_tolerations(spec)
    _pin_to_node(spec, node_name)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def is_updated(pod: dict, hash_: str, generation: str | None) -> bool:
    """IsPodUpdated: the pod carries the current template's hash or generation."""
    labels = deep_get(pod, "metadata", "labels", default=None) or {}
    return labels.get(REVISION_HASH_LABEL) == hash_ or (
        generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation)


def allows_surge(ds: dict) -> bool:
    return _rolling_value(ds, "maxSurge", 1) > 0


def _rolling(ds: dict) -> dict | None:
    strategy = deep_get(ds, "spec", "updateStrategy", default=None) or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def _rolling_value(ds: dict, key: str, total: int) -> int:
    rolling = _rolling(ds)
    if rolling is None:
        return 0
    try:
        return scaled_value(rolling.get(key, 0), total, True)
    except ValueError:
        return 0


def nodes_to_pods(pods: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in pods:
        out.setdefault(target_node(p), []).append(p)
    return out


@dataclass
class NodePlan:
    create_on: list[str] = field(default_factory=list)  # node names
    delete: list[dict] = field(default_factory=list)  # pods


def _by_age(pods: list[dict]) -> list[dict]:
    return sorted(pods, key=created_at)


def plan_nodes(ds: dict, nodes: list[dict], pods: list[dict], hash_: str) -> NodePlan:
    """What the manage loop does on each node (podsShouldBeOnNode), and to pods of vanished nodes."""
    plan = NodePlan()
    by_node = nodes_to_pods(pods)
    surge = allows_surge(ds)
    names = {n["metadata"]["name"] for n in nodes}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        run, keep = should_run(ds, node)
        here = by_node.get(name, [])
        live = [p for p in here if not deep_get(p, "metadata", "deletionTimestamp")]
        if run and not here:
            plan.create_on.append(name)
        elif keep:
            # a finished pod is deleted; its replacement comes once it is gone (next sync)
            finished = [p for p in live if deep_get(p, "status", "phase") in ("Failed", "Succeeded")]
            plan.delete.extend(finished)
            plan.delete.extend(_excess([p for p in live if p not in finished], surge, hash_))
        else:
            plan.delete.extend(live)
    for node_name, here in by_node.items():  # pods for nodes that are gone
        if node_name not in names:
            plan.delete.extend(p for p in here if not deep_get(p, "metadata", "deletionTimestamp"))
    return plan


def _excess(running: list[dict], surge: bool, hash_: str) -> list[dict]:
    """Of several daemon pods on one node, those to delete: all but the oldest, or with surge
    the oldest new and oldest old pod while the new one is not ready yet."""
    if len(running) <= 1:
        return []
    ordered = _by_age(running)
    if not surge:
        return ordered[1:]
    extra: list[dict] = []
    oldest_new = oldest_old = None
    for p in ordered:
        is_new = (deep_get(p, "metadata", "labels", default=None) or {}).get(REVISION_HASH_LABEL) == hash_
        if is_new and oldest_new is None:
            oldest_new = p
        elif not is_new and oldest_old is None:
            oldest_old = p
        else:
            extra.append(p)
    if oldest_new is not None and oldest_old is not None and (not is_pod_ready(oldest_old) or is_pod_ready(oldest_new)):
        extra.append(oldest_old)
    return extra


def _new_and_old(pods: list[dict], hash_: str, generation: str | None) -> tuple[dict | None, dict | None, bool]:
    """findUpdatedPodsOnNode: the node's new and old pod; False when it has two of either."""
    new = old = None
    for p in pods:
        if deep_get(p, "metadata", "deletionTimestamp"):
            continue
        if is_updated(p, hash_, generation):
            if new is not None:
                return None, None, False
            new = p
        else:
            if old is not None:
                return None, None, False
            old = p
    return new, old, True


def rolling_update(ds: dict, nodes: list[dict], pods: list[dict], hash_: str, now: float) -> NodePlan:
    """One step of the rolling update within maxUnavailable, or maxSurge (update.go: rollingUpdate)."""
    desired = sum(1 for n in nodes if should_run(ds, n)[0])
    max_surge = _rolling_value(ds, "maxSurge", desired)
    max_unavailable = _rolling_value(ds, "maxUnavailable", desired)
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    min_ready = int(deep_get(ds, "spec", "minReadySeconds", default=0) or 0)
    generation = template_generation(ds)
    plan = NodePlan()
    by_node = {k: v for k, v in sorted(nodes_to_pods(pods).items())}
    if max_surge == 0:
        unavailable, allowed, candidates = 0, [], []
        for here in by_node.values():
            new, old, ok = _new_and_old(here, hash_, generation)
            if not ok or (new is None) == (old is None):
                unavailable += 1
            elif new is not None:
                unavailable += not is_pod_available(new, min_ready, now)
            elif not is_pod_available(old, min_ready, now):
                allowed.append(old)
            elif unavailable < max_unavailable:
                candidates.append(old)
        room = min(max(max_unavailable - unavailable, 0), len(candidates))
        plan.delete = allowed + candidates[:room]
        return plan
    surged, allowed_nodes, candidate_nodes = 0, [], []
    for node_name, here in by_node.items():
        new, old, ok = _new_and_old(here, hash_, generation)
        if not ok:
            surged += 1
        elif old is None:
            continue
        elif new is None:
            if not is_pod_available(old, min_ready, now):
                allowed_nodes.append(node_name)
            elif surged < max_surge:
                candidate_nodes.append(node_name)
        elif not is_pod_available(new, min_ready, now):
            surged += 1
        else:
            plan.delete.append(old)
    room = min(max(max_surge - surged, 0), len(candidate_nodes))
    plan.create_on = allowed_nodes + candidate_nodes[:room]
    return plan


def status_of(ds: dict, nodes: list[dict], pods: list[dict], hash_: str, now: float) -> dict:
    """updateDaemonSetStatus's counts over the nodes that should run a pod."""
    by_node = nodes_to_pods(pods)
    min_ready = int(deep_get(ds, "spec", "minReadySeconds", default=0) or 0)
    generation = template_generation(ds)
    desired = current = ready = available = updated = misscheduled = 0
    for node in nodes:
        run, _ = should_run(ds, node)
        here = _by_age(by_node.get(node["metadata"]["name"], []))
        if not run:
            misscheduled += bool(here)
            continue
        desired += 1
        if not here:
            continue
        current += 1
        pod = here[0]
        if is_pod_ready(pod):
            ready += 1
            available += is_pod_available(pod, min_ready, now)
        updated += is_updated(pod, hash_, generation)
    status = {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
              "desiredNumberScheduled": desired, "numberReady": ready}
    for key, value in (("updatedNumberScheduled", updated), ("numberAvailable", available),
                       ("numberUnavailable", desired - available)):
        if value:
            status[key] = value  # omitempty, as upstream serializes
    return observed(ds, status)
