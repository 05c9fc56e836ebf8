"""Cluster DNS on the wire: a dnspython client against the server on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.asyncquery
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from pocketkube.dns.forward import Forwarder, cache_ttl, parse_upstream, resolv_conf_upstreams
from pocketkube.dns.records import service_records
from pocketkube.dns.server import DNSServer
from pocketkube.dns.zone import ZoneIndex
from pocketkube.testing.fakedns import FakeUpstream

Z = "cluster.local"


def svc(name, cluster_ip="10.96.0.20", **spec):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


def big_slice(n):
    return {"metadata": {"name": "big-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "big"}},
            "endpoints": [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": True}} for i in range(1, n + 1)],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}


@pytest.fixture
async def dns_server():
    upstream = FakeUpstream({"example.com": "192.0.2.7", "target.example": "192.0.2.8"}, ttl=30)
    up_host, up_port = await upstream.start()
    index = ZoneIndex(Z, "10.96.0.10")
    index.set_namespace("default", True)
    index.set_service("default/web", service_records(svc("web"), [], Z))
    index.set_service("default/big", service_records(svc("big", "None"), [big_slice(60)], Z))
    index.set_service("default/ext", service_records(
        svc("ext", "", type="ExternalName", externalName="target.example"), [], Z))
    server = DNSServer(index, Forwarder([(up_host, up_port)], timeout=1.0))
    await server.start("127.0.0.1", 0)
    server.upstream = upstream
    yield server
    await server.stop()
    await upstream.stop()


async def ask(server, name, rdtype="A", tcp=False, **kw):
    q = dns.message.make_query(name, rdtype, **kw)
    host, port = server.address
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=2)
    return await dns.asyncquery.udp(q, host, port=port, timeout=2)


async def test_zone_answers_over_udp_and_tcp(dns_server):
    for tcp in (False, True):
        r = await ask(dns_server, "web.default.svc.cluster.local", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert [x.to_text() for x in r.answer[0]] == ["10.96.0.20"] and r.answer[0].ttl == 5
    nx = await ask(dns_server, "nope.default.svc.cluster.local")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    # The question's spelling comes back as asked (a cached answer for another spelling is not reused).
    r = await ask(dns_server, "WEB.Default.svc.cluster.local")
    assert r.question[0].name.to_text() == "WEB.Default.svc.cluster.local."
    assert r.answer[0].name.to_text() == "WEB.Default.svc.cluster.local."  # rendered for another spelling
    assert dns_server._wire and len(dns_server._wire) <= 4


async def test_repeated_question_served_from_wire_cache_and_invalidated(dns_server):
    await ask(dns_server, "web.default.svc.cluster.local")
    assert len(dns_server._wire) >= 1
    hits_before = dns_server.queries
    r1 = await ask(dns_server, "web.default.svc.cluster.local")
    assert dns_server.queries == hits_before + 1 and [x.to_text() for x in r1.answer[0]] == ["10.96.0.20"]
    dns_server.index.set_service("default/web", service_records(svc("web", "10.96.0.30"), [], Z))
    r2 = await ask(dns_server, "web.default.svc.cluster.local")
    assert [x.to_text() for x in r2.answer[0]] == ["10.96.0.30"]


async def test_truncated_over_udp_then_complete_over_tcp(dns_server):
    r = await ask(dns_server, "big.default.svc.cluster.local")
    assert r.flags & dns.flags.TC and len(r.to_wire()) <= 512
    full = await ask(dns_server, "big.default.svc.cluster.local", tcp=True)
    assert len(full.answer[0]) == 60
    edns = await ask(dns_server, "big.default.svc.cluster.local", use_edns=0, payload=4096)
    assert not edns.flags & dns.flags.TC and len(edns.answer[0]) == 60  # 60 A records fit 1232 bytes


async def test_forwarded_with_cache_and_external_name(dns_server):
    upstream = dns_server.upstream
    for _ in range(3):
        r = await ask(dns_server, "example.com")
        assert [x.to_text() for x in r.answer[0]] == ["192.0.2.7"] and not r.flags & dns.flags.AA
    assert upstream.queries.count("example.com.") == 1  # the cache answered the others
    assert r.answer[0].ttl <= 30
    nx = await ask(dns_server, "missing.example")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    ext = await ask(dns_server, "ext.default.svc.cluster.local")
    assert [r.rdtype for r in ext.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert ext.answer[1].name.to_text() == "target.example."


async def test_no_upstream_is_servfail():
    index = ZoneIndex(Z)
    server = DNSServer(index, Forwarder([], timeout=0.2))
    await server.start("127.0.0.1", 0)
    try:
        r = await ask(server, "example.com")
        assert r.rcode() == dns.rcode.SERVFAIL
        r = await ask(server, "kubernetes.default.svc.cluster.local")
        assert r.rcode() == dns.rcode.NXDOMAIN
    finally:
        await server.stop()


async def test_malformed_packets_never_crash(dns_server):
    host, port = dns_server.address
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect((host, port))
    loop = asyncio.get_running_loop()
    good = dns.message.make_query("web.default.svc.cluster.local", "A")
    wire = good.to_wire()
    bad = [b"", b"\x00", b"\x12\x34" + b"\xff" * 10, wire[:20], wire[:12] + b"\x3f" * 40,
           struct.pack("!HHHHHH", 7, 0, 5, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # 5 questions, 1 present
           struct.pack("!HHHHHH", 8, 0x8000, 1, 0, 0, 0) + wire[12:]]  # a response: dropped
    for packet in bad:
        await loop.sock_sendall(sock, packet)
    # FORMERR for what had a header (the response packet and the short ones are dropped).
    got = []
    for _ in range(3):
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)
        got.append(data)
    assert all(struct.unpack("!H", d[2:4])[0] & 0xF == dns.rcode.FORMERR for d in got)
    # Two questions: FORMERR; an unknown opcode: NOTIMP; the server still answers.
    two = dns.message.make_query("a.cluster.local", "A")
    two.question.append(dns.message.make_query("b.cluster.local", "A").question[0])
    await loop.sock_sendall(sock, two.to_wire())
    assert dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)).rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    await loop.sock_sendall(sock, notify.to_wire())
    assert dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)).rcode() == dns.rcode.NOTIMP
    sock.close()
    # TCP: a length prefix promising more than is sent, then a close: the server is unharmed.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x00\x40garbage")
    writer.close()
    r = await ask(dns_server, "web.default.svc.cluster.local", tcp=True)
    assert r.rcode() == dns.rcode.NOERROR
    assert dns_server.malformed >= 3


async def test_before_the_first_listing_unknown_names_are_servfail(dns_server):
    dns_server.index.ready = False
    r = await ask(dns_server, "notyet.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert (await ask(dns_server, "web.default.svc.cluster.local")).rcode() == dns.rcode.NOERROR
    dns_server.index.set_ready()
    assert (await ask(dns_server, "notyet.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    axfr = await ask(dns_server, "cluster.local", "AXFR", tcp=True)
    assert axfr.rcode() == dns.rcode.REFUSED


async def test_metrics_count_what_was_answered(dns_server):
    from pocketkube.dns.metrics import MetricsServer

    await ask(dns_server, "web.default.svc.cluster.local")
    await ask(dns_server, "web.default.svc.cluster.local", tcp=True)
    await ask(dns_server, "nope.default.svc.cluster.local")
    await ask(dns_server, "example.com")
    metrics = MetricsServer(dns_server)
    port = await metrics.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
    finally:
        await metrics.stop()
    assert 'coredns_dns_requests_total{proto="udp"} 3.0' in text
    assert 'coredns_dns_requests_total{proto="tcp"} 1.0' in text
    assert 'coredns_dns_responses_total{rcode="NXDOMAIN"} 1.0' in text
    assert 'coredns_dns_responses_total{rcode="NOERROR"} 3.0' in text
    assert 'coredns_cache_misses_total{type="forward"} 1.0' in text


async def test_a_silent_upstream_does_not_pile_up_forwards(monkeypatch):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    server = DNSServer(ZoneIndex(Z), Forwarder([silent.getsockname()], timeout=5))
    await server.start("127.0.0.1", 0)
    monkeypatch.setattr("pocketkube.dns.server.MAX_FORWARDS", 2)
    try:
        pending = [asyncio.ensure_future(ask(server, f"slow{i}.example")) for i in range(2)]
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        r = await ask(server, "third.example")
        assert r.rcode() == dns.rcode.SERVFAIL and asyncio.get_running_loop().time() - started < 1
        for p in pending:
            p.cancel()
    finally:
        await server.stop()
        silent.close()
    assert not server._tasks


def test_upstream_parsing():
    assert parse_upstream("1.2.3.4") == ("1.2.3.4", 53)
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_upstream("[fd00::1]:54") == ("fd00::1", 54)
    with pytest.raises(ValueError):
        parse_upstream("resolver.example")
    conf = "# x\nnameserver 10.96.0.10\nnameserver 192.0.2.1 ; y\nnameserver fe80::1%eth0\nsearch a b\n"
    assert resolv_conf_upstreams(conf, skip=["10.96.0.10"]) == [("192.0.2.1", 53), ("fe80::1", 53)]


def test_cache_ttl_rules():
    q = dns.message.make_query("example.com", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.com.", 20, "IN", "A", "192.0.2.1"))
    assert cache_ttl(r) == 20
    neg = dns.message.make_response(q)
    neg.set_rcode(dns.rcode.NXDOMAIN)
    neg.authority.append(dns.rrset.from_text("com.", 900, "IN", "SOA", "a. b. 1 2 3 4 60"))
    assert cache_ttl(neg) == 60
    fail = dns.message.make_response(q)
    fail.set_rcode(dns.rcode.SERVFAIL)
    assert cache_ttl(fail) == 0
