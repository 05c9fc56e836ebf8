"""What a Service data plane implements. The proxy computes the model; a data plane makes it true."""

from __future__ import annotations

from typing import Protocol

from pocketkube.api.traffic import TrafficSnapshot
from pocketkube.proxy.model import Model


class DataPlane(Protocol):
    name: str

    async def start(self) -> None:
        """Take ownership of the node's frontends (repairing leftovers of an earlier run)."""

    async def apply(self, model: Model) -> None:
        """Make the data plane serve exactly `model` (idempotent; called after every change)."""

    async def stop(self) -> None:
        """Remove everything this data plane programmed or opened."""

    async def traffic(self) -> TrafficSnapshot:
        """Cumulative new connections per entry, endpoint and rejection (api/traffic.py's wire format)."""
