"""The ServiceAccount admission plugin at pod create (registry/core/pods/serviceaccount.py),
alone and through the pod store."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.registry.core.pods import serviceaccount as sa_admission
from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend

MOUNT = {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}


def _pod(**spec) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"initContainers": [{"name": "i", "image": "x"}], "containers": [{"name": "c", "image": "x"}],
                     **spec}}


def _lookup(accounts: dict):
    return lambda ns, name: accounts.get((ns, name))


def _fixed_name(monkeypatch):
    monkeypatch.setattr(sa_admission, "volume_name", lambda: "kube-api-access-abcde")


def test_default_account_volume_and_mounts_as_upstream(monkeypatch):
    _fixed_name(monkeypatch)
    pod = _pod()
    sa_admission.admit(pod, _lookup({("ns", "default"): {"metadata": {"name": "default"}}}))
    spec = pod["spec"]
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("default", "default")
    assert spec["volumes"] == [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]
    assert spec["initContainers"][0]["volumeMounts"] == [MOUNT]
    assert spec["containers"][0]["volumeMounts"] == [MOUNT]


def test_generated_names_look_like_upstreams():
    name = sa_admission.volume_name()
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5


@pytest.mark.parametrize("pod_says,sa_says,mounted", [
    (None, None, True), (False, None, False), (None, False, False), (True, False, True), (False, True, False)])
def test_automount_pod_wins_over_account(pod_says, sa_says, mounted):
    spec = {} if pod_says is None else {"automountServiceAccountToken": pod_says}
    sa = {"metadata": {"name": "default"}}
    if sa_says is not None:
        sa["automountServiceAccountToken"] = sa_says
    pod = _pod(**spec)
    sa_admission.admit(pod, _lookup({("ns", "default"): sa}))
    assert ("volumes" in pod["spec"]) == mounted


def test_existing_mount_at_the_path_is_kept_and_existing_volume_reused():
    own = {"name": "mine", "mountPath": sa_admission.MOUNT_PATH}
    pod = _pod(containers=[{"name": "c", "image": "x", "volumeMounts": [own]}], initContainers=[])
    sa_admission.admit(pod, _lookup({}))
    assert pod["spec"]["containers"][0]["volumeMounts"] == [own] and "volumes" not in pod["spec"]
    vol = {"name": "kube-api-access-zzzzz", "projected": {"sources": []}}
    pod = _pod(volumes=[vol])
    sa_admission.admit(pod, _lookup({}))
    assert pod["spec"]["volumes"] == [vol]
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-zzzzz"


def test_missing_named_account_is_forbidden_missing_default_tolerated():
    with pytest.raises(errors.Forbidden) as e:
        sa_admission.admit(_pod(serviceAccountName="robot"), _lookup({}), "p")
    assert e.value.message == ('pods "p" is forbidden: error looking up service account ns/robot: '
                               'serviceaccount "robot" not found')
    with pytest.raises(errors.Forbidden, match="^pods is forbidden"):
        sa_admission.admit(_pod(serviceAccount="robot"), _lookup({}), "")
    pod = _pod()
    sa_admission.admit(pod, _lookup({}))
    assert pod["spec"]["serviceAccountName"] == "default" and pod["spec"]["volumes"]


def test_image_pull_secrets_from_the_account():
    sa = {"metadata": {"name": "robot"}, "imagePullSecrets": [{"name": "reg"}]}
    pod = _pod(serviceAccountName="robot")
    sa_admission.admit(pod, _lookup({("ns", "robot"): sa}))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "reg"}]
    pod = _pod(serviceAccountName="robot", imagePullSecrets=[{"name": "own"}])
    sa_admission.admit(pod, _lookup({("ns", "robot"): sa}))
    assert pod["spec"]["imagePullSecrets"] == [{"name": "own"}]


def test_mirror_pods_are_left_alone():
    pod = _pod(serviceAccountName="robot")
    pod["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    sa_admission.admit(pod, _lookup({}))
    assert "volumes" not in pod["spec"]


@pytest.fixture
async def registry(tmp_path):
    b = SQLiteBackend(str(tmp_path / "state.db"))
    await b.start()
    yield Registry(b)
    await b.close()


async def test_through_the_pod_store(registry):
    pods = registry.store("", "pods")
    created = await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, "default")
    assert created["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    assert created["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == sa_admission.MOUNT_PATH
    with pytest.raises(errors.Forbidden):
        await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
                           "spec": {"serviceAccountName": "robot",
                                    "containers": [{"name": "c", "image": "busybox"}]}}, "default")
    await registry.store("", "serviceaccounts").create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"},
         "automountServiceAccountToken": False}, "default")
    created = await pods.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
                                 "spec": {"serviceAccountName": "robot",
                                          "containers": [{"name": "c", "image": "busybox"}]}}, "default")
    assert "volumes" not in created["spec"] and created["spec"]["serviceAccount"] == "robot"
