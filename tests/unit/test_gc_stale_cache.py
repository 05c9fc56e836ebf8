"""The garbage collector never deletes a dependent on a stale cached copy.

When an owner is deleted with the `orphan` finalizer, the collector removes the owner reference
from its dependents, then lets the owner go; the owner's DELETED event then re-checks its
dependents. If the dependent's informer has not yet seen the reference removed, the cached copy
still names the (now gone) owner and looks dangling: deleting it would destroy an orphan the user
asked to keep (a race seen in tests/integration/test_controllers.py). The delete is therefore
conditional on the resourceVersion that was judged, so a newer version is judged again.
"""

from __future__ import annotations

import copy

import pytest

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.base import SharedInformers
from pocketkube.controllers.gc import GarbageCollector
from pocketkube.testing.fakeclient import FakeClient

PODS = BY_PLURAL[("", "pods")]
SERVICES = BY_PLURAL[("", "services")]


def hold_in_cache(gc: GarbageCollector, pod: dict) -> None:
    """What the pod informer would hold and tell the collector, without running it."""
    gc.by_resource[("", "pods")].cache["ns/p"] = pod
    gc._adder(PODS)(pod)


async def test_a_dependent_orphaned_after_the_cached_copy_is_not_deleted():
    fake = FakeClient()
    owner_ref = {"apiVersion": "v1", "kind": "Service", "name": "gone", "uid": "owner-uid",
                 "blockOwnerDeletion": True}
    cached = fake.seed(PODS, {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "p", "namespace": "ns", "ownerReferences": [owner_ref]},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}})
    orphaned = copy.deepcopy(cached)
    orphaned["metadata"]["ownerReferences"] = []
    await fake.update(PODS, orphaned)  # the orphaning the cache has not seen yet
    gc = GarbageCollector(fake, SharedInformers(fake), [PODS, SERVICES])
    hold_in_cache(gc, cached)  # the informer still holds the version with the owner reference

    with pytest.raises(errors.Conflict):  # requeued, judged again on the newer version
        await gc.sync("|pods|ns/p")
    assert [p["metadata"]["name"] for p in fake.objects(PODS)] == ["p"]


async def test_a_dangling_dependent_is_still_deleted():
    fake = FakeClient()
    owner_ref = {"apiVersion": "v1", "kind": "Service", "name": "gone", "uid": "owner-uid"}
    pod = fake.seed(PODS, {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "p", "namespace": "ns", "ownerReferences": [owner_ref]},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}})
    gc = GarbageCollector(fake, SharedInformers(fake), [PODS, SERVICES])
    hold_in_cache(gc, pod)
    await gc.sync("|pods|ns/p")
    assert fake.objects(PODS) == [] or all(p["metadata"].get("deletionTimestamp") for p in fake.objects(PODS))
