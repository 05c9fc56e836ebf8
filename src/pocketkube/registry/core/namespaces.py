"""Namespace lifecycle (upstream's pkg/registry/core/namespace and the NamespaceLifecycle
admission plugin).

Deleting a namespace happens in phases. The first DELETE only marks it: deletionTimestamp set,
phase Terminating. The namespace controller (controllers/namespace.py) then deletes its content
and removes its `kubernetes` finalizer through the `finalize` subresource; the update that
leaves spec.finalizers empty deletes the namespace, as does a DELETE once it is empty.
A main-resource update cannot change spec.finalizers; `finalize` is the only way.

Admission: no new content in a namespace that is missing or terminating, and the system
namespaces cannot be deleted.
"""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.registry.core import others
from pocketkube.registry.strategy import MAIN, Strategy, UpdatePath

FINALIZE = "finalize"
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def _spec_finalizers(ns: dict) -> list:
    spec = ns.get("spec")
    return (spec.get("finalizers") or []) if isinstance(spec, dict) else []


def begin_delete(ns: dict) -> bool:
    """Mark a namespace Terminating; True while it must stay (not yet finalized)."""
    terminating = bool(ns["metadata"].get("deletionTimestamp"))
    if not terminating:
        ns["metadata"]["deletionTimestamp"] = now_rfc3339()
        ns.setdefault("status", {})["phase"] = "Terminating"
    return not terminating or bool(_spec_finalizers(ns))


def keep_spec_finalizers(new: dict, old: dict) -> None:
    """A main-resource update leaves spec.finalizers as stored: only `finalize` changes them."""
    finalizers = (old.get("spec") or {}).get("finalizers")
    spec = new.get("spec")
    if not isinstance(spec, dict):
        spec = new["spec"] = {}
    if finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = finalizers


def finalized(new: dict, old: dict) -> bool:
    """A terminating namespace goes when no finalizer of either kind is left."""
    m = new["metadata"]
    return bool(m.get("deletionTimestamp") and not m.get("finalizers") and not _spec_finalizers(new))


def strategy() -> Strategy:
    return Strategy(default=others.namespace_default, validate=others.namespace_validate,
                    validate_update=others.namespace_validate_update, tracks_generation=True,
                    returns_deleted_object=True, begin_delete=begin_delete, should_delete_on_update=finalized,
                    updates={"": UpdatePath(prepare=keep_spec_finalizers), FINALIZE: MAIN})


def check_writable(namespace: dict | None, name: str) -> None:
    """Namespaced creates need a live namespace (NamespaceLifecycle admission)."""
    if namespace is None:
        raise errors.NotFound.object("namespaces", name)
    if namespace["metadata"].get("deletionTimestamp"):
        raise errors.Forbidden(
            f"unable to create new content in namespace {name} because it is being terminated",
            {"name": name, "kind": "namespaces"})


def check_deletable(name: str) -> None:
    """The system namespaces stay (NamespaceLifecycle admission)."""
    if name in PROTECTED_NAMESPACES:
        raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                               {"name": name, "kind": "namespaces"})
