"""ConfigMap, Secret and ServiceAccount defaulting and validation, worded as upstream."""

from __future__ import annotations

import base64

import pytest

from pocketkube.apiserver.protobuf.decoding import decode_body
from pocketkube.apiserver.tables import table
from pocketkube.registry.core.config import (
    b64_errors,
    configmap_validate,
    configmap_validate_update,
    secret_default,
    secret_validate,
    secret_validate_update,
    serviceaccount_validate,
)

pytestmark = pytest.mark.unit


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def meta(name: str = "x") -> dict:
    return {"name": name, "namespace": "default", "resourceVersion": "1", "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z"}


def msgs(errs) -> list[str]:
    return [str(e) for e in errs]


def test_configmap_keys_and_overlap() -> None:
    cm = {"metadata": meta(), "data": {"a b": "1", "ok": "2", "..x": "3"}, "binaryData": {"ok": b64("z")}}
    out = msgs(configmap_validate(cm))
    assert ('data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters, '
            "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')") in out
    assert 'data[ok]: Invalid value: "ok": duplicate of key present in binaryData' in out
    assert "data[..x]: Invalid value: \"..x\": must not start with '..'" in out


def test_configmap_size_limit() -> None:
    cm = {"metadata": meta(), "data": {"a": "x" * (1024 * 1024), "b": "y"}}
    assert msgs(configmap_validate(cm)) == ["Too long: must have at most 1048576 bytes"]
    assert configmap_validate({"metadata": meta(), "data": {"a": "x" * (1024 * 1024)}}) == []


def test_configmap_bad_types_are_field_errors() -> None:
    out = msgs(configmap_validate({"metadata": meta(), "data": {"a": 1}, "immutable": "yes"}))
    assert any(m.startswith("data[a]: Invalid value") for m in out)
    assert any(m.startswith("immutable: Invalid value") for m in out)
    out = msgs(configmap_validate({"metadata": meta(), "binaryData": {"a": "!!"}}))
    assert out == ['binaryData[a]: Invalid value: "!!": illegal base64 data at input byte 0']


def test_immutable_configmap() -> None:
    old = {"metadata": meta(), "data": {"a": "1"}, "immutable": True}
    assert configmap_validate_update({**old}, old) == []
    out = msgs(configmap_validate_update({"metadata": meta(), "data": {"a": "2"}}, old))
    assert out == ["immutable: Forbidden: field is immutable when `immutable` is set",
                   "data: Forbidden: field is immutable when `immutable` is set"]
    # a mutable one may become immutable
    assert configmap_validate_update(old, {**old, "immutable": False}) == []


def test_secret_string_data_is_merged_into_data() -> None:
    s = {"metadata": meta(), "data": {"a": b64("old"), "b": b64("keep")}, "stringData": {"a": "new", "c": "é"}}
    secret_default(s)
    assert s["type"] == "Opaque" and "stringData" not in s
    assert s["data"] == {"a": b64("new"), "b": b64("keep"), "c": b64("é")}
    assert secret_validate(s) == []


def test_secret_string_data_of_the_wrong_shape_is_reported() -> None:
    s = {"metadata": meta(), "stringData": {"a": 1, "b": "ok"}}
    secret_default(s)
    out = msgs(secret_validate(s))
    assert len(out) == 1 and out[0].startswith("stringData[a]: Invalid value: 1")
    s = {"metadata": meta(), "stringData": ["x"]}
    secret_default(s)
    assert msgs(secret_validate(s))[0].startswith("stringData: Invalid value")
    s = {"metadata": meta(), "stringData": {}}
    secret_default(s)
    assert "stringData" not in s and "data" not in s and secret_validate(s) == []


def test_secret_bad_base64_is_invalid_and_redacted() -> None:
    s = {"metadata": meta(), "type": "Opaque", "data": {"k": "not base64!"}}
    assert msgs(secret_validate(s)) == [
        'data[k]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 3']
    assert b64_errors("YQ") == "illegal base64 data at input byte 0"
    assert b64_errors("YQ==") is None and b64_errors("YWJj\nZA==") is None


@pytest.mark.parametrize(("type_", "data", "annotations", "expected"), [
    ("kubernetes.io/tls", {}, None, ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
    ("kubernetes.io/tls", {"tls.crt": "", "tls.key": ""}, None, []),
    ("kubernetes.io/basic-auth", {}, None, ["data[username]: Required value", "data[password]: Required value"]),
    ("kubernetes.io/basic-auth", {"password": b64("p")}, None, []),
    ("kubernetes.io/ssh-auth", {"ssh-privatekey": ""}, None, ["data[ssh-privatekey]: Required value"]),
    ("kubernetes.io/dockerconfigjson", {}, None, ["data[.dockerconfigjson]: Required value"]),
    ("kubernetes.io/dockercfg", {".dockercfg": b64("{}")}, None, []),
    ("kubernetes.io/service-account-token", {}, None,
     ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
    ("kubernetes.io/service-account-token", {}, {"kubernetes.io/service-account.name": "default"}, []),
    ("bootstrap.kubernetes.io/token", {"token-id": b64("abcdef")}, None, []),
    ("example.com/custom", {}, None, []),
])
def test_secret_types_require_their_keys(type_, data, annotations, expected) -> None:
    m = meta()
    if annotations:
        m["annotations"] = annotations
    assert msgs(secret_validate({"metadata": m, "type": type_, "data": data})) == expected


def test_dockerconfigjson_must_be_json() -> None:
    s = {"metadata": meta(), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{")}}
    (err,) = secret_validate(s)
    assert str(err).startswith('data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": ')


def test_secret_type_and_immutable_updates() -> None:
    old = {"metadata": meta(), "type": "Opaque", "data": {"a": b64("1")}, "immutable": True}
    new = {"metadata": meta(), "type": "kubernetes.io/basic-auth", "data": {"a": b64("2")}}
    out = msgs(secret_validate_update(new, old))
    assert out[:3] == ['type: Invalid value: "kubernetes.io/basic-auth": field is immutable',
                       "immutable: Forbidden: field is immutable when `immutable` is set",
                       "data: Forbidden: field is immutable when `immutable` is set"]


def test_serviceaccount_validation() -> None:
    sa = {"metadata": meta(), "secrets": [{"name": "s"}], "imagePullSecrets": [{"name": "r"}],
          "automountServiceAccountToken": False}
    assert serviceaccount_validate(sa) == []
    out = msgs(serviceaccount_validate({"metadata": meta(), "secrets": "x", "automountServiceAccountToken": 1}))
    assert any(m.startswith("secrets: Invalid value") for m in out)
    assert any(m.startswith("automountServiceAccountToken: Invalid value") for m in out)


def test_tables() -> None:
    now = 1767225600 + 7
    cm = {"metadata": meta("c"), "data": {"a": "1"}, "binaryData": {"b": ""}}
    assert table("configmaps", "", [cm], now)["rows"][0]["cells"] == ["c", 2, "7s"]
    sec = {"metadata": meta("s"), "type": "Opaque", "data": {"a": ""}}
    assert table("secrets", "", [sec], now)["rows"][0]["cells"] == ["s", "Opaque", 1, "7s"]
    sa = {"metadata": meta("default"), "secrets": [{"name": "x"}]}
    assert table("serviceaccounts", "", [sa], now)["rows"][0]["cells"] == ["default", 1, "7s"]
    names = [c["name"] for c in table("secrets", "", [sec], now)["columnDefinitions"]]
    assert names == ["Name", "Type", "Data", "Age"]


def _len(n: int, payload: bytes) -> bytes:
    return bytes([n << 3 | 2, len(payload)]) + payload


def test_protobuf_secret_bytes_become_base64() -> None:
    entry = _len(1, b"k") + _len(2, b"\x00\xff")
    secret = _len(1, _len(1, b"s")) + _len(2, entry) + _len(3, b"Opaque") + _len(4, _len(1, b"t") + _len(2, b"v"))
    envelope = _len(1, _len(1, b"v1") + _len(2, b"Secret")) + _len(2, secret)
    obj = decode_body(b"k8s\x00" + envelope)
    assert obj["data"] == {"k": "AP8="} and obj["stringData"] == {"t": "v"} and obj["type"] == "Opaque"
