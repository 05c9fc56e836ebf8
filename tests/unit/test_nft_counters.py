"""Traffic counters of the nftables plane without a kernel: rendering (named counters before each
DNAT, counter maps before the verdict maps), deltas that keep surviving counters, parsing
`nft -j list counters`, and the snapshot the plane builds from its own bookkeeping."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.net import nftnl
from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.nftables import counters
from pocketkube.proxy.nftables.proxier import NftablesDataPlane
from pocketkube.proxy.nftables.render import NodeContext, render_delta, render_full, service_rules
from pocketkube.testing.fakenft import FakeNft

CTX = NodeContext("node-1", "127.0.1.1", count_traffic=True)
BRIDGED = NodeContext("node-1", "127.0.1.1", bridged_pods=True, count_traffic=True)
T = CTX.qualified_table
IDENT = "default/web/tcp/http"


def port(name="web", **kw) -> ServicePort:
    base = {"namespace": "default", "name": name, "port_name": "http", "protocol": "TCP", "port": 80,
            "cluster_ips": ("127.96.0.10",), "node_port": 30008}
    return ServicePort(**{**base, **kw})


def ep(ip: str, node="node-1", **kw) -> Endpoint:
    return Endpoint(ip, 8080, node, pod=f"pod-{ip.rsplit('.', 1)[1]}", **kw)


def entry(sp: ServicePort | None = None, *eps: Endpoint) -> ServiceEntry:
    return ServiceEntry(sp or port(), tuple(eps))


def ruleset(*entries: ServiceEntry, ctx: NodeContext = CTX) -> dict:
    return {(e.port.key, e.port.protocol): service_rules(e, ctx) for e in entries}


def test_every_endpoint_gets_a_chain_counting_before_its_dnat():
    r = service_rules(entry(None, ep("127.244.1.2"), ep("127.244.1.3")), CTX)
    a, b = f"ep-{IDENT}__127.244.1.2/8080", f"ep-{IDENT}__127.244.1.3/8080"
    assert r.chains[f"svc-{IDENT}"] == (f"numgen random mod 2 vmap {{ 0 : goto {a}, 1 : goto {b} }}",)
    assert r.chains[a] == (f'counter name "{a}" meta l4proto tcp dnat to 127.244.1.2:8080',)
    assert r.counters[a] == counters.CounterRef("endpoint", "default", "web", "http", "TCP", "127.244.1.2", 8080,
                                                pod="pod-2")


def test_single_endpoint_and_affinity_count_too():
    one = service_rules(entry(None, ep("127.244.1.2")), CTX)
    chain = f"ep-{IDENT}__127.244.1.2/8080"
    assert one.chains[f"svc-{IDENT}"] == (f"goto {chain}",)
    sticky = service_rules(entry(port(affinity_timeout=60), ep("127.244.1.2")), CTX)
    assert sticky.chains[chain] == (f"update @aff-{IDENT}__127.244.1.2/8080 {{ ip saddr }}",
                                    f'counter name "{chain}" meta l4proto tcp dnat to 127.244.1.2:8080')


def test_frontends_have_entry_and_rejected_counters_in_the_map_matching_their_verdict():
    served = service_rules(entry(port(load_balancer_ips=("127.200.0.1",)), ep("127.244.1.2")), CTX)
    assert served.entry_counters == {
        "127.96.0.10 . tcp . 80": f"en-{IDENT}__127.96.0.10/80",
        "127.0.1.1 . tcp . 30008": f"en-{IDENT}__127.0.1.1/30008",
        "127.200.0.1 . tcp . 80": f"en-{IDENT}__127.200.0.1/80"}
    assert not served.reject_counters
    kinds = {ref.ip: ref.kind for ref in served.counters.values() if ref.role == "entry"}
    assert kinds == {"127.96.0.10": "ClusterIP", "127.0.1.1": "NodePort", "127.200.0.1": "LoadBalancer"}
    empty = service_rules(entry(), CTX)
    assert empty.reject_counters == {"127.96.0.10 . tcp . 80": f"rj-{IDENT}__127.96.0.10/80",
                                     "127.0.1.1 . tcp . 30008": f"rj-{IDENT}__127.0.1.1/30008"}
    # Both counters of a frontend exist whichever map holds it, so a flap to no endpoints keeps counts.
    assert set(empty.counters) == {n for n in served.counters if "127.200.0.1" not in n and "ep-" not in n}


def test_base_chains_look_counters_up_right_before_the_verdict_maps():
    script = render_full(BRIDGED, ruleset(entry(None, ep("127.244.1.2")), ctx=BRIDGED))
    lines = script.splitlines()
    counted = "counter name ip daddr . meta l4proto . th dport map @entry-counters"
    for chain in ("nat-output", "nat-prerouting"):
        i = lines.index(f"add rule {T} {chain} {counted}")
        assert lines[i + 1] == f"add rule {T} {chain} ip daddr . meta l4proto . th dport vmap @service-ips"
    for chain, prefix in (("filter-input", ""), ("filter-forward", ""), ("filter-output", 'oifname != "lo" ')):
        i = lines.index(f"add rule {T} {chain} {prefix}ct state new counter name ip daddr . meta l4proto . "
                        "th dport map @reject-counters")
        assert "vmap @no-endpoint-services" in lines[i + 1]
    assert f"add map {T} entry-counters {{ type ipv4_addr . inet_proto . inet_service : counter ; }}" in lines
    assert (f'add element {T} entry-counters {{ 127.96.0.10 . tcp . 80 : "en-{IDENT}__127.96.0.10/80", '
            f'127.0.1.1 . tcp . 30008 : "en-{IDENT}__127.0.1.1/30008" }}') in lines


def test_counting_off_renders_the_uncounted_table():
    off = NodeContext("node-1", "127.0.1.1")
    script = render_full(off, ruleset(entry(None, ep("127.244.1.2"), ep("127.244.1.3")), ctx=off))
    assert "counter" not in script and "ep-" not in script and "numgen random mod 2 map" in script


def test_full_sync_seeds_counters_with_the_old_tables_values():
    script = render_full(CTX, ruleset(entry(None, ep("127.244.1.2"))), seed={f"en-{IDENT}__127.0.1.1/30008": 12})
    assert f"add counter {T} en-{IDENT}__127.0.1.1/30008 {{ packets 12 bytes 0 ; }}" in script
    assert f"add counter {T} en-{IDENT}__127.96.0.10/80\n" in script


def test_delta_deletes_only_counters_of_departed_endpoints_after_their_references():
    old = ruleset(entry(None, ep("127.244.1.2"), ep("127.244.1.3")))
    new = ruleset(entry(None, ep("127.244.1.3"), ep("127.244.1.4")))
    nft = FakeNft()
    nft.apply(render_full(CTX, old))
    nft.counters[f"ep-{IDENT}__127.244.1.3/8080"] = 7
    nft.counters[f"en-{IDENT}__127.0.1.1/30008"] = 9
    script = render_delta(CTX, old, new)
    nft.apply(script)  # the fake refuses deleting a counter a rule or element still names
    assert f"delete counter {T} ep-{IDENT}__127.244.1.2/8080" in script
    assert "en-" not in script  # frontends unchanged: their counters untouched
    assert nft.counters[f"ep-{IDENT}__127.244.1.3/8080"] == 7
    assert nft.counters[f"en-{IDENT}__127.0.1.1/30008"] == 9
    assert nft.counters[f"ep-{IDENT}__127.244.1.4/8080"] == 0
    # Every endpoint leaves: the frontend moves to the reject map, its counters stay.
    nft.apply(render_delta(CTX, new, ruleset(entry())))
    assert set(nft.counters) == {f"{p}{IDENT}__{a}" for p in ("en-", "rj-") for a in ("127.96.0.10/80",
                                                                                     "127.0.1.1/30008")}
    assert nft.counters[f"en-{IDENT}__127.0.1.1/30008"] == 9
    assert nft.maps["reject-counters"]["127.0.1.1 . tcp . 30008"] == f'"rj-{IDENT}__127.0.1.1/30008"'
    nft.apply(render_delta(CTX, ruleset(entry()), {}))
    assert nft.counters == {}


endpoints = st.builds(lambda i, node, ready: Endpoint(f"127.244.1.{i}", 8080, node, ready, pod=f"p{i}"),
                      st.integers(2, 6), st.sampled_from(["node-1", "node-2"]), st.booleans())
service_ports = st.builds(
    lambda name, proto, node_port, aff, local, lbs: port(name, protocol=proto, node_port=node_port,
                                                         affinity_timeout=aff, external_local=local,
                                                         load_balancer_ips=lbs),
    st.sampled_from("abc"), st.sampled_from(["TCP", "UDP"]), st.sampled_from([0, 30008]),
    st.sampled_from([0, 60]), st.booleans(), st.sampled_from([(), ("127.200.0.1",)]))
models = st.lists(st.builds(lambda sp, eps: ServiceEntry(sp, tuple(sorted(set(eps)))),
                            service_ports, st.lists(endpoints, max_size=4)), max_size=4)


@settings(max_examples=150, deadline=None)
@given(models, models, st.sampled_from([CTX, BRIDGED]))
def test_counted_delta_applied_to_old_table_gives_the_new_table(first, second, ctx):
    old, new = ruleset(*first, ctx=ctx), ruleset(*second, ctx=ctx)
    nft = FakeNft()
    nft.apply(render_full(ctx, old))
    nft.apply(render_delta(ctx, old, new))
    expected = FakeNft()
    expected.apply(render_full(ctx, new))
    assert nft.state() == expected.state()
    assert set(nft.counters) == set(expected.counters)


NFT_JSON = json.dumps({"nftables": [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"counter": {"family": "ip", "name": "en-default/web/tcp/http__127.0.1.1/30008", "table": "t", "handle": 1,
                 "packets": 12, "bytes": 720}},
    {"counter": {"family": "ip", "name": "ep-default/web/tcp/http__127.244.1.2/8080", "table": "t", "handle": 2,
                 "packets": 5, "bytes": 300}}]})


def test_parse_counters_from_nft_json():
    assert counters.parse_counters(NFT_JSON) == {"en-default/web/tcp/http__127.0.1.1/30008": 12,
                                                 "ep-default/web/tcp/http__127.244.1.2/8080": 5}
    assert counters.parse_counters('{"nftables": [{"metainfo": {}}]}') == {}


@pytest.mark.parametrize("bad", ["", "not json", "[]", '{"nftables": 3}',
                                 '{"nftables": [{"counter": {"name": "x", "packets": -1}}]}',
                                 '{"nftables": [{"counter": {"name": "x", "packets": "7"}}]}'])
def test_parse_counters_rejects_malformed_output(bad):
    with pytest.raises(ValueError):
        counters.parse_counters(bad)


async def test_plane_traffic_maps_counter_names_back_to_service_ports():
    nft = FakeNft()
    plane = NftablesDataPlane("node-1", "127.0.1.1", runner=nft)
    await plane.start()
    model = {("default/web:http", "TCP"): entry(None, ep("127.244.1.2"), ep("127.244.1.3")),
             ("default/gone:http", "TCP"): entry(port("gone", cluster_ips=("127.96.0.11",), node_port=0))}
    await plane.apply(model)
    nft.counters[f"en-{IDENT}__127.0.1.1/30008"] = 3
    nft.counters[f"ep-{IDENT}__127.244.1.2/8080"] = 2
    nft.counters[f"ep-{IDENT}__127.244.1.3/8080"] = 1
    nft.counters["rj-default/gone/tcp/http__127.96.0.11/80"] = 4
    snap = (await plane.traffic()).to_json()
    assert snap["node"] == "node-1" and snap["dataplane"] == "nftables"
    assert {"namespace": "default", "service": "web", "portName": "http", "protocol": "TCP", "kind": "NodePort",
            "ip": "127.0.1.1", "port": 30008, "connections": 3} in snap["entries"]
    assert sorted((e["pod"], e["connections"], e["active"]) for e in snap["endpoints"]) == [
        ("pod-2", 2, None), ("pod-3", 1, None)]
    assert {"namespace": "default", "service": "gone", "portName": "http", "protocol": "TCP",
            "ip": "127.96.0.11", "port": 80, "connections": 4} in snap["rejected"]
    # A full sync (a failed delta, a restart) carries the counts over.
    plane._replace_table = True
    await plane.apply(model)
    assert nft.counters[f"en-{IDENT}__127.0.1.1/30008"] == 3
    await plane.stop()


def _nl(mtype: int, flags: int, attrs: bytes) -> bytes:
    body = b"\x02\x00\x00\x00" + attrs  # nfgenmsg
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, 1, 0) + body


def _attr(atype: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), atype) + data + b"\0" * (-(4 + len(data)) % 4)


def test_netlink_counter_dump_request_and_answer():
    request = nftnl.render_get_counters("ip", "pocketkube-node-1")
    length, mtype, flags = struct.unpack_from("=IHH", request)
    assert (length, mtype, flags) == (len(request), (10 << 8) | 19, 0x301)
    assert b"pocketkube-node-1\0" in request and struct.pack(">I", 1) in request
    obj = _nl((10 << 8) | 18, 2, _attr(1, b"t\0") + _attr(2, b"ep-a/b\0") + _attr(3, struct.pack(">I", 1))
              + _attr(0x8000 | 4, _attr(1, (720).to_bytes(8, "big")) + _attr(2, (12).to_bytes(8, "big"))))
    found: dict = {}
    assert not nftnl.parse_counters(obj, found)
    assert nftnl.parse_counters(obj + struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4, found)
    assert found == {"ep-a/b": (12, 720)}
    with pytest.raises(nftnl.DumpInterrupted):
        nftnl.parse_counters(_nl((10 << 8) | 18, 2 | 0x10, b""), {})
    with pytest.raises(OSError):
        nftnl.parse_counters(struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -1) + b"\0" * 16, {})


async def test_counter_read_falls_back_to_nft_json_when_netlink_fails(monkeypatch):
    from pocketkube.proxy.nftables import nft

    def refuse(*_a, **_kw):
        raise PermissionError(1, "not allowed")

    class Runner:
        async def query_json(self, command):
            assert command == "list counters table ip pocketkube-x"
            return NFT_JSON

    monkeypatch.setattr(nft.nftnl, "dump_counters", refuse)
    got = await nft.read_counters(Runner(), "ip", "pocketkube-x")  # type: ignore[arg-type]
    assert got["en-default/web/tcp/http__127.0.1.1/30008"] == 12
