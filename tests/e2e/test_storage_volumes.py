"""PersistentVolumes, claims and the `standard` local-path class on a 2-node process cluster, with
kubectl 1.32 and 1.37 and the official Python client: WaitForFirstConsumer provisioning on the
pod's node, pods pinned to their volume's node, reclaim Delete, static volumes, pvc-protection.
(The kubelet's mount of the claim, and data in it, are tested where they are built.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import KUBECTL, require_module, requires
from pocketkube.testing.waits import wait_for

kubernetes = require_module("kubernetes")
from kubernetes import client, config  # noqa: E402

# Address ranges of this module's own (process runtime: loopback).
RANGES = {"node_ip_base": "127.0.215.0", "pod_cidr_base": "127.225.0.0/16", "service_cidr": "127.235.0.0/16",
          "lb_pool": "127.215.1.0/24"}
KUBECTLS = sorted(kubectl_binaries()) or [pytest.param("none", marks=requires(False, KUBECTL))]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-storage-", nodes=2, **RANGES) as c:
        yield c


@pytest.fixture(params=KUBECTLS)
def kubectl(request, cluster, tmp_path):
    k = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig, cwd=tmp_path)
    k.version = request.param
    yield k
    k.close()


@pytest.fixture
def core(cluster):
    return client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))


def claim(name: str, size: str = "1Gi", **spec) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                                    **spec}})


def pod(name: str, claim_name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"containers": [{"name": "c", "image": "nginx",
                                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
                                    "terminationGracePeriodSeconds": 0}})


def suffix(kubectl) -> str:
    return kubectl.version.replace(".", "").replace("kubectl-", "")


def node_of(core, name: str) -> str:
    return wait_for(lambda: core.read_namespaced_pod(name, "default").spec.node_name, timeout=30,
                    what=f"pod {name} scheduled")


def gone(fn) -> bool:
    try:
        fn()
    except client.ApiException as e:
        return e.status == 404
    return False


def test_default_class_is_listed(kubectl):
    out = kubectl.ok("get", "storageclass")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION",
                              "AGE"]
    assert row.split()[:6] == ["standard", "(default)", "pocketkube.io/local-path", "Delete", "WaitForFirstConsumer",
                               "false"]


def test_wait_for_first_consumer_provisions_on_the_pods_node(kubectl, core, cluster):
    name = f"wffc-{suffix(kubectl)}"
    kubectl.ok("apply", "-f", "-", input=claim(name))
    pvc = core.read_namespaced_persistent_volume_claim(name, "default")
    assert pvc.spec.storage_class_name == "standard"
    assert "kubernetes.io/pvc-protection" in pvc.metadata.finalizers
    wait_for(lambda: any(e.reason == "WaitForFirstConsumer" for e in core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={name}").items), timeout=20, what="WaitForFirstConsumer")
    assert core.read_namespaced_persistent_volume_claim(name, "default").status.phase == "Pending"

    kubectl.ok("apply", "-f", "-", input=pod(f"{name}-a", name))
    node = node_of(core, f"{name}-a")
    bound = core.read_namespaced_persistent_volume_claim(name, "default")
    assert bound.status.phase == "Bound"
    assert bound.metadata.annotations["volume.kubernetes.io/selected-node"] == node
    pv = core.read_persistent_volume(bound.spec.volume_name)
    assert pv.spec.claim_ref.name == name and pv.status.phase == "Bound"
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    terms = pv.spec.node_affinity.required.node_selector_terms
    assert terms[0].match_expressions[0].values == [node]
    directory = Path(pv.spec.host_path.path)
    assert directory == cluster.data_dir / "nodes" / node / "storage" / f"{pv.metadata.name}_default_{name}"
    assert directory.is_dir()
    row = kubectl.ok("get", "pvc", name, "--no-headers").split()
    assert row[:6] == [name, "Bound", pv.metadata.name, "1Gi", "RWO", "standard"]
    assert kubectl.ok("get", "pv", pv.metadata.name, "--no-headers").split()[:7] == [
        pv.metadata.name, "1Gi", "RWO", "Delete", "Bound", f"default/{name}", "standard"]

    # Recreated pods follow the volume to its node (twice: a random pick would miss one in four).
    previous = f"{name}-a"
    for later in ("b", "c"):
        kubectl.ok("delete", "pod", previous, "--wait=true", "--timeout=30s")
        kubectl.ok("apply", "-f", "-", input=pod(f"{name}-{later}", name))
        assert node_of(core, f"{name}-{later}") == node
        previous = f"{name}-{later}"

    # pvc-protection: the claim stays while a pod uses it; then reclaim Delete removes volume and data.
    kubectl.ok("delete", "pvc", name, "--wait=false")
    assert core.read_namespaced_persistent_volume_claim(name, "default").metadata.deletion_timestamp is not None
    assert kubectl.ok("get", "pvc", name, "--no-headers").split()[1] == "Terminating"
    kubectl.ok("delete", "pod", previous, "--wait=true", "--timeout=30s")
    wait_for(lambda: gone(lambda: core.read_namespaced_persistent_volume_claim(name, "default")), timeout=30,
             what="the claim deleted")
    wait_for(lambda: gone(lambda: core.read_persistent_volume(pv.metadata.name)), timeout=30,
             what="the volume deleted")
    assert not directory.exists()


def test_static_host_path_volume_binds_and_retain_keeps_it(kubectl, core, cluster, tmp_path):
    name = f"static-{suffix(kubectl)}"
    volume = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": name, "labels": {"type": "local"}},
              "spec": {"storageClassName": "manual", "capacity": {"storage": "2Gi"},
                       "accessModes": ["ReadWriteOnce"], "hostPath": {"path": str(tmp_path / "pv")}}}
    kubectl.ok("apply", "-f", "-", input=yaml.safe_dump(volume))
    wait_for(lambda: core.read_persistent_volume(name).status.phase == "Available", timeout=20,
             what="the volume Available")
    assert core.read_persistent_volume(name).spec.persistent_volume_reclaim_policy == "Retain"
    # Too big, then a match (a class name without a StorageClass only selects static volumes).
    kubectl.ok("apply", "-f", "-", input=claim(f"{name}-big", "5Gi", storageClassName="manual"))
    kubectl.ok("apply", "-f", "-", input=claim(name, "1Gi", storageClassName="manual",
                                               selector={"matchLabels": {"type": "local"}}))
    wait_for(lambda: core.read_namespaced_persistent_volume_claim(name, "default").status.phase == "Bound",
             timeout=20, what="the claim Bound")
    pvc = core.read_namespaced_persistent_volume_claim(name, "default")
    assert pvc.spec.volume_name == name and pvc.status.capacity == {"storage": "2Gi"}
    assert pvc.metadata.annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert core.read_namespaced_persistent_volume_claim(f"{name}-big", "default").status.phase == "Pending"
    kubectl.ok("delete", "pvc", name, f"{name}-big")
    wait_for(lambda: core.read_persistent_volume(name).status.phase == "Released", timeout=20,
             what="the volume Released")
    kubectl.ok("delete", "pv", name)


def test_bad_input_is_a_kubernetes_error(kubectl, core):
    bad = kubectl.run("apply", "-f", "-", input=claim(f"bad-{suffix(kubectl)}", "-1Gi", accessModes=["Sometimes"]))
    assert bad.returncode != 0
    assert 'spec.accessModes: Unsupported value: "Sometimes"' in bad.stderr
    assert "spec.resources.requests[storage]: Invalid value: \"-1Gi\": must be greater than zero" in bad.stderr
    sc = kubectl.run("patch", "storageclass", "standard", "--type=merge", "-p",
                     json.dumps({"provisioner": "example.com/other"}))
    assert sc.returncode != 0 and "provisioner: Forbidden: updates to provisioner are forbidden." in sc.stderr
    missing = f"nopvc-{suffix(kubectl)}"
    kubectl.ok("apply", "-f", "-", input=pod(missing, "absent"))
    wait_for(lambda: any(c.reason == "Unschedulable" and 'persistentvolumeclaim "absent" not found' in c.message
                         for c in core.read_namespaced_pod(missing, "default").status.conditions or []),
             timeout=20, what="the pod unschedulable")
    kubectl.ok("delete", "pod", missing)


def test_a_claim_grows_only_when_its_class_allows_expansion(kubectl, core):
    s = suffix(kubectl)
    for name, expand in ((f"grow-{s}", True), (f"fixed-{s}", False)):
        kubectl.ok("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "pocketkube.io/local-path", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": expand}))
        kubectl.ok("apply", "-f", "-", input=claim(name, storageClassName=name))
        wait_for(lambda name=name: core.read_namespaced_persistent_volume_claim(name, "default").status.phase
                 == "Bound", timeout=20, what=f"{name} bound")
    bigger = json.dumps({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    kubectl.ok("patch", "pvc", f"grow-{s}", "-p", bigger)
    wait_for(lambda: core.read_namespaced_persistent_volume_claim(f"grow-{s}", "default").status.capacity
             == {"storage": "2Gi"}, timeout=20, what="the claim grown")
    refused = kubectl.run("patch", "pvc", f"fixed-{s}", "-p", bigger)
    assert refused.returncode != 0
    assert "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must " \
           "support resize" in refused.stderr
    kubectl.ok("delete", "pvc", f"grow-{s}", f"fixed-{s}")
    kubectl.ok("delete", "storageclass", f"grow-{s}", f"fixed-{s}")
