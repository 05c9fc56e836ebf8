"""The scheduler's per-node view, kept up to date from events (upstream's scheduler cache).

Rebuilding every node's requested resources from every pod on each scheduling pass costs
O(pods) per pass; instead each pod's contribution is added to its node when the pod is bound
or assumed and taken away when it moves, finishes or is deleted. Pods may name a node the
cache does not know (yet): their node's counts are kept and the node joins the schedulable
list once it appears.
"""

from __future__ import annotations

from fractions import Fraction

from pocketkube.api.quota import pod_totals
from pocketkube.scheduler.plugins import NodeInfo, pod_controller_uid

__all__ = ["NodeCache"]


class NodeCache:
    def __init__(self) -> None:
        self._infos: dict[str, NodeInfo] = {}  # node name → counts (also for nodes not present)
        self._present: set[str] = set()
        self._ordered: list[NodeInfo] | None = None  # present nodes by name, until one comes or goes
        self._pods: dict[str, tuple[str, dict, dict[str, Fraction]]] = {}  # pod key → (node, pod, requests)

    def __len__(self) -> int:
        return len(self._present)

    def get(self, name: str) -> NodeInfo | None:
        return self._infos.get(name) if name in self._present else None

    def ordered(self) -> list[NodeInfo]:
        """The nodes that exist, in name order (the order select_node walks them)."""
        if self._ordered is None:
            self._ordered = [self._infos[n] for n in sorted(self._present)]
        return self._ordered

    def set_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        info = self._infos.get(name)
        if info is None:
            self._infos[name] = NodeInfo(node)
        else:
            info.node = node
        if name not in self._present:
            self._present.add(name)
            self._ordered = None

    def remove_node(self, name: str) -> None:
        if name in self._present:
            self._present.discard(name)
            self._ordered = None
        self._drop_if_unused(name)

    def place(self, key: str, pod: dict | None, node: str | None) -> None:
        """Count `pod` (key `key`) on `node`, or nowhere when node is None."""
        current = self._pods.get(key)
        if current is not None:
            old_node, old_pod, requests = current
            if (node == old_node and pod is not None and old_pod.get("spec") == pod.get("spec")
                    and pod_controller_uid(old_pod) == pod_controller_uid(pod)):
                self._pods[key] = (old_node, pod, requests)  # status or metadata only: counts unchanged
                return
            del self._pods[key]
            self._infos[old_node].remove_pod(old_pod, requests)
            self._drop_if_unused(old_node)
        if node and pod is not None:
            info = self._infos.get(node)
            if info is None:
                info = self._infos[node] = NodeInfo({"metadata": {"name": node}})
            requests = pod_totals(pod)
            info.add_pod(pod, requests)
            self._pods[key] = (node, pod, requests)

    def node_of(self, key: str) -> str | None:
        current = self._pods.get(key)
        return current[0] if current else None

    def _drop_if_unused(self, name: str) -> None:
        info = self._infos.get(name)
        if info is not None and name not in self._present and info.pod_count == 0:
            del self._infos[name]
