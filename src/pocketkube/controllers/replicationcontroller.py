"""ReplicationController controller: the ReplicaSet controller over an equality selector
(upstream runs the same code, pkg/controller/replication wraps pkg/controller/replicaset)."""

from __future__ import annotations

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.selectors import LabelSelector
from pocketkube.controllers.replicaset import ReplicaSetController

__all__ = ["REPLICATION_CONTROLLERS", "ReplicationControllerController"]

REPLICATION_CONTROLLERS = BY_PLURAL[("", "replicationcontrollers")]


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller-controller"
    resource = REPLICATION_CONTROLLERS

    @staticmethod
    def selector_of(owner: dict) -> LabelSelector:
        """spec.selector is a label map; an empty one selects nothing (validation forbids it)."""
        selector = deep_get(owner, "spec", "selector")
        if not isinstance(selector, dict) or not selector:
            return LabelSelector.nothing()
        return LabelSelector.from_dict({"matchLabels": selector})
