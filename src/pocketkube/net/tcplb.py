"""A client-side TCP failover proxy for API servers (as k3s' agent load balancer).

A kubeconfig names one server. With several API servers, `pocketkube lb` listens on a loopback
port and hands each new connection to the first server that accepts it: the one that answered
last, then the others; a server that refused or timed out is tried last for DOWN_FOR seconds.
Bytes pass through untouched (TLS ends at the API server, whose certificate always covers
127.0.0.1), so kubectl keeps verifying the cluster CA. A connection open when its server dies
ends; kubectl's next request (and a watch's reconnect) goes to a live one.

`dial_order()` is the decision; `Balancer` the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
Target = tuple[str, int]
CONNECT_TIMEOUT = 2.0
DOWN_FOR = 5.0
CHUNK = 64 * 1024


def dial_order(targets: list[Target], preferred: Target | None, down_until: dict[Target, float],
               now: float) -> list[Target]:
    """Whom to try, in order: the preferred (last good) one first, servers marked down last
    (soonest back first); otherwise the configured order."""
    up = [t for t in targets if down_until.get(t, 0.0) <= now]
    down = sorted((t for t in targets if down_until.get(t, 0.0) > now), key=lambda t: down_until[t])
    if preferred in up:
        up.remove(preferred)
        up.insert(0, preferred)
    return up + down


@dataclass
class Balancer:
    targets: list[Target]
    connect_timeout: float = CONNECT_TIMEOUT
    down_for: float = DOWN_FOR
    clock: Callable[[], float] = time.monotonic
    preferred: Target | None = None
    down_until: dict[Target, float] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _conns: set[asyncio.Task] = field(default_factory=set)

    async def start(self, host: str, port: int) -> int:
        """Listen; the bound port (port 0 picks one)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def dial(self) -> tuple[Target, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for target in dial_order(self.targets, self.preferred, self.down_until, self.clock()):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), self.connect_timeout)
            except (OSError, TimeoutError) as err:
                if self.down_until.get(target, 0.0) <= self.clock():
                    log.warning("API server %s:%d unreachable (%s): trying the next", *target, err)
                self.down_until[target] = self.clock() + self.down_for
                continue
            self.down_until.pop(target, None)
            if target != self.preferred:
                log.info("forwarding new connections to %s:%d", *target)
            self.preferred = target
            return target, reader, writer
        return None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            dialed = await self.dial()
            if dialed is None:
                log.warning("no API server reachable: %s", ", ".join(f"{h}:{p}" for h, p in self.targets))
                return
            _, server_r, server_w = dialed
            try:
                await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
            finally:
                server_w.close()
        finally:
            client_w.close()
            if task is not None:
                self._conns.discard(task)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close (TLS close_notify and HTTP keep-alive need both ways)."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.close()
    with contextlib.suppress(Exception):
        await dst.drain()
