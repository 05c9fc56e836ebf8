"""Allocation refusals shared by every range allocator (ClusterIPs, NodePorts, LoadBalancer
addresses, pod IPs); str() is the exact upstream message."""

from __future__ import annotations


class AllocationError(Exception):
    """An allocator refusal."""


class NotInRange(AllocationError):
    pass


class AlreadyAllocated(AllocationError):
    pass


class RangeFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")
