"""Service defaulting, validation and allocation against Kubernetes' exact behaviour and wording."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.api.errors import InternalError, Invalid
from pocketkube.registry.core import services
from pocketkube.registry.core.services import ServiceAllocator, default, validate, validate_update


def seed_service(**spec_overrides) -> dict:
    spec = {"type": "NodePort", "ports": [{"targetPort": 80, "port": 80, "nodePort": 30008}],
            "selector": {"app": "myapp", "type": "front-end"}}
    spec.update(spec_overrides)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp-service", "namespace": "default"},
            "spec": spec}


def svc(name: str = "web", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def messages(errors) -> list[str]:
    return [str(e) for e in errors]


def create(alloc: ServiceAllocator, obj: dict) -> dict:
    """The store's create sequence: default, allocate, validate, commit."""
    default(obj)
    txn = alloc.allocate_for_create(obj)
    errs = validate(obj)
    if errs:
        txn.revert()
        raise Invalid("Service", obj["metadata"]["name"], errs)
    txn.commit()
    return obj


def update(alloc: ServiceAllocator, new: dict, old: dict) -> dict:
    default(new)
    txn = alloc.allocate_for_update(new, old)
    errs = validate_update(new, old)
    if errs:
        txn.revert()
        raise Invalid("Service", new["metadata"]["name"], errs)
    txn.commit()
    return new


def invalid_message(excinfo) -> str:
    return excinfo.value.message


# ---------------------------------------------------------------------------------------------
# Defaulting


def test_seed_service_matches_a_real_cluster():
    alloc = ServiceAllocator()
    obj = create(alloc, seed_service())
    spec = obj["spec"]
    cluster_ip = spec.pop("clusterIP")
    assert spec.pop("clusterIPs") == [cluster_ip]
    assert cluster_ip.startswith("127.96.")
    assert spec == {
        "type": "NodePort",
        "ports": [{"targetPort": 80, "port": 80, "nodePort": 30008, "protocol": "TCP"}],
        "selector": {"app": "myapp", "type": "front-end"},
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
    }
    assert obj["status"] == {"loadBalancer": {}}
    assert alloc.used_node_ports() == 1 and alloc.used_cluster_ips() == 1


def test_static_defaults_for_each_type():
    obj = {"metadata": {"name": "a"}}
    default(obj)
    assert obj["spec"] == {"sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster"}
    lb = svc(type="LoadBalancer", ports=[{"port": 443, "targetPort": ""}])
    default(lb)
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["ports"][0] == {"port": 443, "targetPort": 443, "protocol": "TCP"}
    ext = svc(type="ExternalName", externalName="example.com")
    default(ext)
    assert "internalTrafficPolicy" not in ext["spec"] and "externalTrafficPolicy" not in ext["spec"]
    with_external_ips = svc(ports=[{"port": 80}], externalIPs=["1.2.3.4"])
    default(with_external_ips)
    assert with_external_ips["spec"]["externalTrafficPolicy"] == "Cluster"


def test_session_affinity_defaults():
    obj = svc(sessionAffinity="ClientIP", ports=[{"port": 80, "targetPort": "http"}])
    default(obj)
    assert obj["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert obj["spec"]["ports"][0]["targetPort"] == "http"
    none = svc(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})
    default(none)
    assert "sessionAffinityConfig" not in none["spec"]


def test_ingress_ip_mode_defaulted_for_load_balancers():
    obj = svc(type="LoadBalancer", ports=[{"port": 80}])
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "x.example"}]}}
    default(obj)
    assert obj["status"]["loadBalancer"]["ingress"] == [{"ip": "1.2.3.4", "ipMode": "VIP"}, {"hostname": "x.example"}]


# ---------------------------------------------------------------------------------------------
# Validation messages


def validated(obj: dict) -> list[str]:
    default(obj)
    return messages(validate(obj))


def test_name_rules():
    obj = svc(name="My_Service", ports=[{"port": 80}])
    assert validated(obj) == [
        'metadata.name: Invalid value: "My_Service": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
        "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    unnamed = svc(ports=[{"port": 80}])
    del unnamed["metadata"]["name"]
    assert validated(unnamed) == ["metadata.name: Required value: name or generateName is required"]


def test_ports_required_and_port_rules():
    assert validated(svc()) == ["spec.ports: Required value"]
    assert validated(svc(clusterIP="None", clusterIPs=["None"])) == []
    obj = svc(ports=[{"port": 0, "protocol": "ICMP", "targetPort": "Http--"},
                     {"name": "http", "port": 70000, "targetPort": 0},
                     {"name": "http", "port": 81, "appProtocol": "bad proto"}])
    msgs = validated(obj)
    assert msgs[:6] == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'spec.ports[0].targetPort: Invalid value: "Http--": must contain only alpha-numeric characters (a-z, 0-9), '
        "and hyphens (-)",
        'spec.ports[0].targetPort: Invalid value: "Http--": must not contain consecutive hyphens',
        'spec.ports[0].targetPort: Invalid value: "Http--": must not begin or end with a hyphen',
    ]
    assert "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in msgs
    assert "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive" in msgs
    assert 'spec.ports[2].name: Duplicate value: "http"' in msgs
    assert any(m.startswith('spec.ports[2].appProtocol: Invalid value: "bad proto": name part must consist')
               for m in msgs)


def test_port_name_must_be_dns_label():
    obj = svc(ports=[{"name": "HTTP", "port": 80}])
    assert validated(obj) == [
        'spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
        "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]


def test_target_port_name_length_and_letter():
    obj = svc(ports=[{"port": 80, "targetPort": "a-very-long-port-name"}, ])
    assert validated(obj) == ['spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": '
                              "must be no more than 15 characters"]
    digits = svc(ports=[{"port": 80, "targetPort": "8080"}])
    assert validated(digits) == ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)']


def test_headless_nodeport_and_loadbalancer_rejected():
    for kind in ("NodePort", "LoadBalancer"):
        obj = svc(type=kind, clusterIP="None", clusterIPs=["None"], ports=[{"port": 80}])
        assert validated(obj) == [f'spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for {kind} services']


def test_external_name_rules():
    assert validated(svc(type="ExternalName", externalName="db.example.com.")) == []
    assert validated(svc(type="ExternalName")) == ["spec.externalName: Required value"]
    obj = svc(type="ExternalName", externalName="Bad_Name", clusterIPs=["10.0.0.1"], clusterIP="10.0.0.1",
              ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    msgs = validated(obj)
    assert msgs[:3] == ["spec.clusterIPs: Forbidden: may not be set for ExternalName services",
                        "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
                        "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]
    assert msgs[3].startswith('spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')


def test_selector_session_affinity_and_type():
    obj = svc(ports=[{"port": 80}], selector={"app": "-bad"}, sessionAffinity="Sticky", type="Weird")
    msgs = validated(obj)
    assert msgs[0].startswith('spec.selector: Invalid value: "-bad": a valid label must be an empty string')
    assert msgs[1] == 'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'
    assert msgs[2] == ('spec.type: Unsupported value: "Weird": supported values: "ClusterIP", "ExternalName", '
                       '"LoadBalancer", "NodePort"')
    client_ip = svc(ports=[{"port": 80}], sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}})
    assert validated(client_ip) == ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: "
                                    "must be greater than 0 and less than 86400"]
    full_port = [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    obj = svc(ports=full_port, sessionAffinity="ClientIP", internalTrafficPolicy="Cluster", type="ClusterIP",
              sessionAffinityConfig={"clientIP": {}})
    assert messages(validate(obj)) == ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Required value: "
                                       "when session affinity type is ClientIP"]
    none_with_config = svc(ports=full_port, sessionAffinity="None", type="ClusterIP",
                           internalTrafficPolicy="Cluster", sessionAffinityConfig={})
    assert messages(validate(none_with_config)) == [
        "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]


def test_required_after_defaulting_fields():
    obj = svc(ports=[{"port": 80, "protocol": "TCP", "targetPort": 80}])
    assert messages(validate(obj)) == ["spec.sessionAffinity: Required value", "spec.type: Required value"]
    lb = svc(type="LoadBalancer", sessionAffinity="None", ports=[{"port": 80, "protocol": "TCP", "targetPort": 80}])
    assert messages(validate(lb)) == ["allocateLoadBalancerNodePorts: Required value",
                                      "spec.externalTrafficPolicy: Required value",
                                      "spec.internalTrafficPolicy: Required value"]


def test_cluster_ip_rules():
    assert validated(svc(ports=[{"port": 80}], clusterIP="10.0.0.1")) == []  # clusterIPs follows clusterIP
    assert messages(services.cluster_ips_related_errors({"clusterIP": "10.0.0.1"}, None)) == [
        "spec.clusterIPs: Required value"]
    assert validated(svc(ports=[{"port": 80}], clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"])) == [
        'spec.clusterIPs: Invalid value: ["10.0.0.2"]: first value must match `clusterIP`']
    assert validated(svc(ports=[{"port": 80}], clusterIPs=["10.0.0.2"])) == [
        'spec.clusterIPs: Invalid value: ["10.0.0.2"]: must be empty when `clusterIP` is not specified']
    assert validated(svc(ports=[{"port": 80}], clusterIP="abc", clusterIPs=["abc"])) == [
        'spec.clusterIPs[0]: Invalid value: "abc": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']
    assert validated(svc(ports=[{"port": 80}], clusterIP="None", clusterIPs=["None", "10.0.0.1"])) == [
        'spec.clusterIPs: Invalid value: ["None","10.0.0.1"]: \'None\' must be the first and only value']
    assert validated(svc(ports=[{"port": 80}], clusterIP="10.0.0.1", clusterIPs=["10.0.0.1", "10.0.0.2"])) == [
        'spec.clusterIPs: Invalid value: ["10.0.0.1","10.0.0.2"]: may specify no more than one IP for each IP family']
    assert validated(svc(ports=[{"port": 80}], clusterIP="10.0.0.1", clusterIPs=["10.0.0.1"],
                         ipFamilies=["IPv6", "IPv6"], ipFamilyPolicy="Both")) == [
        'spec.ipFamilies[1]: Duplicate value: "IPv6"',
        'spec.ipFamilyPolicy: Unsupported value: "Both": supported values: "PreferDualStack", "RequireDualStack", '
        '"SingleStack"',
        'spec.clusterIPs[0]: Invalid value: "10.0.0.1": expected an IPv6 value as indicated by `ipFamilies[0]`']


def test_external_ips_must_not_be_special():
    obj = svc(ports=[{"port": 80}], externalIPs=["0.0.0.0", "127.0.0.1", "169.254.1.1", "224.0.0.5", "nope", "8.8.8.8"])
    assert validated(obj) == [
        'spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        'spec.externalIPs[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        'spec.externalIPs[2]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, '
        'fe80::/10)',
        'spec.externalIPs[3]: Invalid value: "224.0.0.5": may not be in the link-local multicast range '
        '(224.0.0.0/24, ff02::/10)',
        'spec.externalIPs[4]: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']


def test_node_port_rules():
    cluster_ip = svc(ports=[{"port": 80, "nodePort": 30001}])
    assert validated(cluster_ip) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    dup = svc(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30008},
                                      {"name": "b", "port": 81, "nodePort": 30008},
                                      {"name": "c", "port": 82, "nodePort": 30008, "protocol": "UDP"}])
    assert validated(dup) == ["spec.ports[1].nodePort: Duplicate value: 30008"]
    dup_port = svc(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}])
    assert validated(dup_port) == [
        'spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,"Port":80,"TargetPort":0,'
        '"NodePort":0}']


def test_load_balancer_only_fields():
    obj = svc(ports=[{"port": 80}], loadBalancerSourceRanges=["10.0.0.0/8", "bad"], allocateLoadBalancerNodePorts=True,
              loadBalancerClass="example.com/lb", externalTrafficPolicy="Local", healthCheckNodePort=30000)
    assert validated(obj) == [
        "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
        'spec.LoadBalancerSourceRanges[1]: Invalid value: "bad": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
        '2001:db8::/64)',
        "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
        "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'",
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services',
        "spec.healthCheckNodePort: Invalid value: 30000: may only be set when `type` is 'LoadBalancer' and "
        "`externalTrafficPolicy` is 'Local'"]
    annotated = svc(ports=[{"port": 80}])
    annotated["metadata"]["annotations"] = {services.SOURCE_RANGES_ANNOTATION: "10.0.0.0/8, x"}
    assert validated(annotated) == [
        "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be used "
        "when `type` is 'LoadBalancer'",
        'metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: "x": must be '
        "a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


def test_traffic_policies_and_distribution():
    obj = svc(type="NodePort", ports=[{"port": 80}], externalTrafficPolicy="Global", internalTrafficPolicy="Node",
              trafficDistribution="Anywhere")
    assert validated(obj) == [
        'spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"',
        'spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"',
        'spec.trafficDistribution: Unsupported value: "Anywhere": supported values: "PreferClose", '
        '"PreferSameNode", "PreferSameZone"']
    lb_local = svc(type="LoadBalancer", ports=[{"port": 80}], externalTrafficPolicy="Local")
    assert validated(lb_local) == ["spec.healthCheckNodePort: Required value"]


# ---------------------------------------------------------------------------------------------
# Wrong JSON types never raise


def test_wrong_types_become_field_errors():
    obj = svc(ports={"port": 80})
    assert messages(validate(obj)) == ['spec.ports: Invalid value: {"port":80}: must be of type array, not object']
    obj = svc(type="NodePort", ports=[{"port": "80", "nodePort": "30008", "targetPort": [1]}], selector=["a"],
              clusterIPs="x", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": []})
    default(obj)
    msgs = messages(validate(obj))
    assert 'spec.clusterIPs: Invalid value: "x": must be of type array, not string' in msgs
    assert 'spec.ports[0].port: Invalid value: "80": must be of type integer, not string' in msgs
    assert 'spec.ports[0].nodePort: Invalid value: "30008": must be of type integer, not string' in msgs
    assert "spec.ports[0].targetPort: Invalid value: [1]: must be of type integer or string, not array" in msgs
    assert 'spec.selector: Invalid value: ["a"]: must be of type object, not array' in msgs
    assert "spec.sessionAffinityConfig.clientIP: Invalid value: []: must be of type object, not array" in msgs
    with pytest.raises(Invalid) as excinfo:
        ServiceAllocator().allocate_for_create(obj)
    assert excinfo.value.code == 422


json_scalars = st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=4) | st.sampled_from(
    ["None", "NodePort", "LoadBalancer", "ExternalName", "ClusterIP", "Local", "ClientIP", "127.96.0.5", "TCP"])
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["port", "nodePort", "targetPort", "protocol", "name", "clientIP", "timeoutSeconds", "a"]), c,
    max_size=3), max_leaves=6)
spec_keys = st.sampled_from(["type", "ports", "clusterIP", "clusterIPs", "selector", "sessionAffinity",
                             "sessionAffinityConfig", "externalIPs", "externalTrafficPolicy", "ipFamilies",
                             "ipFamilyPolicy", "healthCheckNodePort", "externalName", "loadBalancerSourceRanges",
                             "allocateLoadBalancerNodePorts", "internalTrafficPolicy", "loadBalancerClass"])


@settings(max_examples=250, deadline=None)
@given(st.dictionaries(spec_keys, json_values, max_size=6), st.dictionaries(spec_keys, json_values, max_size=6))
def test_any_json_never_raises_unexpectedly(spec, old_spec):
    alloc = ServiceAllocator(node_port_range=(30000, 30100))
    obj = svc(**copy.deepcopy(spec))
    default(obj)
    validate(obj)
    try:
        alloc.allocate_for_create(obj).commit()
    except (Invalid, InternalError):
        pass
    old = svc(**old_spec)
    default(old)
    new = svc(**copy.deepcopy(spec))
    default(new)
    validate_update(new, old)
    try:
        alloc.allocate_for_update(new, old).revert()
    except (Invalid, InternalError):
        pass
    alloc.release(obj)
    alloc.rebuild([obj, old, {"spec": "x"}])


# ---------------------------------------------------------------------------------------------
# Allocation


def test_node_port_conflicts_and_range_messages():
    alloc = ServiceAllocator()
    create(alloc, seed_service())
    second = seed_service()
    second["metadata"]["name"] = "other"
    with pytest.raises(Invalid) as excinfo:
        create(alloc, second)
    assert invalid_message(excinfo) == ('Service "other" is invalid: spec.ports[0].nodePort: Invalid value: 30008: '
                                        "provided port is already allocated")
    out_of_range = svc(type="NodePort", ports=[{"port": 80, "nodePort": 80}])
    with pytest.raises(Invalid) as excinfo:
        create(alloc, out_of_range)
    assert invalid_message(excinfo) == ('Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: '
                                        "provided port is not in the valid range. The range of valid ports is "
                                        "30000-32767")
    assert alloc.used_node_ports() == 1 and alloc.used_cluster_ips() == 1  # failures leaked nothing


def test_node_port_shared_across_protocols_in_one_service_but_not_across_services():
    alloc = ServiceAllocator()
    dns = create(alloc, svc(type="NodePort", ports=[{"name": "dns-tcp", "port": 53},
                                                    {"name": "dns-udp", "port": 53, "protocol": "UDP"}]))
    tcp, udp = (p["nodePort"] for p in dns["spec"]["ports"])
    assert tcp == udp and 30086 <= tcp <= 32767
    assert alloc.used_node_ports() == 1
    clash = svc(name="clash", type="NodePort", ports=[{"port": 99, "protocol": "UDP", "nodePort": tcp}])
    with pytest.raises(Invalid, match="provided port is already allocated"):
        create(alloc, clash)


def test_requested_cluster_ip_conflicts_and_range():
    alloc = ServiceAllocator(service_cidr="10.0.0.0/24")
    assert alloc.first_ip() == "10.0.0.1"
    kubernetes = create(alloc, svc(name="kubernetes", clusterIP=alloc.first_ip(), ports=[{"name": "https",
                                                                                          "port": 443}]))
    assert kubernetes["spec"]["clusterIPs"] == ["10.0.0.1"]
    with pytest.raises(Invalid) as excinfo:
        create(alloc, svc(clusterIP="10.0.0.1", ports=[{"port": 80}]))
    assert invalid_message(excinfo) == ('Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.1"]: '
                                        "failed to allocate IP 10.0.0.1: provided IP is already allocated")
    with pytest.raises(Invalid) as excinfo:
        create(alloc, svc(clusterIP="1.1.1.1", clusterIPs=["1.1.1.1"], ports=[{"port": 80}]))
    assert invalid_message(excinfo) == (
        'Service "web" is invalid: spec.clusterIPs: Invalid value: ["1.1.1.1"]: failed to allocate IP 1.1.1.1: '
        "the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.0.0.0/24")


def test_malformed_cluster_ip_is_an_allocation_phase_error():
    with pytest.raises(Invalid) as excinfo:
        create(ServiceAllocator(), svc(clusterIP="10.1", ports=[]))
    assert excinfo.value.errors[0].field == "spec.clusterIPs[0]"
    assert len(excinfo.value.errors) == 1  # "spec.ports: Required value" is not reached


def test_ip_family_errors_on_single_stack_cluster():
    alloc = ServiceAllocator()
    with pytest.raises(Invalid) as excinfo:
        create(alloc, svc(ports=[{"port": 80}], ipFamilyPolicy="RequireDualStack"))
    assert messages(excinfo.value.errors) == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack '
        "services"]
    with pytest.raises(Invalid) as excinfo:
        create(alloc, svc(ports=[{"port": 80}], ipFamilies=["IPv6"]))
    assert messages(excinfo.value.errors) == ['spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this '
                                              "cluster"]
    with pytest.raises(Invalid) as excinfo:
        create(alloc, svc(ports=[{"port": 80}], clusterIP="fd00::1"))
    assert messages(excinfo.value.errors) == ['spec.clusterIPs[0]: Invalid value: ["fd00::1"]: IPv6 is not '
                                              "configured on this cluster"]
    assert alloc.used_cluster_ips() == 0


def test_headless_services():
    alloc = ServiceAllocator()
    selectorless = create(alloc, svc(clusterIP="None"))
    assert selectorless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert selectorless["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert selectorless["spec"]["clusterIPs"] == ["None"]
    with_selector = create(alloc, svc(name="h2", clusterIP="None", selector={"app": "x"}, ports=[{"port": 80}]))
    assert with_selector["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert with_selector["spec"]["ipFamilies"] == ["IPv4"]
    assert alloc.used_cluster_ips() == 0


def test_node_port_range_full_is_internal_error_and_release_reuses():
    alloc = ServiceAllocator(node_port_range=(30000, 30004))
    made = [create(alloc, svc(name=f"s{i}", type="NodePort", ports=[{"port": 80}])) for i in range(5)]
    assert sorted(s["spec"]["ports"][0]["nodePort"] for s in made) == list(range(30000, 30005))
    assert alloc.free_node_ports() == 0
    with pytest.raises(InternalError) as excinfo:
        create(alloc, svc(name="late", type="NodePort", ports=[{"port": 80}]))
    assert excinfo.value.code == 500
    assert excinfo.value.message == "Internal error occurred: failed to allocate a nodePort: range is full"
    assert alloc.used_cluster_ips() == 5  # the late service's cluster IP was given back
    alloc.release(made[2])
    again = create(alloc, svc(name="again", type="NodePort", ports=[{"port": 80}]))
    assert again["spec"]["ports"][0]["nodePort"] == made[2]["spec"]["ports"][0]["nodePort"]


def test_cluster_ip_range_full():
    alloc = ServiceAllocator(service_cidr="10.0.0.0/29")  # 6 usable addresses
    ips = {create(alloc, svc(name=f"s{i}", ports=[{"port": 80}]))["spec"]["clusterIP"] for i in range(6)}
    assert ips == {f"10.0.0.{i}" for i in range(1, 7)}
    with pytest.raises(InternalError) as excinfo:
        create(alloc, svc(name="late", ports=[{"port": 80}]))
    assert excinfo.value.message == "Internal error occurred: failed to allocate a serviceIP: range is full"


def test_revert_returns_everything():
    alloc = ServiceAllocator()
    obj = seed_service(type="LoadBalancer", externalTrafficPolicy="Local")
    default(obj)
    txn = alloc.allocate_for_create(obj)
    assert alloc.used_node_ports() == 2 and obj["spec"]["healthCheckNodePort"] >= 30000
    txn.revert()
    assert alloc.used_node_ports() == 0 and alloc.used_cluster_ips() == 0


def test_many_creates_never_duplicate():
    alloc = ServiceAllocator(service_cidr="10.0.0.0/24", node_port_range=(30000, 30299))
    made = [create(alloc, svc(name=f"s{i}", type="NodePort", ports=[{"port": 80}])) for i in range(254)]
    assert len({s["spec"]["clusterIP"] for s in made}) == 254
    assert len({s["spec"]["ports"][0]["nodePort"] for s in made}) == 254


def test_load_balancer_without_node_port_allocation():
    alloc = ServiceAllocator()
    obj = create(alloc, svc(type="LoadBalancer", allocateLoadBalancerNodePorts=False,
                            ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30100}]))
    assert "nodePort" not in obj["spec"]["ports"][0]
    assert obj["spec"]["ports"][1]["nodePort"] == 30100
    assert alloc.used_node_ports() == 1


# ---------------------------------------------------------------------------------------------
# Updates


def test_reapply_without_node_port_or_cluster_ip_keeps_them():
    alloc = ServiceAllocator()
    old = create(alloc, svc(type="NodePort", ports=[{"name": "http", "port": 80}]))
    new = update(alloc, svc(type="NodePort", ports=[{"name": "http", "port": 80}]), copy.deepcopy(old))
    assert new["spec"] == old["spec"]
    assert alloc.used_node_ports() == 1 and alloc.used_cluster_ips() == 1


def test_node_port_to_cluster_ip_releases_and_clears():
    alloc = ServiceAllocator()
    old = create(alloc, seed_service())
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    update(alloc, new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert alloc.used_node_ports() == 0
    create(alloc, svc(name="reuse", type="NodePort", ports=[{"port": 80, "nodePort": 30008}]))


def test_switch_to_cluster_ip_with_a_new_node_port_is_forbidden():
    alloc = ServiceAllocator()
    old = create(alloc, seed_service())
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30009
    with pytest.raises(Invalid) as excinfo:
        update(alloc, new, old)
    assert messages(excinfo.value.errors) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert alloc.used_node_ports() == 1  # the failed update released nothing


def test_cluster_ip_is_immutable():
    alloc = ServiceAllocator()
    old = create(alloc, svc(ports=[{"port": 80}]))
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "127.96.0.7"
    with pytest.raises(Invalid) as excinfo:
        update(alloc, new, old)
    assert messages(excinfo.value.errors) == [
        'spec.clusterIPs[0]: Invalid value: ["127.96.0.7"]: may not change once set']


def test_external_name_round_trip_releases_and_reallocates_cluster_ip():
    alloc = ServiceAllocator()
    old = create(alloc, svc(ports=[{"port": 80}]))
    to_external = copy.deepcopy(old)
    to_external["spec"].update(type="ExternalName", externalName="example.com")
    update(alloc, to_external, old)
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"} & set(
        to_external["spec"]) - {"internalTrafficPolicy"}
    assert alloc.used_cluster_ips() == 0
    back = copy.deepcopy(to_external)
    back["spec"]["type"] = "ClusterIP"
    del back["spec"]["externalName"]
    update(alloc, back, to_external)
    assert back["spec"]["clusterIPs"] == [back["spec"]["clusterIP"]] and alloc.used_cluster_ips() == 1


def test_update_changes_node_port_and_allocates_new_ports():
    alloc = ServiceAllocator()
    old = create(alloc, seed_service())
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["nodePort"] = 30010
    new["spec"]["ports"][0]["name"] = "http"
    new["spec"]["ports"].append({"name": "https", "port": 443})
    update(alloc, new, old)
    assert alloc.used_node_ports() == 2
    create(alloc, svc(name="reuse", type="NodePort", ports=[{"port": 80, "nodePort": 30008}]))


def test_cluster_ip_to_node_port_allocates():
    alloc = ServiceAllocator()
    old = create(alloc, svc(ports=[{"port": 80}]))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "NodePort"
    update(alloc, new, old)
    assert 30000 <= new["spec"]["ports"][0]["nodePort"] <= 32767
    assert new["spec"]["externalTrafficPolicy"] == "Cluster"


def test_health_check_node_port_lifecycle():
    alloc = ServiceAllocator()
    old = create(alloc, svc(type="LoadBalancer", ports=[{"port": 80}]))
    local = copy.deepcopy(old)
    local["spec"]["externalTrafficPolicy"] = "Local"
    update(alloc, local, old)
    assert local["spec"]["healthCheckNodePort"] and alloc.used_node_ports() == 2
    changed = copy.deepcopy(local)
    changed["spec"]["healthCheckNodePort"] = 30500
    with pytest.raises(Invalid) as excinfo:
        update(alloc, changed, local)
    assert "spec.healthCheckNodePort: Forbidden: field is immutable" in messages(excinfo.value.errors)
    cluster = copy.deepcopy(local)
    cluster["spec"]["externalTrafficPolicy"] = "Cluster"
    update(alloc, cluster, local)
    assert "healthCheckNodePort" not in cluster["spec"] and alloc.used_node_ports() == 1


def test_delete_releases_everything_and_rebuild_reports_conflicts():
    alloc = ServiceAllocator()
    a = create(alloc, seed_service())
    b = create(alloc, svc(name="b", type="LoadBalancer", externalTrafficPolicy="Local", ports=[{"port": 80}]))
    assert alloc.used_node_ports() == 3
    alloc.release(b)
    assert alloc.used_node_ports() == 1 and alloc.used_cluster_ips() == 1
    clone = copy.deepcopy(a)
    clone["metadata"]["name"] = "clone"
    odd = svc(name="odd", type="NodePort", clusterIP="10.0.0.1", clusterIPs=["10.0.0.1"],
              ports=[{"port": 80, "nodePort": 80}])
    problems = alloc.rebuild([a, clone, odd])
    ip = a["spec"]["clusterIP"]
    assert problems == [
        f"service default/clone: Cluster IP {ip} was assigned to multiple services; please recreate service",
        "service default/clone: Port 30008 was assigned to multiple services; please recreate service",
        "service default/odd: Cluster IP 10.0.0.1 is not within the service CIDR 127.96.0.0/16; please recreate "
        "service (the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 127.96.0.0/16)",
        "service default/odd: Port 80 is not within the port range 30000-32767; please recreate service"]
    assert alloc.used_node_ports() == 1 and alloc.used_cluster_ips() == 1


def test_validation_before_allocation_gives_the_same_answer():
    """The store may validate before allocating: allocated values must not be required up front."""
    alloc = ServiceAllocator()
    kubernetes = svc(name="kubernetes", clusterIP=alloc.first_ip(), ports=[{"name": "https", "port": 443}])
    default(kubernetes)
    assert validate(kubernetes) == []
    assert "clusterIPs" not in kubernetes["spec"]  # validate() does not mutate its argument
    old = create(alloc, seed_service())
    reapplied = seed_service()
    default(reapplied)
    del reapplied["spec"]["ports"][0]["nodePort"]
    assert validate_update(reapplied, old) == []
    to_cluster_ip = copy.deepcopy(old)
    to_cluster_ip["spec"]["type"] = "ClusterIP"
    assert validate_update(to_cluster_ip, old) == []
    assert to_cluster_ip["spec"]["ports"][0]["nodePort"] == 30008
    alloc.allocate_for_update(to_cluster_ip, old).commit()
    assert validate_update(to_cluster_ip, old) == []
    assert alloc.used_node_ports() == 0
