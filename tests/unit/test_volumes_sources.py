"""Volume payloads: configMap, secret, downwardAPI and projected items, modes and errors."""

from __future__ import annotations

import base64

import pytest

from pocketkube.agent.kubelet.volumes import configmap, downwardapi, projected, secret
from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import MountError


class Sources:
    def __init__(self, configmaps=None, secrets=None, tokens=None):
        self.cms, self.secrets, self.tokens = configmaps or {}, secrets or {}, tokens or {}

    def configmap(self, ns, name):
        return self.cms.get((ns, name))

    def secret(self, ns, name):
        return self.secrets.get((ns, name))

    def token(self, audience, exp):
        if (audience, exp) not in self.tokens:
            raise MountError("no service account token")
        return self.tokens[(audience, exp)]


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "1", "b": "2"}},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}}
CM = {"data": {"k1": "v1", "k2": "v2"}, "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}
SECRET = {"data": {"user": base64.b64encode(b"admin").decode(), "pw": base64.b64encode(b"s3cret").decode()}}
SRC = Sources({("ns", "cm"): CM}, {("ns", "s"): SECRET}, {("", 3600): "tok", ("vault", 600): "tok2"})


def test_configmap_every_key_with_the_default_mode():
    p = configmap.payload(POD, {"name": "cm", "defaultMode": 0o600}, SRC)
    assert p == {"k1": FileProjection(b"v1", 0o600), "k2": FileProjection(b"v2", 0o600),
                 "bin": FileProjection(b"\x00\x01", 0o600)}


def test_configmap_items_map_keys_to_paths_with_their_modes():
    p = configmap.payload(POD, {"name": "cm", "items": [{"key": "k1", "path": "conf/one", "mode": 0o400},
                                                        {"key": "k2", "path": "two"}]}, SRC)
    assert p == {"conf/one": FileProjection(b"v1", 0o400), "two": FileProjection(b"v2", 0o644)}


def test_configmap_missing_object_or_key():
    with pytest.raises(MountError, match='^configmap "nope" not found$'):
        configmap.payload(POD, {"name": "nope"}, SRC)
    assert configmap.payload(POD, {"name": "nope", "optional": True}, SRC) == {}
    with pytest.raises(MountError, match="^configmap references non-existent config key: zz$"):
        configmap.payload(POD, {"name": "cm", "items": [{"key": "zz", "path": "z"}]}, SRC)
    assert configmap.payload(POD, {"name": "cm", "optional": True, "items": [{"key": "zz", "path": "z"}]},
                             SRC) == {}


def test_secret_decoded_items_and_errors():
    assert secret.payload(POD, {"secretName": "s", "items": [{"key": "pw", "path": "password"}]}, SRC) == {
        "password": FileProjection(b"s3cret", 0o644)}
    with pytest.raises(MountError, match='^secret "x" not found$'):
        secret.payload(POD, {"secretName": "x"}, SRC)
    with pytest.raises(MountError, match="^references non-existent secret key: k$"):
        secret.payload(POD, {"secretName": "s", "items": [{"key": "k", "path": "k"}]}, SRC)


def test_fs_group_owns_files_and_can_read_them():
    pod = {**POD, "spec": {**POD["spec"], "securityContext": {"fsGroup": 2000}}}
    p = secret.payload(pod, {"secretName": "s", "defaultMode": 0o400}, SRC)
    assert p["pw"] == FileProjection(b"s3cret", 0o440, gid=2000)


def test_downward_api_fields_and_resources():
    p = downwardapi.payload(POD, {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
    ]}, pod_ip="", host_ip="", allocatable={})
    assert p["name"].data == b"p" and p["labels"].data == b'a="1"\nb="2"' and p["mem"].data == b"64"


def test_projected_sources_in_one_directory_with_tokens():
    source = {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
        {"configMap": {"name": "cm", "items": [{"key": "k1", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        {"secret": {"name": "s", "items": [{"key": "user", "path": "user"}]}},
        {"serviceAccountToken": {"path": "vault-token", "audience": "vault", "expirationSeconds": 600}},
    ]}
    assert projected.token_requests(source) == [("", 3600), ("vault", 600)]
    p = projected.payload(POD, source, SRC, pod_ip="", host_ip="", allocatable={})
    assert {k: v.data for k, v in p.items()} == {"token": b"tok", "ca.crt": b"v1", "namespace": b"ns",
                                                 "user": b"admin", "vault-token": b"tok2"}


def test_projected_conflicting_paths():
    source = {"sources": [{"configMap": {"name": "cm"}}, {"configMap": {"name": "cm"}}]}
    with pytest.raises(MountError, match="conflicting paths"):
        projected.payload(POD, source, SRC, pod_ip="", host_ip="", allocatable={})
