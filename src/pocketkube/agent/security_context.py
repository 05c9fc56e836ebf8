"""Who a container runs as, from the pod's and the container's securityContext.

Kubernetes semantics, the same whatever the runtime: a container-level field overrides the
pod-level one; runAsUser 0 means root (the agent's own user here); an unset runAsUser runs the
container as nobody (65534), never as the agent's root, unless the runtime cannot switch users
at all, in which case containers run as the agent.
"""

from __future__ import annotations

from pocketkube.agent.runtime.interface import User

NOBODY = 65534


def container_user(pod: dict, container: dict, *, can_switch_user: bool) -> User | None:
    """The user to run `container` as; None means the agent's own user."""
    if not can_switch_user:
        return None
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    uid = sc.get("runAsUser")
    if uid == 0:
        return None
    gid = sc.get("runAsGroup", NOBODY if uid is None else 0)
    groups = tuple(pod_sc.get("supplementalGroups") or ())
    return User(uid=NOBODY if uid is None else int(uid), gid=int(gid), groups=groups)
