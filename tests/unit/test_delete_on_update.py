"""When an update that removes the last finalizer deletes the object (upstream's shouldDeleteDuringUpdate)."""

from __future__ import annotations

from pocketkube.registry.strategy import last_finalizer_removed


def obj(finalizers: list[str], grace: int | None, deleting: bool = True) -> dict:
    meta: dict = {"finalizers": finalizers}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    if grace is not None:
        meta["deletionGracePeriodSeconds"] = grace
    return {"metadata": meta}


def test_the_last_finalizer_of_a_deleted_object_deletes_it():
    assert last_finalizer_removed(obj([], 0), obj(["foregroundDeletion"], 0))
    assert last_finalizer_removed(obj([], None), obj(["kubernetes"], None))


def test_a_pod_in_graceful_deletion_waits_for_its_kubelet():
    """Foreground deletion of a Deployment: the GC removes the pods' finalizer, but each pod still
    has its 30 s grace; the kubelet stops the containers, then deletes it with grace 0."""
    assert not last_finalizer_removed(obj([], 30), obj(["foregroundDeletion"], 30))


def test_remaining_finalizers_or_no_deletion_keep_the_object():
    assert not last_finalizer_removed(obj(["orphan"], 0), obj(["orphan", "foregroundDeletion"], 0))
    assert not last_finalizer_removed(obj([], None, deleting=False), obj(["x"], None, deleting=False))
