"""Creating and deleting a controller's pods with upstream's Events (pkg/controller: RealPodControl),
shared by the ReplicaSet/ReplicationController, DaemonSet and StatefulSet controllers."""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.client.events import NORMAL, WARNING, EventRecorder
from pocketkube.client.interface import Client

__all__ = ["PODS", "create_pod", "delete_pod"]

PODS = BY_PLURAL[("", "pods")]


async def create_pod(client: Client, recorder: EventRecorder, owner: dict, owner_res: Resource, pod: dict) -> dict:
    """Create `pod` for `owner`: a SuccessfulCreate or FailedCreate Event on the owner; errors re-raised."""
    try:
        created = await client.create(PODS, pod, owner["metadata"]["namespace"])
    except errors.ApiError as e:
        recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {e}", res=owner_res)
        raise
    recorder.event(owner, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", res=owner_res)
    return created


async def delete_pod(client: Client, recorder: EventRecorder, owner: dict, owner_res: Resource, pod: dict) -> bool:
    """Delete `pod` (this very uid); False when it was gone already. Events as create_pod's."""
    m = pod["metadata"]
    try:
        await client.delete(PODS, m["namespace"], m["name"], preconditions={"uid": m["uid"]})
    except errors.NotFound:
        return False
    except errors.ApiError as e:
        recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {e}", res=owner_res)
        raise
    recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {m['name']}", res=owner_res)
    return True
