"""The kubelet's volumes on the fake client and runtime: a ConfigMap volume written before the
container starts, FailedMount until the ConfigMap exists, updates rewritten through the watch,
tokens requested and refreshed, emptyDir evictions, and everything removed with the pod."""

from __future__ import annotations

import os

import pytest
from async_waits import until

from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.kubelets import kubelet_on_fakes
from pocketkube.testing.requires import TMPFS, is_root, require, requires

PODS = BY_PLURAL[("", "pods")]
EVENTS = BY_PLURAL[("", "events")]
CONFIGMAPS = BY_PLURAL[("", "configmaps")]
SECRETS = BY_PLURAL[("", "secrets")]
NODE = "node-1"


@pytest.fixture
async def world(tmp_path):
    async with kubelet_on_fakes(volumes_root=tmp_path) as (fake, rt, k):
        yield fake, rt, k, tmp_path


def pod(name: str, volumes: list[dict], mounts: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "volumes": volumes,
                     "containers": [{"name": "c", "image": "app:1", "volumeMounts": mounts}]}}


def cm(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


def events(fake: FakeClient, reason: str) -> list[str]:
    return [e["message"] for e in fake.objects(EVENTS, "default") if e.get("reason") == reason]


async def test_configmap_volume_written_before_start_and_updated(world):
    fake, rt, k, root = world
    await fake.create(CONFIGMAPS, cm("conf", {"k": "v1"}))
    p = await fake.create(PODS, pod("p", [{"name": "cfg", "configMap": {"name": "conf"}}],
                                    [{"name": "cfg", "mountPath": "/etc/cfg"}]))
    uid = p["metadata"]["uid"]
    cfg = await until(lambda: rt.started and rt.started[0], "the container starts")
    vol = root / uid / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert [(m.host_path, m.container_path) for m in cfg.mounts] == [(str(vol), "/etc/cfg")]
    assert (vol / "k").read_text() == "v1"
    await fake.update(CONFIGMAPS, {**cm("conf", {"k": "v2", "n": "new"}),
                                   "metadata": {**cm("conf", {})["metadata"]}})
    await until(lambda: (vol / "k").read_text() == "v2" and (vol / "n").exists(), "the update is written")
    await fake.delete(PODS, "default", "p", grace_period=0)
    await until(lambda: not (root / uid).exists(), "the pod's volumes are removed")
    await until(lambda: not k.volumes.watches._watches, "the ConfigMap's watch stops with its last pod")


async def test_failed_mount_until_the_configmap_exists(world):
    fake, rt, k, _ = world
    await fake.create(PODS, pod("p", [{"name": "cfg", "configMap": {"name": "later"}}],
                                [{"name": "cfg", "mountPath": "/etc/cfg"}]))
    await until(lambda: events(fake, "FailedMount"), "FailedMount")
    assert events(fake, "FailedMount")[0] == 'MountVolume.SetUp failed for volume "cfg" : configmap "later" not found'
    status = fake.objects(PODS, "default")[0].get("status") or {}
    assert status.get("phase") == "Pending" and not rt.started
    await fake.create(CONFIGMAPS, cm("later", {"k": "v"}))
    await until(lambda: rt.started, "the container starts once the ConfigMap exists", timeout=3)


async def test_subpath_escape_is_a_config_error(world, tmp_path):
    fake, rt, k, _ = world
    host = tmp_path / "host"
    host.mkdir()
    os.symlink("/etc", host / "out")
    await fake.create(PODS, pod("p", [{"name": "h", "hostPath": {"path": str(host)}}],
                                [{"name": "h", "mountPath": "/x", "subPath": "out"}]))
    await until(lambda: events(fake, "Failed"), "the container fails to be created")
    assert "not within volume path" in events(fake, "Failed")[0] and not rt.started


async def test_hostpath_type_error(world, tmp_path):
    fake, rt, k, _ = world
    (tmp_path / "file").write_text("x")
    await fake.create(PODS, pod("p", [{"name": "h", "hostPath": {"path": str(tmp_path / "file"),
                                                                 "type": "Directory"}}], []))
    await until(lambda: events(fake, "FailedMount"), "FailedMount")
    assert events(fake, "FailedMount")[0] == (f'MountVolume.SetUp failed for volume "h" : hostPath type check '
                                              f'failed: {tmp_path / "file"} is not a directory')


async def test_projected_token_requested_and_refreshed(world):
    fake, rt, k, root = world
    issued = []

    def token(ns, name, body):
        issued.append((ns, name, body["spec"]))
        return {"status": {"token": f"t{len(issued)}", "expirationTimestamp": now_rfc3339(k.clock() + 1.0)}}
    fake.subresource_handlers[("serviceaccounts", "token")] = token
    await fake.create(CONFIGMAPS, cm("kube-root-ca.crt", {"ca.crt": "CA"}))
    vol = {"name": "api", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607, "audience": "api"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
    require(is_root(), TMPFS)
    p = await fake.create(PODS, pod("p", [vol], [{"name": "api", "mountPath": "/var/run/secrets/x"}]))
    d = root / p["metadata"]["uid"] / "volumes" / "kubernetes.io~projected" / "api"
    await until(lambda: (d / "token").exists() and (d / "ca.crt").read_text() == "CA", "the projected files")
    assert issued[0][:2] == ("default", "default")
    assert issued[0][2]["audiences"] == ["api"] and issued[0][2]["expirationSeconds"] == 3607
    assert issued[0][2]["boundObjectRef"]["uid"] == p["metadata"]["uid"]
    # A one-second token is refreshed after 0.8 s.
    await until(lambda: (d / "token").read_text() != "t1", "the token is refreshed", timeout=5)


@requires(is_root(), TMPFS)
async def test_secret_volume_on_tmpfs_and_unmounted_with_the_pod(world):
    fake, rt, k, root = world
    await fake.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                                "data": {"pw": "czNjcmV0"}})
    p = await fake.create(PODS, pod("p", [{"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}],
                                    [{"name": "s", "mountPath": "/s"}]))
    d = root / p["metadata"]["uid"] / "volumes" / "kubernetes.io~secret" / "s"
    await until(lambda: rt.started, "the container starts")
    assert os.path.ismount(d) and (d / "pw").read_text() == "s3cret"
    assert (d / "pw").stat().st_mode & 0o777 == 0o400
    await fake.delete(PODS, "default", "p", grace_period=0)
    await until(lambda: not d.exists(), "unmounted and removed")
    assert not os.path.ismount(d)


async def test_empty_dir_over_its_size_limit_evicts_the_pod(world, monkeypatch):
    fake, rt, k, root = world
    p = await fake.create(PODS, pod("p", [{"name": "scratch", "emptyDir": {"sizeLimit": "1Ki"}}],
                                    [{"name": "scratch", "mountPath": "/scratch"}]))
    await until(lambda: rt.started, "the container starts")
    d = root / p["metadata"]["uid"] / "volumes" / "kubernetes.io~empty-dir" / "scratch"
    (d / "big").write_bytes(b"x" * 65536)
    message = k.volumes.exceeded_empty_dirs(k.workers[p["metadata"]["uid"]].pod)
    assert message == 'Usage of EmptyDir volume "scratch" exceeds the limit "1Ki". '
    k.workers[p["metadata"]["uid"]].evict(message)
    await until(lambda: (fake.objects(PODS, "default")[0].get("status") or {}).get("reason") == "Evicted",
                "the pod is evicted")
    status = fake.objects(PODS, "default")[0]["status"]
    assert status["phase"] == "Failed" and status["message"] == message
    assert events(fake, "Evicted") == [message]


async def test_a_deleted_configmap_leaves_running_pods_alone(world):
    fake, rt, k, root = world
    await fake.create(CONFIGMAPS, cm("conf", {"k": "v1"}))
    p = await fake.create(PODS, pod("p", [{"name": "cfg", "configMap": {"name": "conf"}}],
                                    [{"name": "cfg", "mountPath": "/etc/cfg"}]))
    await until(lambda: rt.started, "the container starts")
    await fake.delete(CONFIGMAPS, "default", "conf")
    await until(lambda: events(fake, "FailedMount"), "FailedMount for the update")
    vol = root / p["metadata"]["uid"] / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert (vol / "k").read_text() == "v1"  # the files it had
    await until(lambda: (fake.objects(PODS, "default")[0].get("status") or {}).get("phase") == "Running",
                "the pod runs on")


async def test_pvc_bound_to_a_local_pv_is_mounted(world, tmp_path):
    fake, rt, k, _ = world
    pvcs, pvs = BY_PLURAL[("", "persistentvolumeclaims")], BY_PLURAL[("", "persistentvolumes")]
    claim = fake.seed(pvcs, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": {"name": "data", "namespace": "default"}, "spec": {}, "status": {}})
    await fake.create(PODS, pod("p", [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                                [{"name": "d", "mountPath": "/data"}]))
    await until(lambda: events(fake, "FailedMount"), "FailedMount while the claim is unbound")
    assert 'PVC default/data has non-bound phase ("")' in events(fake, "FailedMount")[0]
    fake.seed(pvs, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
                    "spec": {"claimRef": {"uid": claim["metadata"]["uid"]},
                             "local": {"path": str(tmp_path / "pv1")}}})
    bound = await fake.update(pvcs, {**claim, "spec": {"volumeName": "pv1"}})
    await fake.update_status(pvcs, {**bound, "status": {"phase": "Bound"}})
    cfg = await until(lambda: rt.started and rt.started[0], "the container starts once bound", timeout=10)
    assert cfg.mounts[0].host_path == str(tmp_path / "pv1") and (tmp_path / "pv1").is_dir()


async def test_without_root_secrets_go_to_a_private_directory(world):
    fake, rt, k, root = world
    k.volumes.tmpfs = False
    await fake.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                                "data": {"pw": "czNjcmV0"}})
    p = await fake.create(PODS, pod("p", [{"name": "s", "secret": {"secretName": "s"}}], [{"name": "s", "mountPath": "/s"}]))
    await until(lambda: rt.started, "the container starts")
    d = root / p["metadata"]["uid"] / "volumes" / "kubernetes.io~secret" / "s"
    assert not os.path.ismount(d) and (d / "pw").read_text() == "s3cret" and d.stat().st_mode & 0o777 == 0o700
