"""Namespace, Node, Endpoints, EndpointSlice, Event and Lease defaulting and validation."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.registry.core import others


def messages(errs) -> list[str]:
    return [str(e) for e in errs]


def meta(name: str = "x", namespace: str | None = "default") -> dict:
    m = {"name": name}
    if namespace:
        m["namespace"] = namespace
    return m


def test_namespace_defaults_and_name():
    ns = {"metadata": meta("dev", None)}
    others.namespace_default(ns)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert others.namespace_validate(ns) == []
    bad = {"metadata": meta("a.b", None)}
    assert messages(others.namespace_validate(bad)) == ['metadata.name: Invalid value: "a.b": must not contain dots']


def test_namespace_finalizers_survive_finalize():
    ns = {"metadata": meta("dev", None), "spec": {"finalizers": []}}
    others.namespace_default(ns)
    assert ns["spec"]["finalizers"] == []
    ns["spec"]["finalizers"] = ["custom"]
    assert messages(others.namespace_validate(ns)) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified']


def test_node():
    node = {"metadata": meta("node-1.local", None), "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]},
            "status": {"capacity": {"cpu": "4"}}}
    others.node_default(node)
    assert node["status"]["allocatable"] == {"cpu": "4"}
    assert messages(others.node_validate(node)) == [
        ('spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
         '"PreferNoSchedule", "NoExecute"')]
    assert messages(others.node_validate({"metadata": {"name": "n", "namespace": "default"}})) == [
        "metadata.namespace: Forbidden: not allowed on this type"]


def test_endpoints():
    ep = {"metadata": meta(), "subsets": [
        {"addresses": [{"ip": "127.244.1.5"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "nope"}, {"ip": "0.0.0.0"}], "ports": [{"port": 0, "name": "a"}, {"port": 1}]},
        {}]}
    others.endpoints_default(ep)
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    assert messages(others.endpoints_validate(ep)) == [
        ('subsets[1].addresses[0].ip: Invalid value: "nope": must be a valid IP address, '
         "(e.g. 10.9.8.7 or 2001:db8::ffff)"),
        'subsets[1].addresses[1].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
        "subsets[1].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "subsets[1].ports[1].name: Required value",
        "subsets[2]: Required value: must specify `addresses` or `notReadyAddresses`",
    ]


def slice_(**fields) -> dict:
    s = {"metadata": meta("web-abc12"), "addressType": "IPv4",
         "endpoints": [{"addresses": ["127.244.1.5"], "conditions": {"ready": True}, "nodeName": "node-1"}],
         "ports": [{"port": 80}]}
    s.update(fields)
    return s


def test_endpointslice_defaults_port_name_and_protocol():
    s = slice_()
    others.endpointslice_default(s)
    assert s["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert others.endpointslice_validate(s) == []


def test_endpointslice_validation():
    s = slice_(addressType="IPv5", endpoints=[{"addresses": []}] + [{"addresses": ["10.0.0.1"]}] * 1000)
    others.endpointslice_default(s)
    assert messages(others.endpointslice_validate(s)) == [
        'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"',
        "endpoints: Too many: 1001: must have at most 1000 items",
        "endpoints[0].addresses: Required value: must contain at least 1 address",
    ]
    s = slice_(endpoints=[{"addresses": ["fe80::1"]}])
    del s["addressType"]
    others.endpointslice_default(s)
    assert messages(others.endpointslice_validate(s)) == ["addressType: Required value"]
    s = slice_(endpoints=[{"addresses": ["fe80::1"]}])
    assert messages(others.endpointslice_validate(s))[0] == \
        'endpoints[0].addresses[0]: Invalid value: "fe80::1": must be a valid IPv4 address'


def test_endpointslice_address_type_immutable():
    old = slice_()
    others.endpointslice_default(old)
    new = copy.deepcopy(old)
    new["addressType"] = "FQDN"
    new["endpoints"] = [{"addresses": ["web.example.com"]}]
    assert messages(others.endpointslice_validate_update(new, old)) == [
        'addressType: Invalid value: "FQDN": field is immutable']


def test_event():
    event = {"metadata": meta("p.17a"), "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
             "reason": "Scheduled", "type": "Normal", "count": 1}
    assert others.event_validate(event) == []
    assert messages(others.event_validate({"metadata": meta("e")})) == ["involvedObject: Required value"]
    event["involvedObject"]["namespace"] = "other"
    assert messages(others.event_validate(event)) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace']


def test_lease():
    lease = {"metadata": meta("node-1", "kube-node-lease"), "spec": {"holderIdentity": "node-1",
                                                                     "leaseDurationSeconds": 40}}
    assert others.lease_validate(lease) == []
    lease["spec"]["leaseDurationSeconds"] = 0
    assert messages(others.lease_validate(lease)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10)
top_keys = st.sampled_from(["metadata", "spec", "status", "subsets", "addressType", "endpoints", "ports",
                            "involvedObject", "count"])
KINDS = ["namespace", "node", "endpoints", "endpointslice", "event", "lease"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(top_keys, json_values, max_size=5), json_values)
def test_random_json_never_raises(obj, nested):
    for kind in KINDS:
        for candidate in (copy.deepcopy(obj), {"metadata": meta(), "subsets": [nested], "endpoints": [nested],
                                               "ports": [nested], "spec": {"taints": [nested]}}):
            getattr(others, f"{kind}_default")(candidate)
            getattr(others, f"{kind}_validate")(candidate)
            getattr(others, f"{kind}_validate_update")(candidate, {"metadata": meta()})
