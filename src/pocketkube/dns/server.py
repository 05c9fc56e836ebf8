"""The DNS server: UDP and TCP on one address, answering the cluster zone from a ZoneIndex and
forwarding the rest.

Hot path: a zone answer depends only on the query's bytes after its ID (name as spelled, type,
flags, EDNS) and on the index's generation, so it is rendered once and kept by those bytes; a
repeated question costs one dict lookup and the ID patched in. Any index change empties the
cache. Malformed packets get FORMERR when their header can be read and are dropped otherwise;
nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from pocketkube.dns.forward import Forwarder
from pocketkube.dns.zone import ZoneIndex

log = logging.getLogger(__name__)

UDP_DEFAULT = 512  # without EDNS (RFC 1035)
UDP_MAX = 1232  # what we advertise and honour at most (the DNS flag day 2020 figure)
TCP_MAX = 65535
WIRE_CACHE_ENTRIES = 20_000
TCP_IDLE = 10.0
MAX_FORWARDS = 1000  # UDP questions waiting for an upstream at once; more get SERVFAIL at once


def formerr(data: bytes) -> bytes | None:
    """A FORMERR answer echoing the ID and opcode of an unparseable query; None when even the
    header is not there (or the packet is itself a response: never answer those)."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack("!HH", data[:4])
    if flags & dns.flags.QR:
        return None
    out_flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800)) | dns.rcode.FORMERR
    return struct.pack("!HHHHHH", ident, out_flags, 0, 0, 0, 0)


def cache_key(data: bytes) -> tuple[bytes, int] | None:
    """The query minus its ID with the question's name in lower case (names compare without
    case), and where that name ends; None when the question is not a plain sequence of labels."""
    end = 12
    try:
        while (length := data[end]) != 0:
            if length > 63:
                return None  # a compression pointer or an unknown label type: no shortcut
            end += length + 1
    except IndexError:
        return None
    end += 1
    return data[2:12] + data[12:end].lower() + data[end:], end


def udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return UDP_DEFAULT
    return max(UDP_DEFAULT, min(query.payload, UDP_MAX))


class DNSServer:
    def __init__(self, index: ZoneIndex, forwarder: Forwarder) -> None:
        self.index = index
        self.forwarder = forwarder
        self._wire: dict[tuple[bool, bytes], bytes] = {}
        self._generation = -1
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] = ("", 0)
        self.metrics = None  # the MetricsServer main.py attaches
        # Counters for /metrics, plain ints on the hot path (metrics.py reads them).
        self.queries = 0
        self.tcp_queries = 0
        self.malformed = 0
        self.cache_hits = 0
        self.rcodes = [0] * 16  # responses sent, by rcode

    # ---- answering ----
    def _cached(self, tcp: bool, data: bytes) -> bytes | None:
        if self._generation != self.index.generation:
            self._wire.clear()
            self._generation = self.index.generation
            return None
        key = cache_key(data)
        if key is None:
            return None
        body = self._wire.get((tcp, key[0]))
        if body is None:
            return None
        # The answer as rendered for another spelling of the name: the question goes back as
        # asked (answers name it by a compression pointer, so they follow).
        return data[:2] + body[:10] + data[12:key[1]] + body[key[1] - 2:]

    def _remember(self, tcp: bool, data: bytes, wire: bytes) -> None:
        key = cache_key(data)
        if key is None or wire[12:key[1]].lower() != data[12:key[1]].lower():
            return
        if len(self._wire) >= WIRE_CACHE_ENTRIES:
            self._wire.clear()
        self._wire[(tcp, key[0])] = wire[2:]

    def _render(self, response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        return response.to_wire(max_size=TCP_MAX if tcp else udp_limit(query), prefer_truncation=True)

    def answer_now(self, data: bytes, tcp: bool) -> tuple[bytes | None, dns.message.Message | None]:
        """(wire answer, None) when it can be given at once (zone, cache, error); (None, query)
        when it has to be forwarded; (None, None) to drop the packet."""
        self.queries += 1
        if tcp:
            self.tcp_queries += 1
        hit = self._cached(tcp, data)
        if hit is not None:
            self.cache_hits += 1
            return hit, None
        try:
            query = dns.message.from_wire(data, ignore_trailing=True)
        except dns.message.BadEDNS:
            return self._error_wire(data, dns.rcode.BADVERS), None
        except (dns.exception.DNSException, ValueError, IndexError, struct.error, UnicodeError):
            self.malformed += 1
            return formerr(data), None
        if query.flags & dns.flags.QR:
            self.malformed += 1
            return None, None
        if query.opcode() != dns.opcode.QUERY:
            return self._reply(query, dns.rcode.NOTIMP, tcp), None
        if len(query.question) != 1:
            self.malformed += 1
            return self._reply(query, dns.rcode.FORMERR, tcp), None
        question = query.question[0]
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY) or \
                question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._reply(query, dns.rcode.REFUSED, tcp), None  # no zone transfers, as CoreDNS
        result = self.index.answer(question.name.to_text().lower(), question.rdtype)
        if not result.authoritative or result.chase:
            return None, query
        if result.rcode == dns.rcode.NXDOMAIN and not self.index.ready:
            # Before the first listing "no such name" may be false: SERVFAIL, as CoreDNS, not cached.
            return self._reply(query, dns.rcode.SERVFAIL, tcp), None
        response = dns.message.make_response(query, recursion_available=True, our_payload=UDP_MAX)
        response.flags |= dns.flags.AA
        response.set_rcode(result.rcode)
        response.answer.extend(result.answer)
        response.authority.extend(result.authority)
        response.additional.extend(result.additional)
        wire = self._render(response, query, tcp)
        self._remember(tcp, data, wire)
        return wire, None

    def _error_wire(self, data: bytes, rcode: int) -> bytes | None:
        try:
            query = dns.message.from_wire(data, ignore_trailing=True, continue_on_error=True)
            response = dns.message.make_response(query, our_payload=UDP_MAX)
            response.set_rcode(rcode)
            return response.to_wire(max_size=UDP_DEFAULT, prefer_truncation=True)
        except Exception:  # noqa: BLE001 - an answer to garbage is optional, staying up is not
            return formerr(data)

    def _reply(self, query: dns.message.Message, rcode: int, tcp: bool) -> bytes:
        response = dns.message.make_response(query, recursion_available=True, our_payload=UDP_MAX)
        response.set_rcode(rcode)
        return self._render(response, query, tcp)

    async def forwarded(self, query: dns.message.Message, tcp: bool) -> bytes:
        """The answer for a name outside the zone (or the zone's CNAME to one, chased)."""
        question = query.question[0]
        result = self.index.answer(question.name.to_text().lower(), question.rdtype)
        response = dns.message.make_response(query, recursion_available=True, our_payload=UDP_MAX)
        target = dns.name.from_text(result.chase) if result.chase else question.name
        if result.chase:
            response.flags |= dns.flags.AA
            response.answer.extend(result.answer)
        try:
            upstream = await self.forwarder.resolve(target, question.rdtype, question.rdclass)
        except dns.exception.DNSException as e:
            log.debug("forwarding %s failed: %s", target, e)
            if not result.chase:
                response.set_rcode(dns.rcode.SERVFAIL)
            return self._render(response, query, tcp)
        if not result.chase or upstream.rcode() == dns.rcode.NOERROR:
            response.set_rcode(upstream.rcode())
        response.answer.extend(upstream.answer)
        response.authority.extend(upstream.authority)
        response.additional.extend(r for r in upstream.additional if r.rdtype != dns.rdatatype.OPT)
        return self._render(response, query, tcp)

    # ---- transports ----
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(self, query: dns.message.Message, addr) -> None:
        wire = await self.forwarded(query, tcp=False)
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(wire, addr)
            self.rcodes[wire[3] & 0xF] += 1

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                (length,) = struct.unpack("!H", header)
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                try:
                    wire, query = self.answer_now(data, tcp=True)
                    if wire is None and query is not None:
                        wire = await self.forwarded(query, tcp=True)
                except Exception:  # noqa: BLE001 - one bad query must not end the server
                    log.exception("answering a TCP query failed")
                    wire = formerr(data)
                if wire is None:
                    break
                writer.write(struct.pack("!H", len(wire)) + wire)
                self.rcodes[wire[3] & 0xF] += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        tcp_sock = socket.socket(family, socket.SOCK_STREAM)
        tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp_sock.bind((host, port))
        port = tcp_sock.getsockname()[1]  # port 0: the same free port for both
        udp_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp_sock.bind((host, port))
            udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            tcp_sock.close()
            udp_sock.close()
            raise
        tcp_sock.listen(512)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp_sock)
        self.address = (host, port)
        return self.address

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            wire, query = self.server.answer_now(data, tcp=False)
        except Exception:  # noqa: BLE001 - one bad query must not end the server
            log.exception("answering a UDP query failed")
            wire, query = formerr(data), None
        if wire is not None:
            assert self.transport is not None
            self.transport.sendto(wire, addr)
            self.server.rcodes[wire[3] & 0xF] += 1
        elif query is not None:
            if len(self.server._tasks) >= MAX_FORWARDS:  # a slow upstream must not pile up tasks
                wire = self.server._reply(query, dns.rcode.SERVFAIL, tcp=False)
                assert self.transport is not None
                self.transport.sendto(wire, addr)
                self.server.rcodes[dns.rcode.SERVFAIL] += 1
                return
            self.server._spawn(self.server._forward_udp(query, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)
