"""Where pods reach the API server: its own address on the cluster bridge in container mode, the
`kubernetes` endpoints pointing there, and a serving certificate covering it and the Service's
ClusterIP (process mode keeps 127.0.0.1)."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from pocketkube.apiserver.bootstrap import endpoint_address
from pocketkube.apiserver.pki import DNS_NAMES, PKI, serving_hosts
from pocketkube.net.addresses import PlanError, container_plan, kubernetes_service_ip


def test_the_api_server_has_the_last_address_of_the_node_range_not_a_node_ip():
    plan = container_plan("ab12", 3)
    assert plan.apiserver_ip == "10.250.0.254"
    assert plan.apiserver_ip not in {n.ip for n in plan.nodes}
    assert ipaddress.ip_address(plan.apiserver_ip) in ipaddress.ip_network(plan.node_cidr)
    # Pods route the node range via their gateway, so the address is reachable from every pod.
    assert any(ipaddress.ip_address(plan.apiserver_ip) in ipaddress.ip_network(r) for r in plan.pod_routes())
    assert container_plan("ab12", 2, node_ip_base="10.253.0.0").apiserver_ip == "10.253.0.254"
    assert container_plan("ab12", 253).nodes[-1].ip == "10.250.0.253"


def test_nodes_may_not_take_the_api_servers_address():
    with pytest.raises(PlanError, match=r"254 node IPs do not fit in 10.250.0.0/24 below the API server's "
                                        r"10.250.0.254"):
        container_plan("ab12", 254)
    with pytest.raises(PlanError, match="--node-ip-base 10.250.0.250: 4 node IPs"):
        container_plan("ab12", 4, node_ip_base="10.250.0.250")
    assert container_plan("ab12", 3, node_ip_base="10.250.0.250").nodes[-1].ip == "10.250.0.253"


def test_kubernetes_service_ip_is_the_first_of_the_service_range():
    assert kubernetes_service_ip("10.96.0.0/16") == "10.96.0.1"
    assert kubernetes_service_ip("10.99.0.0/16") == "10.99.0.1"
    assert kubernetes_service_ip("127.96.0.0/16") == "127.96.0.1"


@pytest.mark.parametrize(("bind", "advertise", "expected"), [
    ("127.0.0.1", "", "127.0.0.1"),  # process mode: pods share the host's loopback
    ("127.0.0.1", "10.250.0.254", "10.250.0.254"),  # container mode
    ("192.0.2.7", "", "192.0.2.7"),
    ("0.0.0.0", "", "127.0.0.1"),  # a wildcard is no endpoint address
    ("localhost", "", "127.0.0.1"),
])
def test_kubernetes_endpoint_address(bind, advertise, expected):
    assert endpoint_address(bind, advertise) == expected


def test_serving_hosts_cover_bind_loopback_advertise_and_the_cluster_ip():
    assert serving_hosts("127.0.0.1", "10.250.0.254", "10.96.0.1") == ["127.0.0.1", "10.250.0.254", "10.96.0.1"]
    assert serving_hosts("127.0.0.1", "", "127.96.0.1") == ["127.0.0.1", "127.96.0.1"]
    assert serving_hosts("0.0.0.0", "", "10.96.0.1", ["api.example"]) == ["127.0.0.1", "10.96.0.1", "api.example"]


def test_certificate_is_reissued_with_the_new_sans_under_the_same_ca(tmp_path):
    pki = PKI(tmp_path)
    pki.ensure(serving_hosts("127.0.0.1"))
    ca = pki.ca_cert.read_bytes()
    pki.ensure(serving_hosts("127.0.0.1", "10.250.0.254", "10.96.0.1"))
    assert pki.ca_cert.read_bytes() == ca
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "10.250.0.254", "10.96.0.1"} <= ips
    assert set(DNS_NAMES) <= set(san.get_values_for_type(x509.DNSName))
    assert "kubernetes.default.svc" in DNS_NAMES
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
