"""The traffic snapshot a node's Service data plane reports: its wire format, shared by the node
agent (which serves it at `/proxy/traffic`) and the API server (which reads it for the live map).

Counts are cumulative NEW connections (TCP) or sessions (UDP) since the counter was created; a
data plane restart resets them, so readers treat a decrease as a reset (as Prometheus does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ENTRY_KINDS = ("NodePort", "ClusterIP", "LoadBalancer", "ExternalIP")


@dataclass(frozen=True)
class ServicePortRef:
    namespace: str
    service: str
    portName: str  # noqa: N815 - the wire's spelling
    protocol: str


@dataclass(frozen=True)
class EntryCount:
    """Connections that entered through one frontend (node IP:nodePort, ClusterIP, LB or external IP)."""

    namespace: str
    service: str
    portName: str  # noqa: N815
    protocol: str
    kind: str
    ip: str
    port: int
    connections: int


@dataclass(frozen=True)
class EndpointCount:
    """Connections this node's data plane sent to one endpoint of one service port."""

    namespace: str
    service: str
    portName: str  # noqa: N815
    protocol: str
    ip: str
    port: int
    pod: str
    connections: int
    active: int | None = None  # userspace only
    bytesIn: int | None = None  # noqa: N815 - userspace only
    bytesOut: int | None = None  # noqa: N815


@dataclass(frozen=True)
class RejectCount:
    """Connections refused (or dropped) at a frontend because it had no usable endpoint."""

    namespace: str
    service: str
    portName: str  # noqa: N815
    protocol: str
    ip: str
    port: int
    connections: int


@dataclass(frozen=True)
class TrafficSnapshot:
    node: str
    dataplane: str
    time: float
    entries: tuple[EntryCount, ...] = field(default_factory=tuple)
    endpoints: tuple[EndpointCount, ...] = field(default_factory=tuple)
    rejected: tuple[RejectCount, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"entries": [asdict(e) for e in self.entries],
                               "endpoints": [asdict(e) for e in self.endpoints],
                               "rejected": [asdict(r) for r in self.rejected]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrafficSnapshot:
        """Parse an agent's answer; ValueError (or TypeError/KeyError) on a malformed one."""
        def items(key: str, kind: type) -> tuple:
            rows = doc.get(key) or []
            if not isinstance(rows, list):
                raise ValueError(f"{key} is not a list")
            return tuple(kind(**row) for row in rows)

        return cls(str(doc["node"]), str(doc["dataplane"]), float(doc["time"]),
                   items("entries", EntryCount), items("endpoints", EndpointCount),
                   items("rejected", RejectCount))
