"""ControllerRevisions: the template history of DaemonSets and StatefulSets (pure decisions).

A revision stores the owner's pod template as a strategic merge patch with `$patch: replace`
(upstream's getPatch), so `kubectl rollout undo` applies a revision's data to the owner as is
and `kubectl rollout history` shows it. A revision is named `<owner>-<hash of the template>`;
a template equal to an older revision's gets that revision renumbered to the newest rather
than a copy, as upstream's history.FindEqualRevisions / UpdateControllerRevision do, which is
how a rollback reuses its revision (mirrors pkg/controller/history).
"""

from __future__ import annotations

import copy

from pocketkube.api import errors
from pocketkube.api.meta import controller_ref, deep_get
from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.client.interface import Client
from pocketkube.controllers.base import owner_reference
from pocketkube.controllers.deployment_plan import compute_hash, semantically_equal

__all__ = [
    "CONTROLLER_REVISIONS",
    "REVISION_HASH_LABEL",
    "ensure_revision",
    "equal_revision",
    "new_revision",
    "next_revision_number",
    "observed",
    "owned_revisions",
    "prune_revisions",
    "revision_data",
    "revision_name",
    "revisions_to_prune",
    "template_hash",
    "template_of",
]

CONTROLLER_REVISIONS = BY_PLURAL[("apps", "controllerrevisions")]
REVISION_HASH_LABEL = "controller-revision-hash"
_MAX_COLLISIONS = 10
_MAX_PREFIX = 223  # a revision name stays a DNS subdomain with its hash (ControllerRevisionName)


def revision_data(owner: dict) -> dict:
    """The owner's template as a replace patch of spec.template (getPatch)."""
    template = copy.deepcopy(deep_get(owner, "spec", "template", default=None) or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: dict) -> dict:
    """The pod template a revision stores (without the patch directive)."""
    template = copy.deepcopy(deep_get(revision, "data", "spec", "template", default=None) or {})
    template.pop("$patch", None)
    return template


def template_hash(owner: dict, collision_count: int | None = None) -> str:
    return compute_hash(deep_get(owner, "spec", "template", default=None) or {}, collision_count)


def revision_name(owner_name: str, hash_: str) -> str:
    return f"{owner_name[:_MAX_PREFIX]}-{hash_}"


def new_revision(owner: dict, owner_res: Resource, number: int, collision_count: int | None = None) -> dict:
    """A ControllerRevision of the owner's current template (NewControllerRevision)."""
    hash_ = template_hash(owner, collision_count)
    labels = dict(deep_get(owner, "spec", "template", "metadata", "labels", default=None) or {})
    labels[REVISION_HASH_LABEL] = hash_
    m = owner["metadata"]
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": revision_name(m["name"], hash_), "namespace": m["namespace"], "labels": labels,
                         "ownerReferences": [owner_reference(owner, owner_res)]},
            "data": revision_data(owner), "revision": number}


def owned_revisions(owner: dict, revisions: list[dict]) -> list[dict]:
    """The revisions the owner controls, oldest revision first."""
    uid = owner["metadata"]["uid"]
    mine = [r for r in revisions if (controller_ref(r) or {}).get("uid") == uid]
    return sorted(mine, key=lambda r: (r.get("revision") or 0, r["metadata"]["name"]))


def equal_revision(revisions: list[dict], data: dict) -> dict | None:
    """The newest revision whose data equals `data`."""
    equal = [r for r in revisions if semantically_equal(r.get("data"), data)]
    return equal[-1] if equal else None


def next_revision_number(revisions: list[dict]) -> int:
    return max((r.get("revision") or 0 for r in revisions), default=0) + 1


def revisions_to_prune(revisions: list[dict], live: set[str], limit: int) -> list[dict]:
    """The oldest revisions, beyond `limit` of them, that no live pod or status names (truncateHistory)."""
    dead = [r for r in revisions if r["metadata"]["name"] not in live]
    return dead[:max(len(dead) - max(limit, 0), 0)]


def observed(owner: dict, status: dict) -> dict:
    """`status` with the owner's observedGeneration and its collisionCount (revision names rehashed)."""
    if deep_get(owner, "metadata", "generation") is not None:
        status["observedGeneration"] = owner["metadata"]["generation"]
    collision = deep_get(owner, "status", "collisionCount")
    if collision is not None:
        status["collisionCount"] = collision
    return status


# ---- writes ----

async def ensure_revision(client: Client, owner: dict, owner_res: Resource,
                          owned: list[dict]) -> tuple[dict, list[dict], int | None]:
    """The revision of the owner's current template, created or renumbered to the newest as needed;
    with the owned revisions after that write and the collision count the name needed."""
    data = revision_data(owner)
    existing = equal_revision(owned, data)
    collision = deep_get(owner, "status", "collisionCount")
    if existing is not None:
        if existing is owned[-1]:
            return existing, owned, collision
        updated = await client.update(CONTROLLER_REVISIONS, {**existing, "revision": next_revision_number(owned)})
        return updated, [*(r for r in owned if r is not existing), updated], collision
    namespace = owner["metadata"]["namespace"]
    for _ in range(_MAX_COLLISIONS):
        revision = new_revision(owner, owner_res, next_revision_number(owned), collision)
        try:
            created = await client.create(CONTROLLER_REVISIONS, revision, namespace)
            return created, [*owned, created], collision
        except errors.AlreadyExists:
            stored = await client.get(CONTROLLER_REVISIONS, namespace, revision["metadata"]["name"])
            if ((controller_ref(stored) or {}).get("uid") == owner["metadata"]["uid"]
                    and semantically_equal(stored.get("data"), data)):
                return stored, [*owned, stored], collision
            collision = (collision or 0) + 1  # a namesake with other data: rehash
    raise errors.Conflict(f"no free revision name for {owner['metadata']['name']} after {_MAX_COLLISIONS} collisions")


async def prune_revisions(client: Client, revisions: list[dict], live: set[str], limit: int) -> None:
    for r in revisions_to_prune(revisions, live, limit):
        try:
            await client.delete(CONTROLLER_REVISIONS, r["metadata"]["namespace"], r["metadata"]["name"],
                                preconditions={"uid": r["metadata"]["uid"]})
        except errors.NotFound:
            pass
