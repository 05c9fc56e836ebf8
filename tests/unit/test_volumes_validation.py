"""Pod volume validation, worded as upstream's validateVolumes / ValidateVolumeMounts."""

from __future__ import annotations

import pytest

from pocketkube.registry.core.pods.validation import validate


def pod(volumes, mounts=None):
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"volumes": volumes, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Always",
                                     "terminationMessagePolicy": "File", "volumeMounts": mounts or []}]}}


def messages(obj):
    return [str(e) for e in validate(obj)]


def test_a_valid_pod_with_every_supported_source():
    vols = [{"name": "a", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "b", "configMap": {"name": "cm", "defaultMode": 0o644, "items": [{"key": "k", "path": "x/y"}]}},
            {"name": "c", "secret": {"secretName": "s", "optional": True}},
            {"name": "d", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "token",
                                                                             "expirationSeconds": 3607}},
                                                    {"configMap": {"name": "ca", "items": [{"key": "ca.crt",
                                                                                            "path": "ca.crt"}]}}]}},
            {"name": "f", "hostPath": {"path": "/data", "type": "DirectoryOrCreate"}},
            {"name": "g", "persistentVolumeClaim": {"claimName": "data"}}]
    mounts = [{"name": n, "mountPath": f"/m/{n}"} for n in "abcdefg"] + [
        {"name": "b", "mountPath": "/one", "subPath": "x/y"}]
    assert messages(pod(vols, mounts)) == []


@pytest.mark.parametrize("volume,message", [
    ({"name": "v"}, "spec.volumes[0]: Required value: must specify a volume type"),
    ({"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}},
     "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"),
    ({"name": "v", "hostPath": {"path": "/x", "type": "Folder"}},
     'spec.volumes[0].hostPath.type: Unsupported value: "Folder": supported values: "DirectoryOrCreate", '
     '"Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"'),
    ({"name": "v", "hostPath": {}}, "spec.volumes[0].hostPath.path: Required value"),
    ({"name": "v", "hostPath": {"path": "/a/../b"}}, 'spec.volumes[0].hostPath.path: Invalid value: "/a/../b": '
                                                      "must not contain '..'"),
    ({"name": "v", "emptyDir": {"sizeLimit": "lots"}}, 'spec.volumes[0].emptyDir.sizeLimit: Invalid value: "lots": '
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ({"name": "v", "secret": {}}, "spec.volumes[0].secret.secretName: Required value"),
    ({"name": "v", "configMap": {"name": "cm", "defaultMode": 0o1777}},
     "spec.volumes[0].configMap.defaultMode: Invalid value: 1023: must be a number between 0 and 0777 (octal), "
     "both inclusive"),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "/etc/x"}]}},
     'spec.volumes[0].configMap.items[0].path: Invalid value: "/etc/x": must be a relative path'),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "a/../../b"}]}},
     "spec.volumes[0].configMap.items[0].path: Invalid value: \"a/../../b\": must not contain '..'"),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "..data"}]}},
     "spec.volumes[0].configMap.items[0].path: Invalid value: \"..data\": must not start with '..'"),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"path": "p"}]}},
     "spec.volumes[0].configMap.items[0].key: Required value"),
    ({"name": "v", "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}},
     'spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "status.podIP": supported '
     'values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"'),
    ({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]}},
     "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not "
     "specify a duration less than 10 minutes"),
    ({"name": "v", "projected": {"sources": [{"configMap": {"name": "a", "items": [{"key": "k", "path": "x"}]}},
                                             {"secret": {"name": "b", "items": [{"key": "k", "path": "x"}]}}]}},
     'spec.volumes[0].projected.sources[1]: Invalid value: "x": conflicting duplicate paths'),
    ({"name": "v", "persistentVolumeClaim": {}}, "spec.volumes[0].persistentVolumeClaim.claimName: Required value"),
    ({"name": "Bad_Name", "emptyDir": {}}, 'spec.volumes[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
     "label must consist of lower case alphanumeric characters or '-', and must start and end with an "
     "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
])
def test_bad_volumes(volume, message):
    assert message in messages(pod([volume]))


def test_duplicate_volume_names():
    assert 'spec.volumes[1].name: Duplicate value: "v"' in messages(pod([{"name": "v", "emptyDir": {}},
                                                                          {"name": "v", "emptyDir": {}}]))


@pytest.mark.parametrize("mount,message", [
    ({"name": "nope", "mountPath": "/x"}, 'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
    ({"name": "v"}, "spec.containers[0].volumeMounts[0].mountPath: Required value"),
    ({"name": "v", "mountPath": "/x", "subPath": "/abs"},
     'spec.containers[0].volumeMounts[0].subPath: Invalid value: "/abs": must be a relative path'),
    ({"name": "v", "mountPath": "/x", "subPath": "a/../.."},
     "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"a/../..\": must not contain '..'"),
])
def test_bad_mounts(mount, message):
    assert message in messages(pod([{"name": "v", "emptyDir": {}}], [mount]))


def test_mount_paths_are_unique():
    mounts = [{"name": "v", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}]
    assert 'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/x": must be unique' in messages(
        pod([{"name": "v", "emptyDir": {}}], mounts))
