"""Cluster DNS and pods: dnsPolicy/dnsConfig validation (upstream's wording), the kubelet's
search-path limits, kube-dns's address and why nothing takes it first."""

from __future__ import annotations

import ipaddress
import random

import pytest

from pocketkube.agent.runtime.cri import translate as t
from pocketkube.api.fields import Path
from pocketkube.net.addresses import dns_service_ip, process_dns_address
from pocketkube.net.ipalloc import IPAllocator
from pocketkube.registry.core.pods.validation import validate_pod_spec


def spec(**extra):
    return {"containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePolicy": "File"}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", **extra}


def messages(s):
    return [str(e) for e in validate_pod_spec(s, Path("spec"))]


def test_dns_policy_none_needs_a_config_with_a_nameserver():
    assert messages(spec(dnsPolicy="None")) == \
        ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]
    assert messages(spec(dnsPolicy="None", dnsConfig={"searches": ["a.example"]})) == \
        ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"]
    assert messages(spec(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4"]})) == []
    assert messages(spec(dnsConfig={"options": [{"name": "ndots", "value": "2"}]})) == []


@pytest.mark.parametrize(("config", "expected"), [
    ({"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]},
     "spec.dnsConfig.nameservers: Invalid value: [\"1.1.1.1\",\"1.1.1.2\",\"1.1.1.3\",\"1.1.1.4\"]: "
     "must not have more than 3 nameservers"),
    ({"nameservers": ["resolver"]},
     "spec.dnsConfig.nameservers[0]: Invalid value: \"resolver\": must be a valid IP address, "
     "(e.g. 10.9.8.7 or 2001:db8::ffff)"),
    ({"searches": [f"s{i}.example" for i in range(33)]}, "must not have more than 32 search paths"),
    ({"searches": ["a" * 63 + "." + "b" * 63] * 17}, "must not have more than 2048 characters (including spaces)"),
    ({"searches": ["Bad_Domain"]}, "spec.dnsConfig.searches[0]: Invalid value: \"Bad_Domain\""),
    ({"options": [{"value": "2"}]}, "spec.dnsConfig.options[0]: Required value: Option.Name must not be empty"),
    ({"nameservers": "1.1.1.1"}, "spec.dnsConfig.nameservers"),
])
def test_dns_config_limits(config, expected):
    got = messages(spec(dnsConfig=config))
    assert any(expected in m for m in got), got


def test_search_paths_fit_the_kubelet_limits():
    assert t.fit_search_paths(["a", "b"]) == (["a", "b"], False)
    kept, cut = t.fit_search_paths([f"s{i}.example" for i in range(40)])
    assert len(kept) == 32 and cut
    kept, cut = t.fit_search_paths(["x" * 254, "ok.example"])
    assert kept == ["ok.example"] and cut
    long = ["a" * 200 + f".{i}" for i in range(12)]  # 12 × 203 + spaces > 2048
    kept, cut = t.fit_search_paths(long)
    assert cut and len(" ".join(kept)) <= 2048 and kept == long[:len(kept)] and len(kept) == 10
    pod = {"metadata": {"namespace": "shop"},
           "spec": {"dnsConfig": {"searches": [f"s{i}.example" for i in range(32)]}}}
    d = t.dns_config(pod, host=t.ResolvConf(searches=("corp.example.",)), cluster_dns=["10.96.0.10"])
    assert list(d.searches)[:4] == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"]
    assert len(d.searches) == 32


def test_kube_dns_address_is_the_tenth_and_random_allocation_leaves_it():
    assert dns_service_ip("10.96.0.0/16") == "10.96.0.10" and dns_service_ip("127.173.0.0/16") == "127.173.0.10"
    assert process_dns_address("127.0.1.0") == "127.0.1.254"
    for cidr in ("10.96.0.0/16", "10.97.0.0/24"):
        alloc = IPAllocator(cidr, random.Random(1))
        band = 256 if cidr.endswith("/16") else 16
        # Every address outside the static band goes before .10 can be handed out at random.
        for _ in range(alloc.size - band):
            assert str(alloc.allocate_next()) != dns_service_ip(cidr)
        alloc.allocate(ipaddress.ip_address(dns_service_ip(cidr)))  # still free for kube-dns


def test_up_wires_the_dns(tmp_path):
    from pocketkube.cluster import Cluster, UpConfig

    ranges = {"node_ip_base": "10.171.0.0", "pod_cidr_base": "10.172.0.0/16", "service_cidr": "10.173.0.0/16",
              "load_balancer_pool": "10.171.1.0/24"}
    c = Cluster(UpConfig(tmp_path, runtime="containerd", dataplane="nftables", cluster_domain="corp.local", **ranges))
    assert c.dns_ip == "10.173.0.10" and c.dns_listen == "10.171.0.254"  # the API server's bridge address
    assert c._agent_dns_args() == ["--cluster-dns", "10.173.0.10", "--cluster-domain", "corp.local"]
    process = Cluster(UpConfig(tmp_path, node_ip_base="127.171.0.0", service_cidr="127.173.0.0/16"))
    assert (process.dns_ip, process.dns_listen) == ("127.173.0.10", "127.171.0.254")
    off = Cluster(UpConfig(tmp_path, dns=False))
    assert off.dns_ip == "" and off._agent_dns_args() == []


def test_up_summary_says_how_to_query(tmp_path):
    from pocketkube.cluster import Cluster, UpConfig

    c = Cluster(UpConfig(tmp_path, node_ip_base="127.171.0.0", service_cidr="127.173.0.0/16",
                         update_user_kubeconfig=False))
    c.dns_address = "127.171.0.254:53 (kube-dns 127.173.0.10, zone cluster.local, forwarding to 10.0.0.2:53)"
    assert "dig @127.173.0.10 kubernetes.default.svc.cluster.local" in c.summary()
    assert "-p" not in c.summary()
    c.dns_address = "127.171.0.254:40001 (kube-dns ...)"
    assert "dig @127.171.0.254 -p 40001 kubernetes.default.svc.cluster.local" in c.summary()
