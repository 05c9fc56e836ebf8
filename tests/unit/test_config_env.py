"""A container's env from ConfigMaps, Secrets, fieldRef and resourceFieldRef (agent/envvars.py)."""

from __future__ import annotations

import base64

import pytest

from pocketkube.agent.envvars import EnvError, container_env, references

pytestmark = pytest.mark.unit

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"},
                    "annotations": {"note": "hi"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "default"}}
CM = {"metadata": {"name": "cfg"}, "data": {"color": "blue", "1bad": "x", "size": "L"}, "binaryData": {"bin": "AA=="}}
SECRET = {"metadata": {"name": "sec"}, "type": "Opaque",
          "data": {"password": base64.b64encode(b"s3cret").decode(), "user": base64.b64encode(b"me").decode()}}
OBJECTS = {("ConfigMap", "cfg"): CM, ("Secret", "sec"): SECRET}


def env_of(container: dict, warnings: list | None = None) -> dict[str, str]:
    return container_env(POD, container, [], "10.0.0.5", "10.0.0.1", {"cpu": "4", "memory": "8Gi"},
                         objects=lambda kind, name: OBJECTS.get((kind, name)), warnings=warnings)


def ref(kind: str, name: str, key: str, optional: bool | None = None) -> dict:
    r = {"name": name, "key": key}
    if optional is not None:
        r["optional"] = optional
    return {kind: r}


def test_key_refs_resolve_and_secret_values_are_decoded() -> None:
    env = env_of({"name": "c", "env": [
        {"name": "COLOR", "valueFrom": ref("configMapKeyRef", "cfg", "color")},
        {"name": "PW", "valueFrom": ref("secretKeyRef", "sec", "password")},
        {"name": "BOTH", "value": "$(COLOR)-$(PW)"}]})
    assert env["COLOR"] == "blue" and env["PW"] == "s3cret" and env["BOTH"] == "blue-s3cret"


@pytest.mark.parametrize(("source", "message"), [
    (ref("configMapKeyRef", "nope", "k"), 'configmap "nope" not found'),
    (ref("secretKeyRef", "nope", "k"), 'secret "nope" not found'),
    (ref("configMapKeyRef", "cfg", "k"), "couldn't find key k in ConfigMap ns/cfg"),
    (ref("configMapKeyRef", "cfg", "bin"), "couldn't find key bin in ConfigMap ns/cfg"),
    (ref("secretKeyRef", "sec", "k"), "couldn't find key k in Secret ns/sec"),
])
def test_missing_objects_and_keys_are_upstreams_errors(source: dict, message: str) -> None:
    with pytest.raises(EnvError) as raised:
        env_of({"name": "c", "env": [{"name": "X", "valueFrom": source}]})
    assert str(raised.value) == message
    kind = next(iter(source))
    optional = {kind: {**source[kind], "optional": True}}
    assert "X" not in env_of({"name": "c", "env": [{"name": "X", "valueFrom": optional}]})


def test_env_from_with_prefix_and_invalid_keys() -> None:
    warnings: list = []
    env = env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}},
                                           {"prefix": "S_", "secretRef": {"name": "sec"}}],
                  "env": [{"name": "size", "value": "override"}]}, warnings)
    assert env["color"] == "blue" and env["size"] == "override" and "bin" not in env and "1bad" not in env
    assert env["S_password"] == "s3cret" and env["S_user"] == "me"
    assert warnings == [("InvalidEnvironmentVariableNames",
                         "Keys [1bad] from the EnvFrom configMap ns/cfg were skipped since they are "
                         "considered invalid environment variable names.")]


def test_env_from_missing_object() -> None:
    with pytest.raises(EnvError, match='^secret "gone" not found$'):
        env_of({"name": "c", "envFrom": [{"secretRef": {"name": "gone"}}]})
    assert "color" not in env_of({"name": "c", "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]})


@pytest.mark.parametrize(("path", "value"), [
    ("metadata.name", "p"), ("metadata.namespace", "ns"), ("metadata.uid", "u1"),
    ("metadata.labels['app']", "web"), ("metadata.annotations['note']", "hi"),
    ("spec.nodeName", "n1"), ("spec.serviceAccountName", "default"),
    ("status.podIP", "10.0.0.5"), ("status.podIPs", "10.0.0.5"),
    ("status.hostIP", "10.0.0.1"), ("status.hostIPs", "10.0.0.1"),
])
def test_field_refs(path: str, value: str) -> None:
    assert env_of({"name": "c", "env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})["V"] == value


@pytest.mark.parametrize(("resources", "resource", "divisor", "value"), [
    ({}, "limits.cpu", None, "4"),                       # no limit: the node's allocatable
    ({}, "limits.memory", "1Mi", "8192"),
    ({"limits": {"cpu": "250m"}}, "limits.cpu", "1m", "250"),
    ({"limits": {"cpu": "250m"}}, "limits.cpu", None, "1"),  # rounded up
    ({"requests": {"memory": "64Mi"}}, "requests.memory", "1Mi", "64"),
])
def test_resource_field_refs(resources: dict, resource: str, divisor: str | None, value: str) -> None:
    selector = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    c = {"name": "c", "resources": resources, "env": [{"name": "V", "valueFrom": {"resourceFieldRef": selector}}]}
    assert env_of(c)["V"] == value


def test_references() -> None:
    c = {"envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}],
         "env": [{"name": "X", "valueFrom": ref("secretKeyRef", "c", "k")}, {"name": "Y", "value": "1"},
                 {"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    assert references(c) == {("ConfigMap", "a"), ("Secret", "b"), ("Secret", "c")}
