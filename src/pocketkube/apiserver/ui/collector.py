"""Reads every Ready node's traffic counters once a second while a page is open.

Ticks are scheduled by a monotonic deadline (t0 + k·interval), not by sleeping a second after the
work, so they stay 1 s apart whatever a read costs; a node that does not answer within the
timeout is listed in the tick's `unavailableNodes` and its counters keep their last values (its
connections are counted when it answers again). No stream open, no polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
from prometheus_client import Histogram

from pocketkube.api.traffic import TrafficSnapshot
from pocketkube.apiserver.metrics import REGISTRY
from pocketkube.apiserver.ui.topology import node_ip, node_ready
from pocketkube.apiserver.ui.traffic import Aggregator, Tick

log = logging.getLogger(__name__)
INTERVAL = 1.0
TIMEOUT = 0.8
PATH = "/proxy/traffic"
TICK_INTERVAL = Histogram("pocketkube_ui_traffic_tick_interval_seconds",
                          "Time between the live map's traffic ticks (1 s when on schedule).", registry=REGISTRY,
                          buckets=(0.5, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0))


def agent_url(node: dict) -> str | None:
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    ip = node_ip(node)
    if not ip or not port:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{PATH}"


class Collector:
    def __init__(self, nodes: Callable[[], list[dict]], node_token: Callable[[str], str],
                 interval: float = INTERVAL, timeout: float = TIMEOUT) -> None:
        self.nodes = nodes
        self.node_token = node_token
        self.interval = interval
        self.timeout = timeout
        self.aggregator = Aggregator()
        self._subscribers: set[Callable[[Tick], None]] = set()
        self._task: asyncio.Task | None = None
        self._session = None
        self.intervals: list[float] = []  # measured tick spacing (the jitter the tests report)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, fn: Callable[[Tick], None]) -> Callable[[], None]:
        self._subscribers.add(fn)
        if not self.running:
            last = self.aggregator.current
            if last is None or time.time() - last.t > 2 * self.interval:  # not read for a while
                self.aggregator.rebase()
            self._task = asyncio.create_task(self._loop(), name="ui-traffic-collector")
        return lambda: self._subscribers.discard(fn)

    async def read_once(self) -> Tick | None:
        """A current tick for a map request or a new stream: the running loop's last one when it
        knows the data planes, else the next one (starting the loop for it if need be). Reads
        never happen beside the loop's, whose deltas every open page must see."""
        current = self.aggregator.current
        if self.running and current is not None and self.aggregator.dataplanes:
            return current
        done: asyncio.Future[Tick] = asyncio.get_running_loop().create_future()
        unsubscribe = self.subscribe(lambda tick: done.done() or done.set_result(tick))
        try:
            return await asyncio.wait_for(done, self.interval + self.timeout + 0.5)
        except TimeoutError:
            return self.aggregator.current
        finally:
            unsubscribe()

    async def stop(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close_session()

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        deadline = time.monotonic()
        last = None
        try:
            while self._subscribers:
                # The tick is stamped when it starts (on schedule), not when the slowest node answered.
                now = time.monotonic()
                if last is not None:
                    self.intervals = [*self.intervals[-99:], now - last]
                    TICK_INTERVAL.observe(now - last)
                last = now
                tick = await self._collect(time.time())
                for fn in list(self._subscribers):
                    fn(tick)
                deadline += self.interval
                if deadline < time.monotonic():  # fell behind (a stalled loop): skip, don't burst
                    deadline = time.monotonic() + self.interval
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            await self._close_session()
            self._task = None

    async def _collect(self, t: float | None = None) -> Tick:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        nodes = [n for n in self.nodes() if node_ready(n)]
        results = await asyncio.gather(*(self._read(n) for n in nodes))
        snapshots = {n["metadata"]["name"]: s for n, s in zip(nodes, results, strict=True)}
        return self.aggregator.ingest(time.time() if t is None else t, snapshots)

    async def _read(self, node: dict) -> TrafficSnapshot | None:
        import aiohttp

        url = agent_url(node)
        if url is None:
            return None
        name = node["metadata"]["name"]
        try:
            async with self._session.get(url, headers={"Authorization": f"Bearer {self.node_token(name)}"}) as r:
                if r.status != 200:
                    return None
                return TrafficSnapshot.from_json(orjson.loads(await r.read()))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, TypeError, KeyError) as e:
            log.debug("traffic of node %s unavailable: %s", name, e)
            return None
