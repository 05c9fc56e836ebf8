"""The container-mode address plan: kind's ranges, bridge names from the cluster id, and clear
errors (naming the flag to change) for ranges that overlap each other or the host's networks."""

from __future__ import annotations

import pytest

from pocketkube.net.addresses import (
    PlanError,
    cluster_id,
    container_plan,
    host_conflicts,
    is_cluster_device,
    node_plan,
)
from pocketkube.net.hostnet import cluster_id_of, render_cluster_table, render_delete_table


def test_defaults_are_kinds_ranges_with_a_bridge_and_slash_24_per_node():
    plan = container_plan("ab12", 3)
    assert (plan.pod_cidr, plan.service_cidr, plan.node_cidr, plan.load_balancer_pool) == (
        "10.244.0.0/16", "10.96.0.0/16", "10.250.0.0/24", "10.250.1.0/24")
    assert plan.cluster_bridge == "pkab12c"
    n2 = plan.nodes[1]
    assert (n2.name, n2.ip, n2.pod_cidr, n2.gateway, n2.bridge) == (
        "node-2", "10.250.0.2", "10.244.2.0/24", "10.244.2.1", "pkab12n2")
    assert all(len(n.bridge) <= 15 for n in container_plan("ffff", 253).nodes)
    assert plan.pod_routes() == ["10.96.0.0/16", "10.244.0.0/16", "10.250.0.0/23"]  # never 0.0.0.0/0


def test_process_plan_unchanged():
    assert node_plan(2)[1].ip == "127.0.1.2" and node_plan(2)[1].pod_cidr == "127.244.2.0/24"


def test_cluster_id_is_four_hex_of_the_data_dir_and_differs_per_dir():
    a, b = cluster_id("/root/.pocketkube"), cluster_id("/tmp/test-cluster")
    assert len(a) == 4 and int(a, 16) >= 0 and a != b and cluster_id("/root/.pocketkube") == a
    assert is_cluster_device(f"pk{a}c", a) and is_cluster_device(f"pk{a}n3", a)
    assert not is_cluster_device(f"pk{b}c", a) and not is_cluster_device("eth0", a)


@pytest.mark.parametrize(("kw", "message"), [
    ({"service_cidr": "10.244.128.0/20"}, "the pods range 10.244.0.0/16 (--pod-cidr-base) overlaps the services"),
    ({"load_balancer_pool": "10.250.0.128/25"}, "(--node-ip-base) overlaps the load balancers range"),
    ({"pod_cidr_base": "127.244.0.0/16"}, "--pod-cidr-base 127.244.0.0/16: with pods in their own network"),
    ({"service_cidr": "banana"}, "--service-cidr 'banana' is not an IPv4 network"),
    ({"service_cidr": "fd00::/108"}, "the services range must be IPv4"),
    ({"node_ip_base": "10.250.0.0/24"}, "--node-ip-base '10.250.0.0/24' is not an IPv4 address"),
    ({"pod_cidr_base": "10.244.0.0/24"}, "--pod-cidr-base 10.244.0.0/24 has room for 0 node /24s, 3 needed"),
    ({"pod_cidr_base": "10.244.0.0/23"}, "has room for 1 node /24s, 3 needed"),
    ({"node_ip_base": "10.250.0.253"}, "3 node IPs do not fit in 10.250.0.0/24"),
])
def test_bad_plans_say_which_flag(kw, message):
    with pytest.raises(PlanError) as err:
        container_plan("ab12", 3, **kw)
    assert message in str(err.value)


def test_host_conflicts_name_the_interface_or_route_and_the_flag():
    plan = container_plan("ab12", 2)
    addresses = [("lo", "127.0.0.1/8"), ("eth0", "192.0.2.2/24"), ("wlan0", "10.96.5.7/24"),
                 ("pkab12c", "10.250.0.1/24")]  # ours: ignored
    routes = [("0.0.0.0/0", "eth0"), ("10.0.0.0/8", "tun0"), ("10.244.1.0/24", "pkab12n1"),
              ("10.250.1.0/24", "pk9f00c")]
    problems = host_conflicts(plan, addresses, routes)
    assert problems[0] == ("the services range 10.96.0.0/16 overlaps 10.96.5.7/24 on wlan0 (a host interface's "
                           "network): pick another range with --service-cidr")
    assert any("the pods range 10.244.0.0/16 overlaps the host route 10.0.0.0/8 via tun0" in p for p in problems)
    assert any("load balancers range 10.250.1.0/24 overlaps the host route 10.250.1.0/24 via pk9f00c "
               "(another pocketkube cluster?" in p for p in problems)
    assert len(problems) == 1 + 4 + 1  # wlan0: services; tun0: all four ranges; the other cluster: the pool
    assert host_conflicts(plan, [("eth0", "192.0.2.2/24")], [("0.0.0.0/0", "eth0")]) == []


def test_cluster_table_keeps_cluster_ranges_between_our_bridges_and_masquerades_egress_only_if_asked():
    plan = container_plan("ab12", 2)
    closed = render_cluster_table(plan, pod_egress=False).splitlines()
    t = "ip pocketkube-net-ab12"
    assert closed[:2] == [f"add table {t}", f"delete table {t}"]  # replaced whole: idempotent
    assert (f"add set {t} cluster-ranges {{ type ipv4_addr ; flags interval ; elements = "
            "{ 10.96.0.0/16, 10.244.0.0/16, 10.250.0.0/23 } ; }") in closed
    assert closed[-3:] == [f'add rule {t} forward iifname "pkab12*" oifname "pkab12*" accept',
                           f"add rule {t} forward ip saddr @cluster-ranges drop",
                           f"add rule {t} forward ip daddr @cluster-ranges drop"]
    assert not any("masquerade" in line or "postrouting" in line for line in closed)
    egress = render_cluster_table(plan, pod_egress=True)
    assert (f'add rule {t} postrouting ip saddr 10.244.0.0/16 ip daddr != @cluster-ranges '
            'oifname != "pkab12*" masquerade') in egress
    assert egress.index("ip daddr != @cluster-ranges accept") < egress.index("ip saddr @cluster-ranges drop")
    assert render_delete_table("ab12") == f"add table {t}\ndelete table {t}\n"


def test_cluster_id_of_resolves_the_data_dir(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert cluster_id_of(tmp_path / "link") == cluster_id_of(str(tmp_path / "real")) == \
        cluster_id(str((tmp_path / "real").resolve()))
