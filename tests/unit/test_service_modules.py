"""The Service package's seams: the pure IP-family decision, IP parsing, and the re-exported names."""

from __future__ import annotations

import ipaddress

import pytest

from pocketkube.api.errors import Invalid
from pocketkube.registry.core import services
from pocketkube.registry.core.services.defaults import default
from pocketkube.registry.core.services.ipfamilies import init_ip_family_fields, parse_ip
from pocketkube.registry.core.services.strategy import drop_type_dependent_fields, normalize_cluster_ips


def test_every_exported_name_is_importable_from_the_package() -> None:
    for name in services.__all__:
        assert getattr(services, name) is not None
    # The generic registry looks the strategy up by these three names.
    assert callable(services.default) and callable(services.validate) and callable(services.validate_update)


@pytest.mark.parametrize("text, parsed", [
    ("10.0.0.1", "10.0.0.1"), ("010.000.000.001", "10.0.0.1"), ("::ffff:10.0.0.1", "10.0.0.1"),
    ("2001:db8::1", "2001:db8::1"), ("256.0.0.1", None), ("fe80::1%eth0", None), ("", None),
])
def test_parse_ip_is_as_sloppy_as_go(text: str, parsed: str | None) -> None:
    result = parse_ip(text)
    assert (str(result) if result is not None else None) == parsed
    if result is not None:
        assert isinstance(result, ipaddress.IPv4Address | ipaddress.IPv6Address)


def test_ip_families_default_to_the_cluster_family() -> None:
    svc = {"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "selector": {"app": "web"}}}
    init_ip_family_fields(svc, None, cluster_family="IPv6")
    assert svc["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert svc["spec"]["ipFamilies"] == ["IPv6"]


def test_headless_selectorless_services_get_both_families() -> None:
    svc = {"metadata": {"name": "db"}, "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}}
    init_ip_family_fields(svc, None, cluster_family="IPv4")
    assert svc["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"]


def test_dual_stack_is_refused_on_a_single_family_cluster() -> None:
    svc = {"metadata": {"name": "web"},
           "spec": {"type": "ClusterIP", "selector": {"a": "b"}, "ipFamilyPolicy": "RequireDualStack"}}
    with pytest.raises(Invalid) as caught:
        init_ip_family_fields(svc, None, cluster_family="IPv4")
    assert "this cluster is not configured for dual-stack services" in caught.value.message


def test_external_name_services_have_no_families() -> None:
    svc = {"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    init_ip_family_fields(svc, None, cluster_family="IPv4")
    assert "ipFamilies" not in svc["spec"] and "ipFamilyPolicy" not in svc["spec"]


def test_contextual_defaulting_is_idempotent() -> None:
    old = {"spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
                    "ports": [{"port": 80, "nodePort": 30080}], "externalTrafficPolicy": "Cluster"}}
    new = {"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.5", "ports": [{"port": 80, "nodePort": 30080}],
                    "externalTrafficPolicy": "Cluster"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}
    for _ in range(2):
        normalize_cluster_ips(new["spec"], old["spec"])
        drop_type_dependent_fields(new, old)
    assert new["spec"]["clusterIPs"] == ["10.0.0.5"]
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["status"]["loadBalancer"] == {}


def test_static_defaults() -> None:
    svc = {"spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}}
    default(svc)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert svc["status"] == {"loadBalancer": {}}
