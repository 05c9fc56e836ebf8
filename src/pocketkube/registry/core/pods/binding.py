"""The pods/binding subresource (upstream's BindingREST in pkg/registry/core/pod/storage):
the scheduler assigns a pod to a node with a server-side write of spec.nodeName and the
PodScheduled condition, refused for a pod already assigned or being deleted."""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.api.fields import required
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.registry.core.pods.strategy import BINDING


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
    await store.guaranteed_update(namespace, name, lambda pod: assign(pod, node), subresource=BINDING)
