"""A small API Priority and Fairness: overload answers 429, never a crash or unbounded memory.

Requests are sorted into priority levels, each with its own seats (concurrently executing
requests) and a bounded queue:
- system: nodes (heartbeats, pod status) and the control plane. Their seats are their own, so a
  flood of user requests can never starve node heartbeats;
- workload: everyone else, the admin included (real clusters exempt system:masters; here the
  admin is the user whose floods must be survivable).
Within a level, queued requests are dispatched round-robin between users (flows), so one
user's flood does not stall another's requests. A request that finds the queue full, or that
waits longer than the queue wait limit, gets Kubernetes' 429 TooManyRequests with Retry-After.

Long-running requests (watches, log streams) take no seat, as in Kubernetes; they are bounded
by a number per user instead, since each holds a connection and an event buffer.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from pocketkube.api import errors

SYSTEM_USERS = {"system:kube-controller-manager", "system:kube-scheduler"}
SYSTEM_GROUPS = {"system:nodes"}
RETRY_AFTER_SECONDS = 1
# Tests shrink the limits through these (an overload test need not open 500 watches).
SEATS_ENV = "POCKETKUBE_APF_SEATS"              # "system,workload"
MAX_WATCHES_ENV = "POCKETKUBE_APF_MAX_WATCHES_PER_USER"


@dataclass(frozen=True)
class LevelLimits:
    seats: int            # requests executing at once
    queue_length: int     # requests waiting, over all users
    per_user_queue: int   # requests one user may have waiting
    queue_wait: float     # seconds a request may wait for a seat


@dataclass(frozen=True)
class Limits:
    system: LevelLimits = LevelLimits(seats=50, queue_length=1000, per_user_queue=200, queue_wait=10.0)
    workload: LevelLimits = LevelLimits(seats=150, queue_length=600, per_user_queue=400, queue_wait=5.0)
    max_watches_per_user: int = 500

    @classmethod
    def from_env(cls) -> Limits:
        limits = cls()
        if seats := os.environ.get(SEATS_ENV):
            system, workload = (int(s) for s in seats.split(","))
            limits = Limits(LevelLimits(system, limits.system.queue_length, limits.system.per_user_queue,
                                        limits.system.queue_wait),
                            LevelLimits(workload, limits.workload.queue_length, limits.workload.per_user_queue,
                                        limits.workload.queue_wait),
                            limits.max_watches_per_user)
        if watches := os.environ.get(MAX_WATCHES_ENV):
            limits = Limits(limits.system, limits.workload, int(watches))
        return limits


def too_many_requests() -> errors.TooManyRequests:
    return errors.TooManyRequests(retry_after=RETRY_AFTER_SECONDS)


@dataclass
class PriorityLevel:
    """Seats and fair queues of one level; `flows` holds each user's waiters, in dispatch order."""
    name: str
    limits: LevelLimits
    executing: int = 0
    queued: int = 0
    flows: dict[str, deque[asyncio.Future[None]]] = field(default_factory=dict)

    async def acquire(self, flow: str) -> None:
        """Take a seat, waiting in `flow`'s queue if none is free; raises 429 when the queue is full
        or the wait too long."""
        if self.executing < self.limits.seats and not self.queued:
            self.executing += 1
            return
        waiting = self.flows.get(flow)
        if self.queued >= self.limits.queue_length or (waiting and len(waiting) >= self.limits.per_user_queue):
            raise too_many_requests()
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.flows.setdefault(flow, deque()).append(granted)
        self.queued += 1
        try:
            async with asyncio.timeout(self.limits.queue_wait):
                await granted
        except (TimeoutError, asyncio.CancelledError) as e:
            if granted.done() and not granted.cancelled():
                self.release()  # the seat came as the wait ended: hand it on
            else:
                self._forget(flow, granted)
            if isinstance(e, TimeoutError):
                raise too_many_requests() from None
            raise

    def release(self) -> None:
        self.executing -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free seats to the waiters, one user at a time in turn."""
        while self.executing < self.limits.seats and self.flows:
            flow, waiting = next(iter(self.flows.items()))
            granted = waiting.popleft()
            self.queued -= 1
            del self.flows[flow]
            if waiting:
                self.flows[flow] = waiting  # to the back of the round
            if not granted.done():
                granted.set_result(None)
                self.executing += 1

    def _forget(self, flow: str, granted: asyncio.Future[None]) -> None:
        waiting = self.flows.get(flow)
        if waiting is not None and granted in waiting:
            waiting.remove(granted)
            self.queued -= 1
            if not waiting:
                del self.flows[flow]


_STREAM_SUBRESOURCES = ("exec", "attach", "portforward")


def is_long_running(request: web.Request) -> bool:
    """Watches, followed log streams and exec/attach/port-forward streams, as Kubernetes'
    long-running request check sees them."""
    parts = request.path.split("/")
    if parts[-1] in _STREAM_SUBRESOURCES and "pods" in parts:
        return True
    if request.method != "GET":
        return False
    legacy_watch = parts[1:2] == ["api"] and parts[3:4] == ["watch"] or \
        parts[1:2] == ["apis"] and parts[4:5] == ["watch"]
    follow_log = parts[-1] == "log" and request.query.get("follow") in ("true", "1")
    ui_stream = request.path == "/ui/api/v1/stream"  # the live map's event stream
    return legacy_watch or follow_log or ui_stream or request.query.get("watch") in ("true", "1")


class FlowControl:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_env()
        self.levels = {"system": PriorityLevel("system", self.limits.system),
                       "workload": PriorityLevel("workload", self.limits.workload)}
        self.watches: dict[str, int] = {}

    def level_for(self, user: str, groups: list[str] | tuple[str, ...]) -> PriorityLevel:
        if user in SYSTEM_USERS or SYSTEM_GROUPS.intersection(groups):
            return self.levels["system"]
        return self.levels["workload"]

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        ident = request.get("user")
        if ident is None:  # unauthenticated health probes: exempt, as Kubernetes' probes are
            return await handler(request)
        user, groups = ident
        if is_long_running(request):
            return await self._long_running(user, request, handler)
        level = self.level_for(user, groups)
        await level.acquire(user)
        try:
            return await handler(request)
        finally:
            level.release()

    async def _long_running(self, user: str, request: web.Request, handler):
        open_now = self.watches.get(user, 0)
        if open_now >= self.limits.max_watches_per_user:
            raise too_many_requests()
        self.watches[user] = open_now + 1
        try:
            return await handler(request)
        finally:
            self.watches[user] -= 1
            if not self.watches[user]:
                del self.watches[user]
