"""Decoding kubectl's protobuf request bodies into the JSON objects the API expects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protobuf_writer import body, entry, key, num, sub, varint

from pocketkube.api.errors import BadRequest
from pocketkube.apiserver.protobuf import MAGIC, decode_body, iter_fields

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
CAPTURED = sorted(p.stem for p in FIXTURES.glob("*.pb"))


def int_or_string(number: int, value: int | str) -> bytes:
    if isinstance(value, str):
        return sub(number, num(1, 1) + num(2, 0) + sub(3, value))
    return sub(number, num(1, 0) + num(2, value) + sub(3, ""))


def quantity(text: str) -> bytes:
    return sub(1, text)


# --- real kubectl bodies ---------------------------------------------------------------------

def without_null_timestamps(obj: Any) -> Any:
    """kubectl's JSON carries `creationTimestamp: null`; the API treats it as absent."""
    if isinstance(obj, dict):
        return {k: without_null_timestamps(v) for k, v in obj.items()
                if not (k == "creationTimestamp" and v is None)}
    if isinstance(obj, list):
        return [without_null_timestamps(v) for v in obj]
    return obj


def test_fixtures_cover_every_generator_command() -> None:
    assert {"namespace", "deployment", "service_nodeport", "service_clusterip",
            "service_loadbalancer"} <= set(CAPTURED)


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_body_decodes_to_the_json_kubectl_would_send(name: str) -> None:
    expected = without_null_timestamps(json.loads((FIXTURES / f"{name}.json").read_text()))
    got = decode_body((FIXTURES / f"{name}.pb").read_bytes())
    assert got == expected
    # Same key order as Go's encoding/json, all the way down.
    assert json.dumps(got) == json.dumps(expected)


def test_nodeport_service_fields() -> None:
    svc = decode_body((FIXTURES / "service_nodeport.pb").read_bytes())
    assert svc["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80,
                                     "targetPort": 8080, "nodePort": 30009}]
    assert svc["spec"]["type"] == "NodePort"
    assert svc["metadata"] == {"name": "myapp", "labels": {"app": "myapp"}}


# --- hand-built bodies for what the generators never send ------------------------------------

def test_object_meta_fields() -> None:
    meta = (sub(1, "web") + sub(2, "web-") + sub(3, "team-a") + sub(5, "uid-1")
            + sub(6, "42") + num(7, 0) + sub(8, num(1, 1714979289) + num(2, 999))
            + num(10, 0) + entry(11, "app", "web") + entry(11, "tier", "")
            + entry(12, "note", "x")
            + sub(13, sub(1, "ReplicaSet") + sub(3, "web-1") + sub(4, "u2") + sub(5, "apps/v1")
                  + num(6, True))
            + sub(14, "example.com/a") + sub(14, "example.com/b"))
    got = decode_body(body("v1", "Namespace", sub(1, meta)))
    assert got == {"kind": "Namespace", "apiVersion": "v1", "metadata": {
        "name": "web", "generateName": "web-", "namespace": "team-a", "uid": "uid-1",
        "resourceVersion": "42", "creationTimestamp": "2024-05-06T07:08:09Z",
        "deletionGracePeriodSeconds": 0,  # a pointer in Go: zero is still sent
        "labels": {"app": "web", "tier": ""}, "annotations": {"note": "x"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                             "uid": "u2", "controller": True}],
        "finalizers": ["example.com/a", "example.com/b"]}}


@pytest.mark.parametrize("encoded, expected", [
    (b"", None),                                      # how Go encodes its zero time
    (num(1, -62135596800), None),                     # the zero time spelled out
    (num(1, 0), "1970-01-01T00:00:00Z"),
    (num(1, -61000000000) + num(2, 5), "0036-12-26T11:33:20Z"),
])
def test_time_is_rfc3339_or_omitted_when_zero(encoded: bytes, expected: str | None) -> None:
    got = decode_body(body("v1", "Namespace", sub(1, sub(9, encoded))))
    assert got["metadata"].get("deletionTimestamp") == expected


def test_namespace_spec_finalizers() -> None:
    got = decode_body(body("v1", "Namespace", sub(1, sub(1, "ns")) + sub(2, sub(1, "kubernetes"))))
    assert got["spec"] == {"finalizers": ["kubernetes"]}


def test_service_spec_pointers_and_int_or_string() -> None:
    port = sub(1, "http") + sub(2, "TCP") + num(3, 0) + int_or_string(4, "web") + num(5, 0)
    spec = (sub(1, port) + entry(2, "app", "x") + sub(3, "10.0.0.9") + sub(18, "10.0.0.9")
            + sub(4, "LoadBalancer") + sub(5, "1.2.3.4") + sub(7, "ClientIP")
            + sub(11, "Local") + num(12, 31000) + num(13, False)
            + sub(14, sub(1, num(1, 600))) + sub(19, "IPv4") + sub(17, "SingleStack")
            + num(20, False) + sub(22, "Cluster"))
    got = decode_body(body("v1", "Service", sub(1, sub(1, "s")) + sub(2, spec)))
    assert got["spec"] == {
        "ports": [{"name": "http", "protocol": "TCP", "port": 0, "targetPort": "web"}],
        "selector": {"app": "x"}, "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"],
        "type": "LoadBalancer", "externalIPs": ["1.2.3.4"], "sessionAffinity": "ClientIP",
        "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "allocateLoadBalancerNodePorts": False, "internalTrafficPolicy": "Cluster"}


def test_deployment_strategy_and_zero_replicas() -> None:
    strategy = sub(1, "RollingUpdate") + sub(2, int_or_string(1, 0) + int_or_string(2, "25%"))
    spec = (num(1, 0) + sub(2, entry(1, "app", "w") + sub(2, sub(1, "env") + sub(2, "In")
                                                          + sub(3, "a") + sub(3, "b")))
            + sub(4, strategy) + num(5, 0) + num(6, 10) + num(7, True) + num(9, 600))
    got = decode_body(body("apps/v1", "Deployment", sub(2, spec)))
    assert got == {"kind": "Deployment", "apiVersion": "apps/v1", "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "w"},
                     "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "revisionHistoryLimit": 10, "paused": True, "progressDeadlineSeconds": 600}}


def test_pod_spec_subset() -> None:
    env = (sub(7, sub(1, "A") + sub(2, "1"))
           + sub(7, sub(1, "NODE") + sub(3, sub(1, sub(1, "v1") + sub(2, "spec.nodeName"))))
           + sub(7, sub(1, "K") + sub(3, sub(3, sub(1, sub(1, "cm")) + sub(2, "key")))))
    resources = sub(8, entry(1, "cpu", quantity("500m")) + entry(2, "memory", quantity("64Mi")))
    probe = sub(11, sub(1, sub(2, sub(1, "/healthz") + int_or_string(2, "http")))
                + num(2, 5) + num(4, 10))
    liveness = sub(10, sub(1, sub(3, int_or_string(1, 8080))) + num(6, 3))
    container = (sub(1, "app") + sub(2, "nginx:1.27") + sub(3, "sh") + sub(4, "-c")
                 + sub(4, "sleep 1") + sub(5, "/srv")
                 + sub(6, sub(1, "http") + num(3, 80) + sub(4, "TCP")) + env + resources
                 + sub(9, sub(1, "data") + sub(3, "/data") + num(2, True))
                 + liveness + probe + sub(13, "/dev/termination-log")
                 + sub(20, "File") + sub(14, "IfNotPresent") + sub(15, b""))
    spec = (sub(1, sub(1, "data") + sub(2, sub(2, b"")))
            + sub(2, container) + sub(3, "Always") + num(4, 30) + sub(6, "ClusterFirst")
            + entry(7, "disk", "ssd") + sub(8, "default") + sub(10, "node-1")
            + num(11, False) + sub(14, b"") + sub(19, "default-scheduler")
            + sub(22, sub(1, "k") + sub(2, "Exists") + sub(4, "NoExecute") + num(5, 0)))
    got = decode_body(body("v1", "Pod", sub(1, sub(1, "p")) + sub(2, spec)))
    assert got["spec"] == {
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{
            "name": "app", "image": "nginx:1.27", "command": ["sh"], "args": ["-c", "sleep 1"],
            "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "NODE",
                     "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                    {"name": "K",
                     "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "key"}}}],
            "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
            "volumeMounts": [{"name": "data", "readOnly": True, "mountPath": "/data"}],
            "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                               "initialDelaySeconds": 5, "periodSeconds": 10},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            "securityContext": {}}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "nodeSelector": {"disk": "ssd"},
        "serviceAccountName": "default", "nodeName": "node-1", "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 0}]}


def test_replica_set() -> None:
    got = decode_body(body("apps/v1", "ReplicaSet", sub(2, num(1, 2) + num(4, 0))))
    assert got == {"kind": "ReplicaSet", "apiVersion": "apps/v1", "spec": {"replicas": 2}}


def test_negative_ints_packed_repeated_and_unknown_fields() -> None:
    security = sub(4, varint(1) + varint(2)) + num(4, 3) + num(2, -1)
    unknown = (num(99, 7) + key(98, 1) + bytes(8) + key(97, 5) + bytes(4) + sub(96, b"\xff\x00"))
    spec = sub(14, security + unknown) + num(5, -5) + unknown
    got = decode_body(body("v1", "Pod", sub(2, spec) + unknown))
    assert got["spec"] == {"activeDeadlineSeconds": -5,
                           "securityContext": {"runAsUser": -1, "supplementalGroups": [1, 2, 3]}}


def test_invalid_utf8_is_replaced_like_go_json() -> None:
    got = decode_body(body("v1", "Namespace", sub(1, sub(1, b"a\xffb"))))
    assert got["metadata"]["name"] == "a\ufffdb"


def test_iter_fields_reads_every_wire_type() -> None:
    data = num(1, 300) + key(2, 1) + b"12345678" + sub(3, "hi") + key(4, 5) + b"abcd"
    assert list(iter_fields(data)) == [(1, 0, 300), (2, 1, b"12345678"), (3, 2, b"hi"),
                                       (4, 5, b"abcd")]


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    (b"", "magic prefix"),
    (b'{"kind":"Namespace"}', "magic prefix"),
    (MAGIC + b"\x0a", "truncated varint"),
    (MAGIC + b"\x0a\x05ab", "past the end"),
    (MAGIC + b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    (MAGIC + key(5, 3), "wire type 3"),
    (MAGIC + b"\x00\x00", "field number 0"),
    (body("v1", "NoSuchKind", b""), '"NoSuchKind" in "v1" are not supported'),
    (body("apps/v1", "Pod", b""), '"Pod" in "apps/v1" are not supported'),
    (MAGIC + sub(2, b""), '"" in "" are not supported'),
    (body("v1", "Namespace", b"", sub(3, "gzip")), 'content encoding "gzip"'),
    (body("v1", "Namespace", num(1, 5)), "Namespace.metadata: wire type varint"),
    (body("apps/v1", "Deployment", sub(2, sub(1, "x"))), "DeploymentSpec.replicas"),
    (body("v1", "Namespace", sub(1, sub(11, num(1, 1)))), "map entry field 1"),
    (body("v1", "Namespace", sub(1, sub(8, num(1, 10**15)))), "out of range"),
])
def test_malformed_bodies_are_bad_requests(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        decode_body(data)
    assert message in raised.value.message
    assert raised.value.code == 400


def test_every_truncation_of_a_real_body_is_a_bad_request_or_decodes() -> None:
    data = (FIXTURES / "deployment.pb").read_bytes()
    for end in range(len(data)):
        try:
            assert isinstance(decode_body(data[:end]), dict)
        except BadRequest:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(CAPTURED), st.integers(0, 300))
def test_garbage_never_raises_anything_but_bad_request(noise: bytes, name: str, at: int) -> None:
    real = (FIXTURES / f"{name}.pb").read_bytes()
    at = min(at, len(real))
    for data in (MAGIC + noise, real[:at] + noise + real[at + len(noise):]):
        try:
            assert isinstance(decode_body(data), dict)
        except BadRequest:
            pass
