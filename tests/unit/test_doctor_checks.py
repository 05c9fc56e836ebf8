"""`pocketkube doctor`'s checklist: every check's verdict, what a missing piece disables, the fix."""

from __future__ import annotations

import pytest

from pocketkube.doctor.checks import INFO, MISSING, OK, Settings, evaluate, healthy
from pocketkube.doctor.facts import Binary, Cgroups, Facts, NftProbe
from pocketkube.net.addresses import container_plan

pytestmark = pytest.mark.unit

ALL = ("bridge", "host-local", "portmap", "loopback")
PROGRAMS = {"containerd": "/usr/bin/containerd", "runc": "/usr/sbin/runc", "nft": "/usr/sbin/nft",
            "ip": "/usr/sbin/ip", "kubectl": "/usr/bin/kubectl"}
KERNEL = {"network namespaces": "builtin", "veth": "module", "bridge": "loaded", "br_netfilter": "loaded",
          "overlay": "loaded", "nf_tables": "builtin"}


def facts(**over) -> Facts:
    base = dict(euid=0, programs=dict(PROGRAMS), cni_dir="/usr/lib/cni", cni_present=ALL,
                busybox=Binary("/bin/busybox", True), nginx="/usr/sbin/nginx", nft=NftProbe(True),
                kernel=dict(KERNEL), cgroups=Cgroups(2, ("cpu", "memory", "pids", "io")), ip_forward="1",
                unprivileged_port_start=1024, listeners=(), host_addresses=(), host_routes=())
    base.update(over)
    return Facts(**base)


def by_id(checks, id_):
    [c] = [c for c in checks if c.id == id_]
    return c


def without(program: str) -> dict:
    return {k: v for k, v in PROGRAMS.items() if k != program}


def test_a_complete_host_is_healthy():
    checks = evaluate(facts())
    assert healthy(checks)
    assert {c.status for c in checks} == {OK}


def test_not_root_says_what_it_disables_and_how_to_fix():
    c = by_id(evaluate(facts(euid=1000, nft=None)), "root")
    assert c.status == MISSING and c.fix == "sudo pocketkube up"
    assert "--runtime process" in c.disables and "userspace" in c.disables
    nft = by_id(evaluate(facts(euid=1000, nft=None)), "nf_tables")
    assert nft.status == INFO and "needs root" in nft.detail


def test_missing_nft_names_the_package_and_both_things_it_disables():
    checks = evaluate(facts(programs=without("nft"), nft=None))
    c = by_id(checks, "nft")
    assert c.status == MISSING and c.fix == "apt-get install -y nftables"
    assert "userspace" in c.disables and "containerd mode" in c.disables
    assert not [c for c in checks if c.id == "nf_tables"]  # nothing to try without the binary
    assert not healthy(checks)


def test_an_nft_the_kernel_refuses_is_reported_with_its_error():
    c = by_id(evaluate(facts(nft=NftProbe(False, "Operation not supported"))), "nf_tables")
    assert c.status == MISSING and "Operation not supported" in c.detail and c.fix == "modprobe nf_tables"


def test_missing_containerd_disables_real_containers():
    c = by_id(evaluate(facts(programs=without("containerd"))), "containerd")
    assert c.status == MISSING and c.fix == "apt-get install -y containerd"
    assert c.disables == "pods run as host processes (--runtime process), no real images"


def test_runc_missing_while_crun_is_there_says_runc_is_what_runs():
    c = by_id(evaluate(facts(programs={**without("runc"), "crun": "/usr/bin/crun"})), "runc")
    assert c.status == MISSING and "crun is there" in c.detail and c.fix == "apt-get install -y runc"


def test_a_system_containerd_socket_is_information_not_a_requirement():
    c = by_id(evaluate(facts(containerd_socket="/run/containerd/containerd.sock")), "containerd-socket")
    assert c.status == INFO and "--container-runtime-endpoint unix:///run/containerd/containerd.sock" in c.disables


def test_cni_plugins_missing_or_only_in_opt_cni_bin():
    c = by_id(evaluate(facts(cni_present=("bridge", "loopback"))), "cni")
    assert c.status == MISSING and "host-local, portmap" in c.detail
    assert c.fix == "apt-get install -y containernetworking-plugins" and "cni-plugins" in c.other
    c = by_id(evaluate(facts(cni_present=(), cni_elsewhere=ALL)), "cni")
    assert c.status == MISSING and c.fix.startswith("mkdir -p /usr/lib/cni && ln -s /opt/cni/bin/bridge")


def test_busybox_must_exist_and_be_static():
    assert by_id(evaluate(facts(busybox=Binary())), "busybox").fix == "apt-get install -y busybox-static"
    c = by_id(evaluate(facts(busybox=Binary("/bin/busybox", False))), "busybox")
    assert c.status == MISSING and "dynamically linked" in c.detail


def test_kernel_features_missing_unknown_or_modules():
    kernel = {**KERNEL, "overlay": "missing", "veth": "unknown"}
    checks = evaluate(facts(kernel=kernel))
    overlay = by_id(checks, "kernel-overlay")
    assert overlay.status == MISSING and "CONFIG_OVERLAY_FS" in overlay.fix
    assert by_id(checks, "kernel-veth").status == INFO
    assert by_id(evaluate(facts()), "kernel-veth").status == OK  # a loadable module is enough


@pytest.mark.parametrize("cgroups, status, words", [
    (Cgroups(1, ("cpu", "cpuacct", "memory", "pids")), OK, "cgroup v1"),
    (Cgroups(2, ("cpu", "io")), MISSING, "without memory, pids"),
    (Cgroups(0, ()), MISSING, "no cgroup filesystem"),
])
def test_cgroups(cgroups, status, words):
    c = by_id(evaluate(facts(cgroups=cgroups)), "cgroups")
    assert c.status == status and words in c.detail


def test_ip_forward_off_is_information_up_sets_it():
    c = by_id(evaluate(facts(ip_forward="0")), "ip_forward")
    assert c.status == INFO and c.fix == "sysctl -w net.ipv4.ip_forward=1"


def test_busy_api_port_and_ingress_ports():
    s = Settings(port=6443, node_ips=("10.250.0.1",))
    checks = evaluate(facts(listeners=(("127.0.0.1", 6443), ("0.0.0.0", 80), ("10.250.0.9", 443))), s)
    api = by_id(checks, "port-api")
    assert api.status == MISSING and "pocketkube up --port 6444" in api.fix
    http = by_id(checks, "port-ingress-80")
    assert http.status == MISSING and http.fix == "pocketkube up --ingress-http-port 8080"
    assert by_id(checks, "port-ingress-443").status == OK  # another address's listener does not collide


def test_ingress_ports_below_1024_need_root():
    c = by_id(evaluate(facts(euid=1000, nft=None)), "port-ingress-80")
    assert c.status == MISSING and "needs root" in c.detail
    ok = by_id(evaluate(facts(euid=1000, nft=None, unprivileged_port_start=0)), "port-ingress-80")
    assert ok.status == OK


def test_ranges_routed_elsewhere_are_named_with_the_flag_to_change():
    plan = container_plan("abcd", 1)
    checks = evaluate(facts(host_routes=(("10.244.0.0/16", "eth0"),)), Settings(plan=plan))
    c = by_id(checks, "ranges")
    assert c.status == MISSING and c.detail == "pods 10.244.0.0/16 overlaps eth0"
    assert c.fix == "pick free ranges: pocketkube up --pod-cidr-base ..."
    other = (("pk1234c", "10.250.0.1/24"), ("pk1234n1", "10.244.1.1/24"), ("lo", "127.0.0.1/8"))
    busy = facts(host_addresses=other, host_routes=(("10.96.0.0/16", "pk1234c"),))
    c = by_id(evaluate(busy, Settings(plan=plan)), "ranges")
    assert "nodes 10.250.0.0/24 overlaps pk1234c" in c.detail and "(another pocketkube cluster)" in c.detail
    assert "services 10.96.0.0/16 overlaps pk1234c" in c.detail and "until that cluster stops" in c.disables
    own = ((f"pk{plan.cluster_id}c", "10.250.0.1/24"),)  # this data dir's own leftovers: up removes them
    assert by_id(evaluate(facts(host_addresses=own), Settings(plan=plan)), "ranges").status == OK
    assert by_id(evaluate(facts(), Settings(plan=plan)), "ranges").status == OK


def test_kubectl_absent_from_path_points_at_pocketkube_kubectl():
    c = by_id(evaluate(facts(programs=without("kubectl"), kubectl_bundled="/venv/bin/kubectl")), "kubectl")
    assert c.status == INFO and "pocketkube kubectl" in c.detail
    assert healthy(evaluate(facts(programs=without("kubectl"))))  # not needed for the full mode


def test_nginx_missing():
    c = by_id(evaluate(facts(nginx="")), "nginx")
    assert c.status == MISSING and c.fix == "apt-get install -y nginx-light"


def test_the_fast_facts_give_no_slow_checks():
    checks = evaluate(Facts(euid=0, programs=dict(PROGRAMS)))
    assert not [c for c in checks if c.id.startswith(("kernel-", "port-", "cgroups", "ranges", "ip_forward"))]
