"""What each kind contributes to the generic object store (upstream's rest.RESTCreateStrategy,
RESTUpdateStrategy and RESTDeleteStrategy, as plain data).

The generic store (registry/store.py) handles uid, generation, resourceVersion, timestamps,
status/spec separation, finalizers and persistence for every kind. Everything that differs
between kinds is a field of that kind's Strategy, so the store never asks which kind it holds:

    default(obj)                      static defaults, in place, at create and at update
    validate(obj) -> errors           the full object, metadata included
    validate_update(new, old)         the full new object plus immutability rules
    hooks                             side effects that commit or revert with the write
                                      (the Service ClusterIP/NodePort allocation)
    grace_period(obj, requested)      seconds a delete waits (pods bound to a node), 0 = now
    begin_delete(obj) -> pending      a delete in phases (namespaces turn Terminating first)
    should_delete_on_update(new, old) when an update finishes a pending delete
    updates                           the update endpoints: "" (the main resource), "status",
                                      and kind-specific ones (pods/binding, namespaces/finalize)
    admit(obj, name)                  mutating admission at create (may look other objects up)

A kind module builds its Strategy; registry/registry.py maps kinds to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pocketkube.api.fields import FieldError
from pocketkube.api.resources import Resource
from pocketkube.api.validation import dns1123_subdomain_errors
from pocketkube.registry.validation import validate_object_meta, validate_object_meta_update

Defaulter = Callable[[dict], None]
Validator = Callable[[dict], list[FieldError]]
UpdateValidator = Callable[[dict, dict], list[FieldError]]


class Transaction(Protocol):
    # Optional: `async def persist()`, awaited just before the write; it may raise
    # AllocationRaced (after reverting) to have the store run the hooks again.
    def commit(self) -> None: ...
    def revert(self) -> None: ...


class Hooks:
    """Side effects of a kind that must commit or revert with its write. The default: none."""

    # Whether a transaction's persist() may raise AllocationRaced (values shared with other API
    # servers through the store): the store then allocates on a copy it can retry with.
    may_race = False

    def before_create(self, obj: dict) -> Transaction | None:
        return None

    def before_update(self, new: dict, old: dict) -> Transaction | None:
        return None

    def after_delete(self, obj: dict) -> None:
        return None

    def repair(self, stored: list[dict]) -> list[str]:
        """Rebuild in-memory state from the stored objects at startup; the problems found."""
        return []


NO_HOOKS = Hooks()


class Admission:
    """An admission plugin that needs other kinds' state (registry/admission.py): mutate runs
    after defaulting and before validation, admit after validation just before the write (it may
    raise Forbidden, and charge a quota unless dry_run). The default: admits everything."""

    def mutate(self, res: Resource, obj: dict) -> None:
        return None

    async def admit(self, res: Resource, obj: dict, dry_run: bool) -> None:
        return None


class Merge(Enum):
    """How an update endpoint combines the written object with the stored one."""

    SPEC = "spec"  # the main resource: server-owned metadata and .status stay as stored
    STATUS = "status"  # the status subresource: only .status changes
    RAW = "raw"  # a server-side write (pods/binding): stored as the registry wrote it


@dataclass(frozen=True)
class UpdatePath:
    """One update endpoint of a kind: the main resource or one of its subresources."""

    merge: Merge = Merge.SPEC
    # The kind's own rule after the merge, in place (namespaces keep spec.finalizers on a main update).
    prepare: Callable[[dict, dict], None] | None = None
    validate: bool = True
    allocates: bool = True
    # This endpoint's own update validation (CSR approval vs status), instead of the strategy's.
    validate_update: UpdateValidator | None = None


MAIN = UpdatePath()
STATUS = UpdatePath(Merge.STATUS, allocates=False)


def no_grace(obj: dict, requested: int | None) -> int:
    """Most kinds are deleted at once, whatever grace period the client asked for."""
    return 0


def last_finalizer_removed(new: dict, old: dict) -> bool:
    """An object being deleted goes when an update removes its last finalizer, unless it is
    still in a graceful deletion (upstream's shouldDeleteDuringUpdate): a pod whose foreground
    finalizer the garbage collector removes stays until its kubelet has stopped its containers."""
    grace = old["metadata"].get("deletionGracePeriodSeconds")
    return bool(new["metadata"].get("deletionTimestamp") and old["metadata"].get("finalizers")
                and not new["metadata"].get("finalizers") and not grace)


@dataclass(frozen=True)
class Strategy:
    default: Defaulter
    validate: Validator
    validate_update: UpdateValidator
    # Whether the main resource endpoint may change .status (false when a status subresource exists).
    status_via_main: bool = False
    # Whether metadata.generation counts spec changes.
    tracks_generation: bool = False
    # Whether .status written at create is kept (the node agent registers Nodes with their status).
    keeps_status_on_create: bool = False
    # Whether DELETE answers with the object rather than a Status (upstream's ReturnDeletedObject).
    returns_deleted_object: bool = False
    hooks: Hooks = NO_HOOKS
    grace_period: Callable[[dict, int | None], int] = no_grace
    # Mutates a stored object for a delete that only begins; True while the object must stay.
    begin_delete: Callable[[dict], bool] | None = None
    should_delete_on_update: Callable[[dict, dict], bool] = last_finalizer_removed
    # Update endpoints beside "" and "status" (which every kind with a status subresource has).
    updates: Mapping[str, UpdatePath] = field(default_factory=lambda: {"": MAIN})
    # Mutating admission at create, after defaulting and before validation (the pod's
    # ServiceAccount plugin): admit(obj, name the client sent) mutates obj or raises an ApiError.
    admit: Callable[[dict, str], None] | None = None


def metadata_only(namespaced: bool) -> Strategy:
    """A kind validated only as ObjectMeta (names are DNS-1123 subdomains): the starting point of
    a new kind until its own defaulting and validation exist."""
    def validate(obj: dict) -> list[FieldError]:
        return validate_object_meta(obj, namespaced, dns1123_subdomain_errors)

    def validate_update(new: dict, old: dict) -> list[FieldError]:
        return validate(new) + validate_object_meta_update(new, old)

    return Strategy(default=lambda obj: None, validate=validate, validate_update=validate_update,
                    status_via_main=True)
