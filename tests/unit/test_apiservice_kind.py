"""APIService (apiregistration.k8s.io/v1): kube-aggregator's defaulting and validation, the
`kubectl get apiservices` table, the availability decision, autoregistration's plan, and what the
bootstrap RBAC roles grant on apiservices."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pocketkube.apiserver.apiservices import (
    AUTOMANAGED_LABEL,
    autoregister_plan,
    available_condition,
    desired_apiservices,
    local_apiservice,
    served_group_versions,
    updated_status,
)
from pocketkube.apiserver.rbac.policy import cluster_roles
from pocketkube.apiserver.tables import table
from pocketkube.registry.apiregistration.apiservices import default, validate, validate_update
from pocketkube.registry.rbac.rules import PolicyRule, allowed_by


def apiservice(name="v1alpha1.wardle.k8s.io", group="wardle.k8s.io", version="v1alpha1", **spec) -> dict:
    body = {"group": group, "version": version, "groupPriorityMinimum": 1000, "versionPriority": 15,
            "service": {"namespace": "wardle", "name": "api"}}
    body.update(spec)
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
            "spec": {k: v for k, v in body.items() if v is not None}}


def messages(obj: dict) -> list[str]:
    return [str(e) for e in validate(obj)]


# ---- defaulting and validation ----

def test_service_port_defaults_to_443_and_a_valid_one_passes():
    obj = apiservice(insecureSkipTLSVerify=True)
    default(obj)
    assert obj["spec"]["service"] == {"namespace": "wardle", "name": "api", "port": 443}
    assert messages(obj) == []
    local = apiservice(name="v1.", group="", version="v1", service=None)
    default(local)
    assert "service" not in local["spec"] and messages(local) == []


def test_name_must_be_version_dot_group():
    assert messages(apiservice(name="v1.wardle.k8s.io")) == [
        'metadata.name: Invalid value: "v1.wardle.k8s.io": must be `spec.version+"."+spec.group`: '
        '"v1alpha1.wardle.k8s.io"']
    assert messages(apiservice(name="a/b")) == ['metadata.name: Invalid value: "a/b": may not contain \'/\'']


@pytest.mark.parametrize(("spec", "error"), [
    ({"groupPriorityMinimum": 0}, "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000"),
    ({"groupPriorityMinimum": 20001},
     "spec.groupPriorityMinimum: Invalid value: 20001: must be positive and less than 20000"),
    ({"versionPriority": 1001}, "spec.versionPriority: Invalid value: 1001: must be positive and less than 1000"),
    ({"versionPriority": None}, "spec.versionPriority: Invalid value: 0: must be positive and less than 1000"),
    ({"versionPriority": "high"}, 'spec.versionPriority: Invalid value: "high": must be of type integer, not string'),
    ({"service": {"namespace": "wardle", "name": "api", "port": 0}},
     "spec.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive"),
    ({"service": {"name": "api"}}, "spec.service.namespace: Required value"),
    ({"service": {"namespace": "wardle"}}, "spec.service.name: Required value"),
    ({"insecureSkipTLSVerify": True, "caBundle": "Y2E="},
     "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present"),
    ({"service": None, "insecureSkipTLSVerify": True},
     "spec.insecureSkipTLSVerify: Invalid value: true: local APIServices may not have insecureSkipTLSVerify"),
    ({"service": None, "caBundle": "Y2E="},
     'spec.caBundle: Invalid value: "2 bytes": local APIServices may not have a caBundle'),
    ({"caBundle": "not base64!"}, 'spec.caBundle: Invalid value: "not base64!": illegal base64 data'),
    ({"service": "api"}, 'spec.service: Invalid value: "api": must be of type object, not string'),
])
def test_spec_errors(spec, error):
    assert messages(apiservice(**spec)) == [error]


def test_group_and_version_errors():
    assert messages(apiservice(name="v2.", group="", version="v2")) == [
        "spec.group: Required value: only v1 may have an empty group and it better be legacy kube"]
    errs = messages(apiservice(name="1x.Wardle", group="Wardle", version="1x"))
    assert any(e.startswith('spec.group: Invalid value: "Wardle": a lowercase RFC 1123 subdomain') for e in errs)
    assert any(e.startswith('spec.version: Invalid value: "1x": a DNS-1035 label') for e in errs)
    assert messages({"metadata": {"name": "x"}, "spec": []})[-1] == \
        "spec: Invalid value: []: must be of type object, not array"


def test_status_conditions_and_updates():
    obj = apiservice()
    obj["status"] = {"conditions": [{"type": "Available", "status": "Maybe"}]}
    assert messages(obj) == ['status.conditions[0].status: Unsupported value: "Maybe": supported values: '
                             '"False", "True", "Unknown"']
    old = apiservice()
    old["metadata"].update(uid="u1", resourceVersion="5", creationTimestamp="2026-01-01T00:00:00Z")
    new = apiservice(versionPriority=20)
    new["metadata"].update(uid="u1", resourceVersion="5", creationTimestamp="2026-01-01T00:00:00Z")
    assert validate_update(new, old) == []


# ---- the table ----

def test_table_columns_and_cells():
    local = local_apiservice("apps", "v1")
    local["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    local["status"] = updated_status(local, available_condition(local, None, None), "2026-01-01T00:00:00Z")
    remote = apiservice()
    remote["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    remote["status"] = updated_status(remote, available_condition(remote, None, None), "2026-01-01T00:00:00Z")
    fresh = apiservice(name="v1.x.io", group="x.io", version="v1")
    fresh["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    t = table("apiservices", "apiregistration.k8s.io", [local, remote, fresh], now=1767225660.0)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Service", "Available", "Age"]
    assert [r["cells"] for r in t["rows"]] == [
        ["v1.apps", "Local", "True", "60s"],
        ["v1alpha1.wardle.k8s.io", "wardle/api", "False (ServiceNotFound)", "60s"],
        ["v1.x.io", "wardle/api", "Unknown", "60s"]]


# ---- availability ----

SERVICE = {"metadata": {"name": "api", "namespace": "wardle"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "ports": [{"name": "https", "port": 443}]}}


def endpoints(*, addresses=True, port_name="https") -> dict:
    subset = {"ports": [{"name": port_name, "port": 8443}]}
    if addresses:
        subset["addresses"] = [{"ip": "10.0.0.5"}]
    return {"metadata": {"name": "api", "namespace": "wardle"}, "subsets": [subset]}


def test_availability_in_upstream_order():
    remote = apiservice(service={"namespace": "wardle", "name": "api", "port": 443})
    assert available_condition(local_apiservice("", "v1"), None, None) == (
        "True", "Local", "Local APIServices are always available")
    assert available_condition(remote, None, None) == (
        "False", "ServiceNotFound", 'service/api in "wardle" is not present')
    wrong_port = apiservice(service={"namespace": "wardle", "name": "api", "port": 8443})
    assert available_condition(wrong_port, SERVICE, endpoints()) == (
        "False", "ServicePortError", 'service/api in "wardle" is not listening on port 8443')
    assert available_condition(remote, SERVICE, None) == (
        "False", "EndpointsNotFound", 'cannot find endpoints for service/api in "wardle"')
    for eps in (endpoints(addresses=False), endpoints(port_name="other")):
        assert available_condition(remote, SERVICE, eps) == (
            "False", "MissingEndpoints", 'endpoints for service/api in "wardle" have no addresses with port name "https"')
    status, reason, message = available_condition(remote, SERVICE, endpoints())
    assert (status, reason) == ("False", "FailedDiscoveryCheck")
    assert message.startswith("failing or missing response from https://10.96.0.9:443/apis/wardle.k8s.io/v1alpha1: ")
    external = {"metadata": SERVICE["metadata"], "spec": {"type": "ExternalName", "externalName": "api.example.com"}}
    assert available_condition(remote, external, None)[1] == "FailedDiscoveryCheck"


def test_updated_status_keeps_the_transition_time_while_the_status_holds():
    obj = apiservice()
    first = updated_status(obj, ("False", "ServiceNotFound", "m1"), "2026-01-01T00:00:00Z")
    obj["status"] = first
    assert updated_status(obj, ("False", "ServiceNotFound", "m1"), "2026-01-01T00:01:00Z") is None
    second = updated_status(obj, ("False", "MissingEndpoints", "m2"), "2026-01-01T00:02:00Z")
    assert second["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second["conditions"][0]["reason"] == "MissingEndpoints"
    obj["status"] = second
    third = updated_status(obj, ("True", "Local", "m3"), "2026-01-01T00:03:00Z")
    assert third["conditions"] == [{"type": "Available", "status": "True", "lastTransitionTime": "2026-01-01T00:03:00Z",
                                    "reason": "Local", "message": "m3"}]


# ---- autoregistration ----

def test_every_served_group_version_gets_a_local_apiservice_with_upstreams_priorities():
    desired = desired_apiservices(served_group_versions())
    assert {"v1.", "v1.apps", "v1.batch", "v1.policy", "v1.rbac.authorization.k8s.io", "v1.storage.k8s.io",
            "v1.discovery.k8s.io", "v1.coordination.k8s.io", "v1beta1.metrics.k8s.io"} <= set(desired)
    assert "v1.apiregistration.k8s.io" not in desired
    assert len(desired) == len(served_group_versions())
    assert ("apiregistration.k8s.io", "v1") not in served_group_versions()
    assert desired["v1."]["spec"] == {"group": "", "version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}
    assert desired["v1.batch"]["spec"]["groupPriorityMinimum"] == 17400
    assert desired["v1.apps"]["metadata"]["labels"] == {AUTOMANAGED_LABEL: "onstart"}
    for obj in desired.values():
        assert validate(obj) == [], obj["metadata"]["name"]
    assert local_apiservice("unknown.example.com", "v1") is None


def test_autoregister_plan():
    desired = desired_apiservices([("", "v1"), ("apps", "v1")])
    changed = local_apiservice("apps", "v1")
    changed["spec"]["versionPriority"] = 1
    stale = local_apiservice("batch", "v1")
    users = apiservice()
    creates, updates, deletes = autoregister_plan(desired, {"v1.apps": changed, "v1.batch": stale,
                                                            users["metadata"]["name"]: users})
    assert [o["metadata"]["name"] for o in creates] == ["v1."]
    assert [o["metadata"]["name"] for o in updates] == ["v1.apps"]
    assert deletes == ["v1.batch"]  # automanaged and no longer served; the user's stays
    assert autoregister_plan(desired, {n: o for n, o in desired.items()}) == ([], [], [])


# ---- RBAC: what upstream's bootstrap roles grant on apiservices ----

@dataclass
class Req:
    verb: str
    api_group: str = "apiregistration.k8s.io"
    resource: str = "apiservices"
    subresource: str = ""
    name: str = ""
    path: str = ""
    is_resource_request: bool = True


def rules_of(name: str) -> list[PolicyRule]:
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    return [PolicyRule.parse(rule) for rule in roles[name]["rules"]]


def test_bootstrap_roles_on_apiservices():
    for role in ("system:aggregate-to-view", "system:aggregate-to-edit", "system:aggregate-to-admin"):
        assert not any(allowed_by(rules_of(role), Req(verb)) for verb in ("get", "list", "create", "delete")), role
    assert all(allowed_by(rules_of("cluster-admin"), Req(v)) for v in ("create", "update", "delete"))
    manager = rules_of("system:kube-controller-manager")
    assert allowed_by(manager, Req("list")) and allowed_by(manager, Req("watch"))
    assert not allowed_by(manager, Req("create"))
    gc = rules_of("system:controller:generic-garbage-collector")
    assert allowed_by(gc, Req("delete"))
