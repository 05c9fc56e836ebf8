"""The scale subresource of Deployments, ReplicaSets, StatefulSets and ReplicationControllers (upstream's ScaleREST in
pkg/registry/apps): an autoscaling/v1 Scale view of the object, and a write of spec.replicas.

The HTTP layer turns a PUT body or a PATCH of the current Scale into the new Scale; this
module checks it and writes it back through the generic store, retried on conflicts.
"""

from __future__ import annotations

from collections.abc import Callable

from pocketkube.api import errors
from pocketkube.api.fields import invalid
from pocketkube.api.selectors import LabelSelector


def scale_of(obj: dict) -> dict:
    """The Scale view of a Deployment, ReplicaSet, StatefulSet or ReplicationController."""
    m = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    try:
        if obj.get("kind") == "ReplicationController":  # an equality map, not a LabelSelector
            selector = str(LabelSelector.from_dict({"matchLabels": spec.get("selector") or {}}))
        else:
            selector = str(LabelSelector.from_dict(spec.get("selector") or {}))
    except (ValueError, TypeError):
        selector = ""
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in m},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector}}


def apply_scale(obj: dict, new_scale: object) -> dict:
    """The object with the new Scale's replicas and resourceVersion; Invalid for bad replicas."""
    replicas = (new_scale.get("spec") or {}).get("replicas", 0) if isinstance(new_scale, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.Invalid("Scale", obj["metadata"]["name"],
                             [invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
                             "autoscaling")
    rv = (new_scale.get("metadata") or {}).get("resourceVersion")  # type: ignore[union-attr]
    obj["metadata"]["resourceVersion"] = rv or ""
    obj.setdefault("spec", {})["replicas"] = replicas
    return obj


async def get_scale(store, namespace: str, name: str) -> dict:
    return scale_of(store.get(namespace, name))


async def update_scale(store, namespace: str, name: str, new_scale: Callable[[dict], object], *,
                       dry_run: bool = False) -> dict:
    """Write the Scale that `new_scale(current Scale)` returns; the resulting Scale."""
    updated = await store.guaranteed_update(namespace, name, lambda obj: apply_scale(obj, new_scale(scale_of(obj))),
                                            dry_run=dry_run)
    return scale_of(updated)
