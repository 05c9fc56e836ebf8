"""NodeRestriction for TokenRequest (upstream's admitServiceAccount): a node may request only
tokens bound, by uid, to a pod scheduled on it — what its kubelet needs for the pods'
projected service-account tokens. TokenRequest itself then checks that the pod runs as the
service account, and binds the token to the node too."""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.registry.registry import Registry


def _forbidden(name: str, why: str) -> errors.Forbidden:
    return errors.Forbidden(f'serviceaccounts "{name}" is forbidden: {why}', {"name": name, "kind": "serviceaccounts"})


def admit_node_token_request(node: str, namespace: str, name: str, registry: Registry, req: dict) -> None:
    spec = req.get("spec") if isinstance(req.get("spec"), dict) else {}
    ref = spec.get("boundObjectRef")
    if not isinstance(ref, dict):
        raise _forbidden(name, "node requested token not bound to a pod")
    if not ref.get("uid"):
        raise _forbidden(name, "node requested token with a pod binding without a uid")
    if ref.get("kind") != "Pod" or ref.get("apiVersion") not in ("v1", ""):
        raise _forbidden(name, "node requested token not bound to a pod")
    pod = registry.store("", "pods").get(namespace, str(ref.get("name") or ""))
    if ref["uid"] != pod["metadata"].get("uid"):
        raise _forbidden(name, f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                               "record. The object might have been deleted and then recreated")
    if (pod.get("spec") or {}).get("nodeName") != node:
        raise _forbidden(name, "node requested token bound to a pod scheduled on a different node")
