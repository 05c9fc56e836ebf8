"""Which API server a client talks to when there are several (as k3s' agent load balancer).

A client is given one or more `--server` URLs; it also learns the live API servers from the
`default/kubernetes` Endpoints (each API server keeps itself listed there while alive) and keeps
that list in a file, so a restarted agent still knows the other servers when the one on its
command line is down. The client uses one server at a time and moves to the next when that one
cannot be reached or answers 503; the configured URLs come first (a kept list may be stale).

ServerList and endpoints_urls are pure; load/save and ServerLearner do the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import orjson

from pocketkube.api import errors

__all__ = ["ServerLearner", "ServerList", "endpoints_urls", "load_servers", "parse_servers", "save_servers"]

log = logging.getLogger(__name__)
LEARN_INTERVAL = 15.0


def parse_servers(spec: str | Sequence[str]) -> list[str]:
    """`https://a:6443,https://b:6443` (or a list of such) → the URLs, in order, without repeats."""
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    out: list[str] = []
    for p in parts:
        url = p.strip().rstrip("/")
        if url and url not in out:
            out.append(url)
    if not out:
        raise ValueError("no API server URL given")
    for url in out:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"API server URL {url!r}: must start with https:// (or http://)")
    return out


class ServerList:
    """The servers in preference order (the configured ones — what the operator says now — then
    the learned ones not among them) and the one in use. A failure of the one in use moves to the
    next, round the list."""

    def __init__(self, configured: Sequence[str], learned: Iterable[str] = ()) -> None:
        self.configured = tuple(configured)
        self.servers: list[str] = []
        self._learned: list[str] = []
        self._index = 0
        self.learn(learned)

    @property
    def current(self) -> str:
        return self.servers[self._index]

    def failed(self, url: str) -> str:
        """`url` failed: if it is the one in use, move on. The server to use now."""
        if url == self.current and len(self.servers) > 1:
            self._index = (self._index + 1) % len(self.servers)
            log.warning("API server %s unreachable: using %s", url, self.current)
        return self.current

    def learn(self, urls: Iterable[str]) -> bool:
        """Replace the learned servers (the configured ones stay first); the one in use stays in
        use while it is listed. True when the list changed."""
        learned = list(dict.fromkeys(u.rstrip("/") for u in urls))
        self._learned = learned
        fresh = list(self.configured) + [u for u in learned if u not in self.configured]
        if fresh == self.servers:
            return False
        in_use = self.servers[self._index] if self.servers else None
        self.servers = fresh
        self._index = fresh.index(in_use) if in_use in fresh else 0
        return True

    def learned(self) -> list[str]:
        """The servers the Endpoints listed last (configured ones included), to keep in a file."""
        return list(self._learned)


def endpoints_urls(endpoints: dict, scheme: str = "https") -> list[str]:
    """The URLs of the `kubernetes` Endpoints' ready addresses, on its https port."""
    urls: list[str] = []
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == "https"), None) \
            or (ports[0].get("port") if ports else None)
        if not port:
            continue
        for addr in subset.get("addresses") or []:
            ip = addr.get("ip") or ""
            if ip:
                host = f"[{ip}]" if ":" in ip else ip
                urls.append(f"{scheme}://{host}:{port}")
    return sorted(set(urls))


def load_servers(path: Path) -> list[str]:
    """The servers learned before (k3s keeps them in k3s-agent-load-balancer.json); [] if none."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    servers = data.get("servers") if isinstance(data, dict) else None
    return [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []


def save_servers(path: Path, servers: list[str]) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps({"servers": servers}, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


class ServerLearner:
    """Polls the `kubernetes` Endpoints every `interval` and feeds the server list (and its file)."""

    def __init__(self, servers: ServerList, get_endpoints: Callable[[], Awaitable[dict]], path: Path | None = None,
                 *, interval: float = LEARN_INTERVAL) -> None:
        self.servers = servers
        self.get_endpoints = get_endpoints
        self.path = path
        self.interval = interval
        self._saved: list[str] | None = None

    async def learn_once(self) -> bool:
        try:
            ep = await self.get_endpoints()
        except errors.ApiError as e:
            log.debug("cannot read the kubernetes endpoints: %s", e.message)
            return False
        scheme = "https" if self.servers.current.startswith("https") else "http"
        urls = endpoints_urls(ep, scheme)
        if not urls:
            return False
        changed = self.servers.learn(urls)
        if not changed and urls == self._saved:
            return False
        self._saved = urls
        if changed:
            log.info("API servers: %s", ", ".join(self.servers.servers))
        if self.path is not None:
            try:
                save_servers(self.path, self.servers.learned())
            except OSError as e:
                log.warning("cannot keep the API server list in %s: %s", self.path, e)
        return True

    async def run(self) -> None:
        while True:
            await self.learn_once()
            await asyncio.sleep(self.interval)
