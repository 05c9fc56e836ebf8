"""The nftables renderer, without a kernel: rule shapes per policy, and deltas checked against
a small fake of nft's transaction semantics (references must be gone before deletion,
elements must not be added twice or deleted when absent, every command or none)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.nftables.nft import NftError
from pocketkube.proxy.nftables.proxier import remove_leftover_table, table_name
from pocketkube.proxy.nftables.render import (
    HAIRPIN_SET,
    NO_ENDPOINTS_MAP,
    REJECT_VERDICT,
    SERVICE_IPS_MAP,
    NodeContext,
    render_delta,
    render_full,
    service_rules,
)
from pocketkube.testing.fakenft import FakeNft

CTX = NodeContext("node-1", "127.0.1.1")
BRIDGED = NodeContext("node-1", "127.0.1.1", bridged_pods=True)  # container mode (same table name)
T = CTX.qualified_table


def port(name="web", **kw) -> ServicePort:
    base = {"namespace": "default", "name": name, "port_name": "http", "protocol": "TCP", "port": 80,
            "cluster_ips": ("127.96.0.10",), "node_port": 30008}
    return ServicePort(**{**base, **kw})


def ep(ip: str, node="node-1", **kw) -> Endpoint:
    return Endpoint(ip, 8080, node, **kw)


def entry(sp: ServicePort | None = None, *eps: Endpoint) -> ServiceEntry:
    return ServiceEntry(sp or port(), tuple(eps))


def test_three_endpoints_fan_out_with_numgen_from_cluster_ip_and_own_node_port():
    r = service_rules(entry(None, ep("127.244.1.2"), ep("127.244.1.3"), ep("127.244.2.2", "node-2")), CTX)
    svc = "svc-default/web/tcp/http"
    assert r.dispatch == {"127.96.0.10 . tcp . 80": f"goto {svc}", "127.0.1.1 . tcp . 30008": f"goto {svc}"}
    assert r.chains == {svc: (("meta l4proto tcp dnat to numgen random mod 3 map { "
                               "0 : 127.244.1.2 . 8080, 1 : 127.244.1.3 . 8080, 2 : 127.244.2.2 . 8080 }"),)}
    assert not r.no_endpoints and not r.sets


def test_no_endpoint_rejects_every_frontend():
    r = service_rules(entry(port(load_balancer_ips=("127.200.0.1",), external_ips=("127.50.0.1",))), CTX)
    assert not r.chains and not r.dispatch
    assert r.no_endpoints == {k: REJECT_VERDICT for k in (
        "127.96.0.10 . tcp . 80", "127.0.1.1 . tcp . 30008", "127.200.0.1 . tcp . 80", "127.50.0.1 . tcp . 80")}


def test_external_local_without_local_endpoint_drops_external_but_serves_cluster():
    r = service_rules(entry(port(external_local=True), ep("127.244.2.2", "node-2")), CTX)
    assert r.dispatch == {"127.96.0.10 . tcp . 80": "goto svc-default/web/tcp/http"}
    assert r.no_endpoints == {"127.0.1.1 . tcp . 30008": "drop"}


def test_external_local_uses_only_local_endpoints_for_node_port():
    r = service_rules(entry(port(external_local=True, load_balancer_ips=("127.200.0.1",)),
                            ep("127.244.1.2"), ep("127.244.2.2", "node-2")), CTX)
    ext = "ext-default/web/tcp/http"
    assert r.dispatch["127.0.1.1 . tcp . 30008"] == f"goto {ext}"
    assert r.dispatch["127.200.0.1 . tcp . 80"] == f"goto {ext}"
    assert r.chains[ext] == ("meta l4proto tcp dnat to 127.244.1.2:8080",)
    assert "mod 2" in r.chains["svc-default/web/tcp/http"][0]


def test_terminating_endpoints_only_as_fallback():
    ready, term = ep("127.244.1.2"), ep("127.244.1.3", ready=False, serving=True, terminating=True)
    assert "127.244.1.3" not in str(service_rules(entry(None, ready, term), CTX).chains)
    assert "127.244.1.3" in str(service_rules(entry(None, term), CTX).chains)


def test_session_affinity_checks_sets_before_random_and_refreshes_in_endpoint():
    r = service_rules(entry(port(affinity_timeout=60), ep("127.244.1.2"), ep("127.244.1.3")), CTX)
    aff = "aff-default/web/tcp/http__127.244.1.2/8080"
    assert r.sets == {aff: 60, "aff-default/web/tcp/http__127.244.1.3/8080": 60}
    rules = r.chains["svc-default/web/tcp/http"]
    assert rules[0] == f"ip saddr @{aff} goto ep-default/web/tcp/http__127.244.1.2/8080"
    assert rules[2].startswith("numgen random mod 2")
    assert r.chains["ep-default/web/tcp/http__127.244.1.2/8080"] == (
        f"update @{aff} {{ ip saddr }}", "meta l4proto tcp dnat to 127.244.1.2:8080")


def test_udp_and_ipv6_cluster_ip():
    r = service_rules(entry(port(protocol="UDP", cluster_ips=("127.96.0.10", "fd00::10")), ep("127.244.1.2")), CTX)
    assert set(r.dispatch) == {"127.96.0.10 . udp . 80", "127.0.1.1 . udp . 30008"}
    assert r.chains["svc-default/web/udp/http"] == ("meta l4proto udp dnat to 127.244.1.2:8080",)


def test_full_render_replaces_the_table_atomically():
    script = render_full(CTX, {("default/web:http", "TCP"): service_rules(entry(None, ep("127.244.1.2")), CTX)})
    lines = script.splitlines()
    assert lines[:2] == [f"add table {T}", f"delete table {T}"]
    assert "add chain ip pocketkube-node-1-127-0-1-1 nat-output { type nat hook output priority -100 ; policy accept ; }" in lines
    assert lines[-1].startswith(f"add element {T} {SERVICE_IPS_MAP} {{ ")


def ruleset(*entries: ServiceEntry) -> dict:
    return {(e.port.key, e.port.protocol): service_rules(e, CTX) for e in entries}


def test_delta_touches_only_the_changed_service_and_nothing_when_equal():
    other = entry(port("other", cluster_ips=("127.96.0.20",), node_port=30009), ep("127.244.1.9"))
    old = ruleset(entry(None, ep("127.244.1.2"), ep("127.244.1.3")), other)
    new = ruleset(entry(None, ep("127.244.1.2")), other)
    assert render_delta(CTX, old, ruleset(entry(None, ep("127.244.1.2"), ep("127.244.1.3")), other)) == ""
    script = render_delta(CTX, old, new)
    assert "other" not in script and "delete table" not in script
    assert script.splitlines() == [f"flush chain {T} svc-default/web/tcp/http",
                                   f"add rule {T} svc-default/web/tcp/http meta l4proto tcp dnat to 127.244.1.2:8080"]


def test_fake_refuses_deleting_a_referenced_chain():
    nft = FakeNft()
    nft.apply(render_full(CTX, ruleset(entry(None, ep("127.244.1.2")))))
    before = copy.deepcopy(nft.state())
    with pytest.raises(NftError, match="still referenced"):
        nft.apply(f"flush chain {T} svc-default/web/tcp/http\ndelete chain {T} svc-default/web/tcp/http\n")
    assert nft.state() == before


IPS = ["127.244.1.2", "127.244.1.3", "127.244.2.2", "127.244.2.3"]
endpoints = st.builds(lambda ip, ready, term: Endpoint(ip, 80, f"node-{ip.split('.')[2]}", ready, True, term),
                      st.sampled_from(IPS), st.booleans(), st.booleans())
service_ports = st.builds(
    lambda name, proto, node_port, affinity, local, lb: ServicePort(
        "default", name, "", proto, 80, (f"127.96.0.{ord(name)}",), node_port, lb, (), affinity, local),
    st.sampled_from("abc"), st.sampled_from(["TCP", "UDP"]), st.sampled_from([0, 30008]),
    st.sampled_from([0, 60, 10800]), st.booleans(), st.sampled_from([(), ("127.200.0.1",)]))
models = st.lists(st.builds(lambda sp, eps: ServiceEntry(sp, tuple(sorted(set(eps)))),
                            service_ports, st.lists(endpoints, max_size=4)), max_size=4)


def as_ruleset(entries: list[ServiceEntry], ctx: NodeContext = CTX) -> dict:
    return {(e.port.key, e.port.protocol): service_rules(e, ctx) for e in entries}


@settings(max_examples=150, deadline=None)
@given(models, models, st.sampled_from([CTX, BRIDGED]))
def test_delta_applied_to_old_table_gives_the_new_table(first, second, ctx):
    old, new = as_ruleset(first, ctx), as_ruleset(second, ctx)
    nft = FakeNft()
    nft.apply(render_full(ctx, old))
    nft.apply(render_delta(ctx, old, new))
    expected = FakeNft()
    expected.apply(render_full(ctx, new))
    assert nft.state() == expected.state()


def test_shared_element_clash_first_service_wins_and_hands_over_on_delete():
    a = entry(port("a", cluster_ips=("127.96.0.1",), node_port=0, external_ips=("127.50.0.1",)), ep("127.244.1.2"))
    b = entry(port("b", cluster_ips=("127.96.0.2",), node_port=0, external_ips=("127.50.0.1",)), ep("127.244.1.3"))
    nft = FakeNft()
    nft.apply(render_full(CTX, ruleset(a, b)))
    assert nft.maps[SERVICE_IPS_MAP]["127.50.0.1 . tcp . 80"] == "goto svc-default/a/tcp/http"
    nft.apply(render_delta(CTX, ruleset(a, b), ruleset(b)))
    assert nft.maps[SERVICE_IPS_MAP]["127.50.0.1 . tcp . 80"] == "goto svc-default/b/tcp/http"
    assert nft.maps[NO_ENDPOINTS_MAP] == {}



def test_remove_leftover_table_deletes_whatever_a_dead_agent_left():
    nft = FakeNft()
    nft.apply(render_full(CTX, ruleset(entry(None, ep("127.244.1.2")))))
    assert remove_leftover_table(CTX.node_name, CTX.node_ip, runner=nft)
    assert nft.state() == ({}, {}, {}, {})
    assert remove_leftover_table(CTX.node_name, CTX.node_ip, runner=FakeNft())  # none there: still fine
    assert nft.scripts[-1].splitlines() == [f"add table {T}", f"delete table {T}"]


def test_table_name_has_node_name_and_ip():
    assert table_name("node-1", "127.0.1.1") == CTX.table == "pocketkube-node-1-127-0-1-1"


def test_process_mode_table_has_no_hairpin_nor_forward_or_output_hooks():
    script = render_full(CTX, ruleset(entry(None, ep("127.244.1.2"))))
    assert HAIRPIN_SET not in script and "hook forward" not in script and "hook output priority 0" not in script
    assert service_rules(entry(None, ep("127.244.1.2")), CTX).hairpin == frozenset()


def test_bridged_pods_masquerade_hairpin_and_check_no_endpoints_in_forward_and_output():
    bt = BRIDGED.qualified_table
    r = service_rules(entry(port(cluster_ips=("10.96.0.10", "fd00::10")), ep("10.244.1.2"), ep("fd00::2"),
                            ep("10.244.2.2", "node-2")), BRIDGED)
    assert r.hairpin == {"10.244.1.2", "10.244.2.2"}  # every endpoint this table DNATs to, IPv4 only
    lines = render_full(BRIDGED, {("default/web:http", "TCP"): r}).splitlines()
    assert f"add set {bt} {HAIRPIN_SET} {{ type ipv4_addr . ipv4_addr ; }}" in lines
    assert (f"add rule {bt} nat-postrouting oifname != \"lo\" ct status dnat "
            f"ip saddr . ip daddr @{HAIRPIN_SET} masquerade") in lines
    assert f"add chain {bt} nat-postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}" in lines
    assert (f"add rule {bt} filter-forward ct state new ip daddr . meta l4proto . th dport "
            f"vmap @{NO_ENDPOINTS_MAP}") in lines
    assert (f"add rule {bt} filter-output oifname != \"lo\" ct state new ip daddr . meta l4proto . th dport "
            f"vmap @{NO_ENDPOINTS_MAP}") in lines
    assert lines[-1] == f"add element {bt} {HAIRPIN_SET} {{ 10.244.1.2 . 10.244.1.2, 10.244.2.2 . 10.244.2.2 }}"


def test_hairpin_pair_stays_while_any_service_still_uses_the_endpoint():
    bt = BRIDGED.qualified_table
    a = entry(port("a", cluster_ips=("10.96.0.1",)), ep("10.244.1.2"))
    b = entry(port("b", cluster_ips=("10.96.0.2",)), ep("10.244.1.2"), ep("10.244.1.3"))
    nft = FakeNft()
    nft.apply(render_full(BRIDGED, as_ruleset([a, b], BRIDGED)))
    script = render_delta(BRIDGED, as_ruleset([a, b], BRIDGED), as_ruleset([a], BRIDGED))
    nft.apply(script)
    assert f"delete element {bt} {HAIRPIN_SET} {{ 10.244.1.3 . 10.244.1.3 }}" in script.splitlines()
    assert nft.set_elements == {HAIRPIN_SET: {"10.244.1.2 . 10.244.1.2"}}
    nft.apply(render_delta(BRIDGED, as_ruleset([a], BRIDGED), {}))
    assert nft.set_elements == {}
