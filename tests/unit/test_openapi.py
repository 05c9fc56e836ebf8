"""OpenAPI v3 documents and unknown/duplicate field detection (pocketkube.apiserver.openapi)."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

import orjson
import pytest

from pocketkube.api.resources import RESOURCES
from pocketkube.apiserver.openapi import (
    cannot_handle_message,
    field_errors,
    go_quote,
    openapi_v3_document,
    openapi_v3_document_bytes,
    openapi_v3_root,
    strict_decoding_error,
    strict_error_message,
    unknown_fields,
    warning_texts,
)

SEED_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "myapp-pod", "labels": {"app": "myapp", "type": "front-end"}},
    "spec": {"containers": [{"name": "nginx-container", "image": "nginx"}]},
}
SEED_SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "myapp-service"},
    "spec": {"type": "NodePort",
             "ports": [{"targetPort": 80, "port": 80, "nodePort": 30008}],
             "selector": {"app": "myapp", "type": "front-end"}},
}


def _container(name: str) -> dict[str, Any]:
    return {
        "name": name, "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
        "command": ["nginx"], "args": ["-g", "daemon off;"],
        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1"},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                   "divisor": 1}}}],
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.1}},
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 3},
        "startupProbe": {"exec": {"command": ["true"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}},
    }


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "annotations": {"deployment.kubernetes.io/revision": "1"},
                 "managedFields": [{"manager": "kubectl", "operation": "Update",
                                    "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
    "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [_container("a"), _container("b"), _container("c")],
                     "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                     "nodeSelector": {"disk": "ssd"},
                     "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]},
        },
    },
    "status": {"replicas": 3, "readyReplicas": 3,
               "conditions": [{"type": "Available", "status": "True",
                               "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
}
ENDPOINT_SLICE: dict[str, Any] = {
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
    "metadata": {"name": "myapp-service-abc", "labels": {"kubernetes.io/service-name": "myapp"},
                 "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "myapp",
                                      "uid": "u", "controller": True}]},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True},
                   "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "p"}}],
    "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
}
NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
    "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
    "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
               "allocatable": {"cpu": 4},
               "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
               "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
               "nodeInfo": {"kubeletVersion": "v1.32.4", "architecture": "amd64"}},
}


def _with(obj: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A deep copy of obj with value set at path (keys and list indexes)."""
    out = copy.deepcopy(obj)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


# ----------------------------------------------------------------------------------------------
# unknown_fields


def test_seed_service_with_bogus_field():
    obj = _with(SEED_SERVICE, ["spec", "bogusField"], 1)
    assert unknown_fields(obj, "v1", "Service") == ["spec.bogusField"]


def test_unknown_field_inside_list_item_has_index():
    obj = copy.deepcopy(SEED_SERVICE)
    obj["spec"]["ports"].append({"port": 81, "bogus": True, "nodeport": 30009})
    assert unknown_fields(obj, "v1", "Service") == ["spec.ports[1].bogus", "spec.ports[1].nodeport"]


def test_unknown_fields_at_every_level_in_document_order():
    obj = _with(SEED_SERVICE, ["metadata", "labelz"], {"a": "b"})
    obj["top"] = 1
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "hostnamez": "x"}]}, "bad": 1}
    assert unknown_fields(obj, "v1", "Service") == [
        "metadata.labelz", "top", "status.loadBalancer.ingress[0].hostnamez", "status.bad"]


@pytest.mark.parametrize("obj", [SEED_POD, SEED_SERVICE, DEPLOYMENT, ENDPOINT_SLICE, NODE],
                         ids=lambda o: o["kind"])
def test_clean_manifests_have_no_unknown_fields(obj):
    assert unknown_fields(obj, obj["apiVersion"], obj["kind"]) == []


def test_every_served_kind_is_known_to_the_schema():
    for r in RESOURCES:
        bogus = {"apiVersion": r.api_version, "kind": r.kind, "bogus": 1}
        assert unknown_fields(bogus, r.api_version, r.kind) == ["bogus"], r.kind


def test_int_or_string_and_quantities_accept_both_forms():
    for target_port in (80, "http"):
        obj = _with(SEED_SERVICE, ["spec", "ports", 0, "targetPort"], target_port)
        assert unknown_fields(obj, "v1", "Service") == []
    # An object where a scalar is expected is a type error, not an unknown field.
    obj = _with(SEED_SERVICE, ["spec", "ports", 0, "targetPort"], {"x": 1})
    assert unknown_fields(obj, "v1", "Service") == []


def test_maps_never_flag_their_keys_but_check_their_values():
    obj = _with(SEED_SERVICE, ["metadata", "labels"], {"anything.io/at-all": "x", "spec": "y"})
    obj["spec"]["selector"] = {"bogusField": "z"}
    obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert unknown_fields(obj, "v1", "Service") == []
    node = _with(NODE, ["status", "capacity", "example.com/gpu"], "2")
    assert unknown_fields(node, "v1", "Node") == []


def test_opaque_fields_are_not_walked():
    fields_v1 = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    obj = _with(SEED_POD, ["metadata", "managedFields"], [{"manager": "m", "fieldsV1": fields_v1}])
    assert unknown_fields(obj, "v1", "Pod") == []


@pytest.mark.parametrize(("odd", "expected"), [
    ({"spec": "a string"}, []),
    ({"spec": {"ports": {"port": 80}}}, []),
    ({"spec": {"ports": [1, None, "x", [], {"bogus": 1}]}}, ["spec.ports[4].bogus"]),
    ({"metadata": []}, []),
    ({"metadata": None, "spec": None}, []),
    ({"spec": {"selector": ["a"], "ports": [{"port": 80, "targetPort": [1]}]}}, []),
], ids=["spec-str", "ports-map", "mixed-items", "meta-list", "nulls", "list-for-map"])
def test_wrong_types_never_raise(odd, expected):
    obj = {"apiVersion": "v1", "kind": "Service", **odd}
    assert unknown_fields(obj, "v1", "Service") == expected


def test_unknown_kinds_and_non_objects_give_nothing():
    assert unknown_fields({"bogus": 1}, "v1", "NoSuchKind") == []
    assert unknown_fields({"bogus": 1}, "nosuch.group/v9", "Service") == []
    assert unknown_fields([1, 2], "v1", "Service") == []  # type: ignore[arg-type]
    assert unknown_fields("x", "v1", "Pod") == []  # type: ignore[arg-type]
    assert unknown_fields({"bogus": 1}, None, "Pod") == []  # type: ignore[arg-type]


def test_unknown_fields_is_fast():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": DEPLOYMENT["spec"]["template"]["metadata"],
           "spec": DEPLOYMENT["spec"]["template"]["spec"]}
    unknown_fields(pod, "v1", "Pod")  # compile the schema once
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        assert unknown_fields(pod, "v1", "Pod") == []
    assert (time.perf_counter() - start) / rounds < 0.005


# ----------------------------------------------------------------------------------------------
# field_errors: raw bodies, duplicates


def test_field_errors_reports_duplicates_and_unknowns_in_decoder_order():
    body = (b'{"apiVersion":"v1","kind":"Service",'
            b'"metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},'
            b'"spec":{"bogusField":1,"bogusField":2,"ports":[{"port":80,"port":81,"nodeport":1}]}}')
    assert field_errors(body, "v1", "Service") == [
        'duplicate field "metadata.name"',
        'duplicate field "metadata.labels.x"',
        'unknown field "spec.bogusField"',
        'duplicate field "spec.ports[0].port"',
        'unknown field "spec.ports[0].nodeport"',
    ]


def test_field_errors_on_clean_and_odd_bodies():
    assert field_errors(json.dumps(DEPLOYMENT).encode(), "apps/v1", "Deployment") == []
    assert field_errors(b"apiVersion: v1\nkind: Service\n", "v1", "Service") == []
    assert field_errors(b"[1,2", "v1", "Service") == []
    assert field_errors(b'{"bogus":1}', "v1", "NoSuchKind") == []
    assert field_errors('{"bogus":1}', "v1", "Pod") == ['unknown field "bogus"']


def test_errors_are_capped_like_the_decoder():
    labels = {f"bogus{i}": i for i in range(150)}
    errors = field_errors(json.dumps({"spec": labels}), "v1", "Pod")
    assert len(errors) == 100 and errors[0] == 'unknown field "spec.bogus0"'
    assert len(unknown_fields({"spec": labels}, "v1", "Pod")) == 100


# ----------------------------------------------------------------------------------------------
# Messages


def test_strict_error_message_matches_kubernetes():
    assert strict_error_message("Service", "v1", ["spec.bogusField"]) == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.bogusField"')
    assert strict_error_message("Deployment", "apps/v1", ["a", "spec.ports[0].b"]) == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "a", unknown field "spec.ports[0].b"')


def test_warning_and_patch_texts():
    assert warning_texts(["spec.bogusField", "metadata.labelz"]) == [
        'unknown field "spec.bogusField"', 'unknown field "metadata.labelz"']
    assert strict_decoding_error(['unknown field "metadata.app"']) == (
        'strict decoding error: unknown field "metadata.app"')
    assert cannot_handle_message("Lease", "coordination.k8s.io/v1", "boom") == (
        'Lease in version "v1" cannot be handled as a Lease: boom')


def test_go_quote_escapes_like_go():
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there\nnl") == '"tab\\there\\nnl"'
    assert go_quote("\x01\x7f") == '"\\x01\\x7f"'
    assert go_quote("héllo ☃") == '"héllo ☃"'
    assert go_quote("\u200b") == '"\\u200b"'


# ----------------------------------------------------------------------------------------------
# OpenAPI documents


def _group_version_paths() -> list[str]:
    return list(dict.fromkeys(r.prefix.lstrip("/") for r in RESOURCES))


def test_root_lists_every_group_version_with_a_content_hash():
    root = openapi_v3_root()
    assert list(root["paths"]) == _group_version_paths()
    assert {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1",
            "apis/coordination.k8s.io/v1"} <= set(root["paths"])
    for path, entry in root["paths"].items():
        url = entry["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{path}?hash=")
        digest = hashlib.sha512(openapi_v3_document_bytes(path)).hexdigest().upper()
        assert url.endswith("hash=" + digest)


def _kubectl_supports_field_validation(document: dict[str, Any], group: str, version: str,
                                       kind: str) -> bool:
    """kubectl's own check: any path whose patch op names the kind and has fieldValidation."""
    want = {"group": group, "version": version, "kind": kind}
    for item in document["paths"].values():
        patch = item.get("patch")
        if patch and patch.get("x-kubernetes-group-version-kind") == want and any(
                p.get("name") == "fieldValidation" for p in patch.get("parameters", [])):
            return True
    return False


def test_v1_document_has_patch_ops_for_service_and_pod():
    doc = openapi_v3_document("api/v1")
    assert doc["openapi"].startswith("3.0") and doc["info"]["title"] == "Kubernetes"
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1",
                                                        "kind": "Service"}
    names = [p["name"] for p in patch["parameters"]]
    assert {"fieldValidation", "dryRun", "fieldManager"} <= set(names)
    assert _kubectl_supports_field_validation(doc, "", "v1", "Pod")


def test_every_served_kind_advertises_field_validation():
    for r in RESOURCES:
        doc = openapi_v3_document(r.prefix.lstrip("/"))
        assert _kubectl_supports_field_validation(doc, r.group, r.version, r.kind), r.kind


def test_paths_follow_scope_and_verbs():
    core = openapi_v3_document("/api/v1/")["paths"]
    assert set(core["/api/v1/nodes/{name}"]) >= {"get", "put", "patch", "delete", "parameters"}
    assert "/api/v1/namespaces/{namespace}/nodes/{name}" not in core
    assert set(core["/api/v1/namespaces/{namespace}/services"]) >= {"get", "post", "delete"}
    assert "delete" not in core["/api/v1/namespaces"]  # namespaces have no deletecollection
    assert "get" in core["/api/v1/pods"]
    assert "patch" in core["/api/v1/namespaces/{namespace}/services/{name}/status"]
    scale = openapi_v3_document("apis/apps/v1")["paths"][
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1",
                                                        "kind": "Scale"}
    assert scale["operationId"] == "patchAppsV1NamespacedDeploymentScale"


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def test_component_schemas_are_openapi_3_and_self_contained():
    for path in _group_version_paths():
        doc = openapi_v3_document(path)
        schemas = doc["components"]["schemas"]
        for ref in _refs(doc):
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
        raw = openapi_v3_document_bytes(path)
        assert b'"null"' not in raw and b"$defs" not in raw
        assert orjson.loads(raw) == doc
    service = openapi_v3_document("api/v1")["components"]["schemas"]["io.k8s.api.core.v1.Service"]
    assert service["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Service", "version": "v1"}]
    assert service["type"] == "object" and "enum" not in service["properties"]["kind"]


def test_explain_can_walk_service_spec_ports():
    schemas = openapi_v3_document("api/v1")["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref") or (node.get("allOf") or [{}])[0].get("$ref")
        return schemas[ref.removeprefix("#/components/schemas/")] if ref else node

    spec = resolve(schemas["io.k8s.api.core.v1.Service"]["properties"]["spec"])
    ports = spec["properties"]["ports"]
    assert ports["type"] == "array" and ports["x-kubernetes-list-type"] == "map"
    port = resolve(ports["items"])
    assert {"port", "targetPort", "nodePort", "protocol"} <= set(port["properties"])
    assert port["required"] == ["port"]


def test_unknown_group_versions_have_no_document():
    assert openapi_v3_document("apis/autoscaling/v2") is None
    assert openapi_v3_document_bytes("apis/nosuch/v1") is None
    assert openapi_v3_document_bytes("api/v1") is openapi_v3_document_bytes("api/v1")


def test_subresources_are_described():
    core = openapi_v3_document("api/v1")["paths"]
    binding = core["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"]["kind"] == "Binding"
    assert binding["operationId"] == "createCoreV1NamespacedPodBinding"
    assert "put" in core["/api/v1/namespaces/{name}/finalize"]
    log = core["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert {p["name"] for p in log["parameters"]} >= {"container", "follow", "tailLines"}
    assert "io.k8s.api.core.v1.Binding" in openapi_v3_document("api/v1")["components"]["schemas"]
