"""Names outside the cluster zone: forwarded to the host's resolvers, with a cache that keeps
answers no longer than their TTL (CoreDNS's `forward . /etc/resolv.conf` and `cache`).

Concurrent questions for the same name share one upstream query. Upstreams are tried in order;
a truncated UDP answer is asked again over TCP. A cached answer is served with its TTLs counted
down; negative answers (NXDOMAIN, NODATA) are kept for their SOA's minimum, SERVFAIL never.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

log = logging.getLogger(__name__)

MAX_TTL = 3600  # CoreDNS cache's defaults
MAX_NEGATIVE_TTL = 1800
CACHE_ENTRIES = 10_000


def parse_upstream(value: str) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:5353`, `[fd00::1]:53` or `fd00::1` → (host, port); ValueError if bad."""
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        port = int(p)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def resolv_conf_upstreams(text: str, skip: Iterable[str] = ()) -> list[tuple[str, int]]:
    """The nameservers of a resolv.conf, minus the addresses in `skip` (ourselves: forwarding to
    the cluster DNS would loop)."""
    skipped = set(skip)
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            server = fields[1].split("%", 1)[0]
            try:
                ipaddress.ip_address(server)
            except ValueError:
                continue
            if server not in skipped:
                out.append((server, 53))
    return out


def cache_ttl(response: dns.message.Message) -> int:
    """How long an upstream answer may be kept (0: not at all)."""
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0
    if response.answer and response.rcode() == dns.rcode.NOERROR:
        return min(MAX_TTL, *(r.ttl for r in response.answer))
    soas = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    if not soas:
        return 0
    return min(MAX_NEGATIVE_TTL, *(min(r.ttl, r[0].minimum) for r in soas))


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], *, timeout: float = 2.0,
                 entries: int = CACHE_ENTRIES) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.entries = entries
        self._cache: OrderedDict[tuple[str, int, int], tuple[float, float, dns.message.Message]] = OrderedDict()
        self._inflight: dict[tuple[str, int, int], asyncio.Future] = {}
        self.hits = 0
        self.misses = 0

    def cached(self, key: tuple[str, int, int]) -> dns.message.Message | None:
        """The cached answer with its TTLs counted down, None when absent or expired."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        stored, expires, response = entry
        now = time.monotonic()
        if now >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        elapsed = int(now - stored)
        out = dns.message.Message(id=response.id)
        out.flags = response.flags
        out.set_rcode(response.rcode())
        for section, theirs in ((out.answer, response.answer), (out.authority, response.authority),
                                (out.additional, response.additional)):
            for rrset in theirs:
                copy = rrset.copy()
                copy.ttl = max(0, rrset.ttl - elapsed)
                section.append(copy)
        return out

    def _store(self, key: tuple[str, int, int], response: dns.message.Message) -> None:
        ttl = cache_ttl(response)
        if ttl <= 0:
            return
        now = time.monotonic()
        self._cache[key] = (now, now + ttl, response)
        self._cache.move_to_end(key)
        while len(self._cache) > self.entries:
            self._cache.popitem(last=False)

    async def resolve(self, qname: dns.name.Name, rdtype: int, rdclass: int = 1) -> dns.message.Message:
        """The upstream answer for a question (cached, or shared with a query in flight);
        raises dns.exception.DNSException when no upstream answers."""
        key = (qname.to_text().lower(), rdtype, rdclass)
        hit = self.cached(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._ask(qname, rdtype, rdclass)
            self._store(key, response)
            future.set_result(response)
            return response
        except BaseException as e:
            future.set_exception(e if isinstance(e, Exception) else dns.exception.Timeout())
            future.exception()  # retrieved: waiters get it, nobody logs it as lost
            raise
        finally:
            del self._inflight[key]

    async def _ask(self, qname: dns.name.Name, rdtype: int, rdclass: int) -> dns.message.Message:
        if not self.upstreams:
            raise dns.exception.DNSException("no upstream resolvers")
        query = dns.message.make_query(qname, rdtype, rdclass, use_edns=0, payload=1232)
        last: Exception = dns.exception.Timeout()
        for host, port in self.upstreams:
            try:
                response = await dns.asyncquery.udp(query, host, timeout=self.timeout, port=port,
                                                    ignore_unexpected=True)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(query, host, timeout=self.timeout, port=port)
                if response.rcode() == dns.rcode.SERVFAIL:
                    last = dns.exception.DNSException(f"{host}:{port} answered SERVFAIL")
                    continue
                return response
            except (dns.exception.DNSException, OSError, EOFError) as e:
                log.debug("upstream %s:%s failed for %s: %s", host, port, qname, e)
                last = e if isinstance(e, dns.exception.DNSException) else dns.exception.DNSException(str(e))
        raise last
