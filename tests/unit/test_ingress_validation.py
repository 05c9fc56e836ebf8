"""Ingress and IngressClass validation (upstream's pkg/apis/networking/validation wording), the
DefaultIngressClass admission, and the kubectl columns."""

from __future__ import annotations

import copy

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.tables import table
from pocketkube.registry.networking import validation as v
from pocketkube.registry.networking.strategies import admit_ingress

pytestmark = pytest.mark.unit


def backend(name="web", number=80, port_name=None) -> dict:
    port = {"name": port_name} if port_name else {"number": number}
    return {"service": {"name": name, "port": port}}


def ingress(**spec) -> dict:
    base = {"rules": [{"host": "app.local", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend()}]}}]}
    base.update(spec)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default"}, "spec": base}


def path_of(**item) -> dict:
    return ingress(rules=[{"host": "app.local", "http": {"paths": [{"backend": backend(), **item}]}}])


def messages(obj: dict) -> list[str]:
    return [str(e) for e in v.validate_ingress(obj)]


def test_valid_ingress_passes():
    assert messages(ingress()) == []
    assert messages(ingress(rules=None, defaultBackend=backend(port_name="http"))) == []


def test_rules_or_default_backend_required():
    assert messages(ingress(rules=[])) == ["spec: Invalid value: null: either `defaultBackend` or `rules` "
                                           "must be specified"]


def test_path_type_required_and_supported():
    assert messages(path_of(path="/")) == ["spec.rules[0].http.paths[0].pathType: Required value: "
                                           "pathType must be specified"]
    assert messages(path_of(path="/", pathType="Regex")) == [
        'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: '
        '"Exact", "ImplementationSpecific", "Prefix"']


def test_exact_and_prefix_paths_must_be_absolute_and_clean():
    p = "spec.rules[0].http.paths[0].path"
    assert messages(path_of(path="api", pathType="Exact")) == [f'{p}: Invalid value: "api": must be an absolute path']
    assert messages(path_of(path="/a//b", pathType="Prefix")) == [f"{p}: Invalid value: \"/a//b\": must not contain '//'"]
    assert messages(path_of(path="/a/..", pathType="Prefix")) == [f"{p}: Invalid value: \"/a/..\": cannot end with '/..'"]
    # ImplementationSpecific only needs to be absolute
    assert messages(path_of(path="/a//b", pathType="ImplementationSpecific")) == []
    assert messages(path_of(path="x", pathType="ImplementationSpecific")) == [
        f'{p}: Invalid value: "x": must be an absolute path']


def test_backend_service_xor_resource_and_port_name_xor_number():
    both = {**backend(), "resource": {"kind": "Bucket", "name": "b"}}
    p = "spec.rules[0].http.paths[0].backend"
    assert messages(path_of(path="/", pathType="Prefix", backend=both)) == [
        f'{p}: Invalid value: "": cannot set both resource and service backends']
    assert messages(path_of(path="/", pathType="Prefix", backend={})) == [
        f'{p}: Invalid value: "": resource or service backend is required']
    named_and_numbered = {"service": {"name": "web", "port": {"name": "http", "number": 80}}}
    assert messages(path_of(path="/", pathType="Prefix", backend=named_and_numbered)) == [
        f'{p}: Invalid value: "": cannot set both port name & port number']
    assert messages(path_of(path="/", pathType="Prefix", backend={"service": {"name": "web"}})) == [
        f"{p}: Required value: port name or number is required"]
    assert messages(path_of(path="/", pathType="Prefix", backend=backend(number=70000))) == [
        f"{p}.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"]
    assert messages(path_of(path="/", pathType="Prefix", backend=backend(name="Web_1")))[0].startswith(
        f'{p}.service.name: Invalid value: "Web_1": a DNS-1035 label must consist of')
    assert messages(path_of(path="/", pathType="Prefix", backend={"resource": {"apiGroup": "k8s.example.com",
                                                                               "kind": "Bucket", "name": "b"}})) == []


def test_hosts_wildcards_and_ips():
    def host(h: str) -> list[str]:
        return messages(ingress(rules=[{"host": h, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend()}]}}]))
    assert host("*.example.com") == []
    assert host("*") == ["spec.rules[0].host: Invalid value: \"*\": a wildcard DNS-1123 subdomain must start with "
                         "'*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric "
                         "characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', "
                         "regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]"
                         "([-a-z0-9]*[a-z0-9])?)*')"]
    errs = host("10.0.0.1")
    assert errs[0] == 'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    assert host("App.Local")[0].startswith('spec.rules[0].host: Invalid value: "App.Local": a lowercase RFC 1123')


def test_tls_hosts_and_secret_name():
    assert messages(ingress(tls=[{"hosts": ["app.local", "*.app.local"], "secretName": "tls"}])) == []
    errs = messages(ingress(tls=[{"hosts": ["a..b"], "secretName": "Bad_Name"}]))
    assert errs[0].startswith('spec.tls[0].hosts[0]: Invalid value: "a..b": a lowercase RFC 1123 subdomain')
    assert errs[1].startswith('spec.tls[0].secretName: Invalid value: "Bad_Name": a lowercase RFC 1123')


def test_legacy_class_annotation_must_match_the_class_name():
    obj = ingress(ingressClassName="pocketkube")
    obj["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    assert messages(obj) == ['annotations.kubernetes.io/ingress.class: Invalid value: "nginx": must match '
                             '`ingressClassName` when both are specified']


def test_status_ips_validated():
    obj = ingress()
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}
    assert messages(obj) == ['status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip": must be a valid IP '
                             'address, (e.g. 10.9.8.7 or 2001:db8::ffff)']


def ingress_class(**spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
            "spec": {"controller": "example.com/ingress", **spec}}


def test_ingress_class_controller_required_and_immutable():
    assert v.validate_ingress_class(ingress_class()) == []
    bad = ingress_class()
    del bad["spec"]["controller"]
    assert [str(e) for e in v.validate_ingress_class(bad)] == ["spec.controller: Required value"]
    new = copy.deepcopy(ingress_class())
    new["spec"]["controller"] = "example.com/other"
    assert "spec.controller: Invalid value: \"example.com/other\": field is immutable" in \
        [str(e) for e in v.validate_ingress_class_update(new, ingress_class())]


def test_ingress_class_parameters_scope():
    params = {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p", "scope": "Namespace"}
    assert [str(e) for e in v.validate_ingress_class(ingress_class(parameters=params))] == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    params = {**params, "scope": "Cluster", "namespace": "x"}
    assert [str(e) for e in v.validate_ingress_class(ingress_class(parameters=params))] == [
        "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]


def default_class(name: str, created: str) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "x.io/y"}}


def test_default_ingress_class_admission():
    classes = [default_class("old", "2024-01-01T00:00:00Z"), default_class("new", "2025-01-01T00:00:00Z"),
               {"metadata": {"name": "plain"}, "spec": {"controller": "x.io/z"}}]
    obj = ingress()
    admit_ingress(obj, classes)
    assert obj["spec"]["ingressClassName"] == "new"
    explicit = ingress(ingressClassName="plain")
    admit_ingress(explicit, classes)
    assert explicit["spec"]["ingressClassName"] == "plain"
    legacy = ingress()
    legacy["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    admit_ingress(legacy, classes)
    assert "ingressClassName" not in legacy["spec"]


async def test_registry_defaults_class_and_rejects_bad_input(registry):
    classes = registry.store("networking.k8s.io", "ingressclasses")
    await classes.create(default_class("pocketkube", "2025-01-01T00:00:00Z"))
    store = registry.store("networking.k8s.io", "ingresses")
    created = await store.create(ingress(), "default")
    assert created["spec"]["ingressClassName"] == "pocketkube"
    assert created["metadata"]["generation"] == 1
    with pytest.raises(errors.Invalid) as e:
        await store.create(path_of(path="/"), "default")
    assert e.value.status()["code"] == 422
    assert "pathType must be specified" in e.value.status()["message"]


def test_ingress_table_columns():
    obj = ingress(ingressClassName="pocketkube", tls=[{"hosts": ["app.local"], "secretName": "t"}])
    obj["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "127.182.0.1"}]}}
    t = table("ingresses", "networking.k8s.io", [obj], 1735689600.0 + 60)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    assert t["rows"][0]["cells"] == ["web", "pocketkube", "app.local", "127.182.0.1", "80, 443", "60s"]
    many = ingress(rules=[{"host": f"h{i}.local"} for i in range(5)])
    many["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    cells = table("ingresses", "networking.k8s.io", [many], 1735689600.0)["rows"][0]["cells"]
    assert cells[1:5] == ["<none>", "h0.local,h1.local,h2.local + 2 more...", "", "80"]
    ic = table("ingressclasses", "networking.k8s.io", [ingress_class()], 1735689600.0)
    assert [c["name"] for c in ic["columnDefinitions"]] == ["Name", "Controller", "Parameters", "Age"]
    assert ic["rows"][0]["cells"][:3] == ["nginx", "example.com/ingress", "<none>"]
