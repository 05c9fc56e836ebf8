"""The Pod strategy and the pods/binding subresource (upstream's pkg/registry/core/pod).

What the generic store does differently for pods: defaults carry the DefaultTolerationSeconds
setting the server was started with (configuration, not a module global); a pod bound to a
node terminates gracefully, its kubelet finishing the delete; and the scheduler's binding is
a server-side write of spec.nodeName, which a pod update may not change.
"""

from __future__ import annotations

from functools import partial

from pocketkube.api import errors
from pocketkube.api.fields import required
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.registry.core import pods
from pocketkube.registry.strategy import MAIN, Merge, Strategy, UpdatePath

# The binding is written as the registry composed it: no merge rules, no update validation
# (spec.nodeName is immutable to updates), no allocation.
BINDING = "binding"
_BINDING_UPDATE = UpdatePath(Merge.RAW, validate=False, allocates=False)


def grace_period(pod: dict, requested: int | None) -> int:
    """Only pods bound to a node and not finished terminate gracefully; the others go at once."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName"):
        return 0
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is None:
        requested = spec.get("terminationGracePeriodSeconds", 30)
    try:
        return max(0, int(requested))
    except (TypeError, ValueError):
        return 30


def strategy(*, default_toleration_seconds: int = pods.DEFAULT_TOLERATION_SECONDS) -> Strategy:
    return Strategy(default=partial(pods.default, toleration_seconds=default_toleration_seconds),
                    validate=pods.validate, validate_update=pods.validate_update,
                    tracks_generation=True, returns_deleted_object=True, grace_period=grace_period,
                    updates={"": MAIN, BINDING: _BINDING_UPDATE})


def binding_target(binding: dict, pod_name: str) -> str:
    """The node a Binding names; Invalid when it names none."""
    target = binding.get("target") if isinstance(binding.get("target"), dict) else {}
    node = target.get("name")
    if not isinstance(node, str) or not node:
        raise errors.Invalid("Binding", pod_name, [required("target.name")])
    return node


def assign(pod: dict, node: str) -> dict:
    """The pod bound to `node`, with its PodScheduled condition; Conflict when it cannot be."""
    name = pod["metadata"]["name"]
    if pod["metadata"].get("deletionTimestamp"):
        raise errors.Conflict(f"pod {name} is being deleted, cannot be assigned to a host",
                              {"name": name, "kind": "pods"})
    current = (pod.get("spec") or {}).get("nodeName")
    if current:
        raise errors.Conflict(f'pod {name} is already assigned to node "{current}"', {"name": name, "kind": "pods"})
    pod["spec"]["nodeName"] = node
    conditions = [c for c in (pod.setdefault("status", {}).get("conditions") or [])
                  if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": now_rfc3339()})
    pod["status"]["conditions"] = conditions
    return pod


async def bind(store, namespace: str, name: str, binding: dict) -> None:
    """POST pods/{name}/binding: assign the pod to the Binding's target node."""
    node = binding_target(binding, name)
    await store.guaranteed_update(namespace, name, lambda pod: assign(pod, node), BINDING)
