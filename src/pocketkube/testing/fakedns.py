"""A trivial DNS responder for tests and the DNS bench's baseline: answers A questions for the
names it is given (anything else NXDOMAIN), over UDP and TCP, on an address of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class FakeUpstream:
    def __init__(self, records: dict[str, str] | None = None, ttl: int = 30, fixed: str = "") -> None:
        """`records`: name → IPv4 address; `fixed`: answer every A question with this address."""
        self.records = {k.lower().rstrip(".") + ".": v for k, v in (records or {}).items()}
        self.ttl = ttl
        self.fixed = fixed
        self.queries: list[str] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.address: tuple[str, int] = ("", 0)

    def answer(self, data: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - a fake: drop what it cannot read
            return None
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.queries.append(name)
        ip = self.fixed or self.records.get(name)
        if ip and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, self.ttl, "IN", "A", ip))
        elif not ip:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text(
                "example.", self.ttl, "IN", "SOA", "ns.example. host.example. 1 2 3 4 10"))
        return response.to_wire()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        tcp.listen(64)
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, port))
        fake = self

        class _P(asyncio.DatagramProtocol):
            def connection_made(self, transport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr) -> None:
                wire = fake.answer(data)
                if wire is not None:
                    self.transport.sendto(wire, addr)

        async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    wire = self.answer(await reader.readexactly(length))
                    if wire is None:
                        break
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self._tcp = await asyncio.start_server(serve_tcp, sock=tcp)
        self._udp, _ = await loop.create_datagram_endpoint(_P, sock=udp)
        self.address = (host, port)
        return self.address

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


@contextlib.contextmanager
def upstream_in_thread(records: dict[str, str], host: str = "127.0.0.1") -> Iterator[FakeUpstream]:
    """A FakeUpstream serving from a thread of its own (for synchronous tests); `.address` is set."""
    loop = asyncio.new_event_loop()
    fake = FakeUpstream(records)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start(host, 0))
        ready.set()
        loop.run_forever()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m pocketkube.testing.fakedns --listen 127.0.0.1:5300 [--fixed IP] [NAME=IP ...]`:
    serve until killed, printing `listening HOST:PORT` once ready (the DNS bench's baseline)."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--fixed", default="")
    p.add_argument("records", nargs="*")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")

    async def run() -> None:
        fake = FakeUpstream(dict(r.split("=", 1) for r in args.records), fixed=args.fixed)
        fake.queries = _Discard()
        h, pt = await fake.start(host, int(port))
        print(f"listening {h}:{pt}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # the cluster DNS runs on uvloop: so does its baseline

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run())


class _Discard(list):
    def append(self, item) -> None:  # a long-running fake keeps no query log
        pass


if __name__ == "__main__":
    main()
