"""Named clusters: names, data dirs, contexts and the choice of address/port plans (pure)."""

import ipaddress
from pathlib import Path

import pytest

from pocketkube.clusters import names, plans
from pocketkube.clusters.plans import NoFreeSlot, Recorded, choose, slot_plan
from pocketkube.net.addresses import container_plan, node_plan


@pytest.mark.parametrize("name", ["pocketkube", "dev", "a", "my-app-2", "1abc", "x" * 63])
def test_valid_names(name):
    assert names.name_problem(name) == ""


@pytest.mark.parametrize("name,why", [("", "empty"), ("Dev", "lowercase RFC 1123"), ("-a", "start and end"),
                                      ("a_b", "lowercase RFC 1123"), ("a.b", "RFC 1123"),
                                      ("x" * 64, "no more than 63")])
def test_invalid_names_say_why(name, why):
    assert why in names.name_problem(name)


def test_default_name_keeps_todays_dir_and_context():
    home = Path("/h/.pocketkube")
    assert names.data_dir_for("pocketkube", home) == home
    assert names.context_name("pocketkube") == "pocketkube"
    assert names.data_dir_for("dev", home) == Path("/h/.pocketkube-dev")
    assert names.context_name("dev") == "pocketkube-dev"
    assert names.name_of_dir(Path("/h/.pocketkube-dev"), home) == "dev"
    assert names.name_of_dir(Path("/h/.pocketkube-Bad_"), home) is None
    assert names.name_of_dir(Path("/other/.pocketkube-dev"), home) is None


def test_known_dirs_need_a_plan(tmp_path):
    default = tmp_path / "pk"
    (tmp_path / "pk-dev").mkdir()
    (tmp_path / "pk-dev" / names.PLAN_FILE).write_text("{}")
    (tmp_path / "pk-empty").mkdir()
    default.mkdir()
    (default / "kubeconfig").write_text("")  # a default cluster from before plans were recorded
    assert names.known_dirs(default) == {"dev": tmp_path / "pk-dev", "pocketkube": default}


def test_slot_zero_is_todays_defaults():
    assert slot_plan(0, "process") == {"port": 6443, "node_ip_base": "127.0.1.0", "pod_cidr_base": "127.244.0.0/16",
                                       "service_cidr": "127.96.0.0/16", "load_balancer_pool": "127.200.0.0/24"}
    assert slot_plan(0, "containerd") == {"port": 6443, "node_ip_base": "10.250.0.0",
                                          "pod_cidr_base": "10.244.0.0/16", "service_cidr": "10.96.0.0/16",
                                          "load_balancer_pool": "10.250.1.0/24"}


@pytest.mark.parametrize("runtime", ["process", "containerd"])
def test_every_slot_is_a_valid_plan_disjoint_from_every_other(runtime):
    seen: list[ipaddress.IPv4Network] = []
    ports = set()
    for slot in range(plans.SLOTS):
        p = slot_plan(slot, runtime)
        if runtime == "containerd":
            container_plan("abcd", 3, p["pod_cidr_base"], p["service_cidr"], p["node_ip_base"],
                           p["load_balancer_pool"])  # raises PlanError when it cannot work
        else:
            node_plan(3, p["node_ip_base"], p["pod_cidr_base"])
            assert all(n.subnet_of(ipaddress.ip_network("127.0.0.0/8")) for n in plans.networks(p))
        nets = plans.networks(p)
        assert not any(a.overlaps(b) for a in nets for b in seen)
        seen += nets
        ports.add(p["port"])
    assert len(ports) == plans.SLOTS


def test_first_cluster_takes_slot_zero_and_the_next_a_free_one():
    assert choose("process", {}, []) == (0, slot_plan(0, "process"))
    first = Recorded("pocketkube", 0, 6443, slot_plan(0, "process"))
    slot, plan = choose("process", {}, [first])
    assert slot == 1 and plan["port"] == 6444 and plan["node_ip_base"] == "127.0.2.0"


def test_a_busy_port_or_a_colliding_plan_skips_the_slot():
    assert choose("process", {}, [], port_free=lambda p: p != 6443)[0] == 1
    # Another cluster took slot 1's ranges by flags (it holds no slot): slot 1 is skipped too.
    flagged = Recorded("custom", None, 0, {"node_ip_base": "127.0.2.0"})
    first = Recorded("pocketkube", 0, 6443, slot_plan(0, "process"))
    assert choose("process", {}, [first, flagged])[0] == 2


def test_explicit_flags_win_and_a_kept_slot_stays():
    slot, plan = choose("process", {"port": 0, "service_cidr": "127.150.0.0/16"}, [])
    assert slot == 0 and plan["port"] == 0 and plan["service_cidr"] == "127.150.0.0/16"
    assert plan["node_ip_base"] == "127.0.1.0"
    everything = {"port": 0, "node_ip_base": "127.0.60.0", "pod_cidr_base": "127.160.0.0/16",
                  "service_cidr": "127.150.0.0/16", "load_balancer_pool": "127.170.0.0/24"}
    assert choose("process", everything, [])[0] is None  # a plan by flags alone holds no slot
    other = Recorded("x", 3, 6446, slot_plan(3, "process"))
    assert choose("containerd", {}, [other], own_slot=3, port_free=lambda p: False) == (3, slot_plan(3, "containerd"))


def test_no_free_slot_says_what_to_do():
    full = [Recorded(f"c{i}", i, 6443 + i, slot_plan(i, "process")) for i in range(plans.SLOTS)]
    with pytest.raises(NoFreeSlot, match="down --name NAME --delete"):
        choose("process", {}, full)
    with pytest.raises(NoFreeSlot, match="--port"):
        choose("process", {}, [], port_free=lambda p: False)
