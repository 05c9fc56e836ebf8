"""DaemonSets, StatefulSets and ReplicationControllers on a 3-node `pocketkube up` (process
runtime) with both kubectl builds and the official Python client: placement, ordering, scaling,
`kubectl rollout status|history|undo|restart`, tables and bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import require_module
from pocketkube.testing.waits import get_json, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# This helper's own process-mode ranges, so a parallel run of another suite never collides.
RANGES = {"node_ip_base": "127.0.217.0", "pod_cidr_base": "127.227.0.0/16", "service_cidr": "127.237.0.0/16",
          "lb_pool": "127.217.1.0/24"}
BINARIES = sorted(kubectl_binaries())


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-apps-", **RANGES) as c:
        yield c


@pytest.fixture(scope="module", params=BINARIES)
def k(request, cluster):
    kc = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig)
    kc.version = request.param
    yield kc
    kc.close()


@pytest.fixture(scope="module")
def k_once(cluster):
    """One kubectl for what runs once per cluster (not once per kubectl)."""
    kc = Kubectl(kubectl_binaries()[BINARIES[0]], cluster.kubeconfig)
    kc.version = BINARIES[0]
    yield kc
    kc.close()


def suffix(k) -> str:
    return k.version.replace("kubectl-", "").replace(".", "")


def pods(k, selector):
    return [p for p in get_json(k, "pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(p) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def workload(kind: str, name: str, **spec) -> str:
    api = "v1" if kind == "ReplicationController" else "apps/v1"
    selector = {"app": name} if kind == "ReplicationController" else {"matchLabels": {"app": name}}
    return yaml.safe_dump({"apiVersion": api, "kind": kind, "metadata": {"name": name},
                           "spec": {"selector": selector, **spec, "template": {
                               "metadata": {"labels": {"app": name}},
                               "spec": {"terminationGracePeriodSeconds": 1,
                                        "containers": [{"name": "c", "image": "pause"}]}}}})


def test_daemonset_placement_rollout_history_undo(k, cluster):
    name = f"agent{suffix(k)}"
    tainted = "node-3"
    k.ok("taint", "node", tainted, f"apps-{name}=yes:NoSchedule")
    try:
        k.ok("apply", "-f", "-", input=workload("DaemonSet", name))
        wait_for(lambda: len([p for p in pods(k, f"app={name}") if ready(p)]) == 2, timeout=60,
                 what="a ready pod on each untainted node")
        assert tainted not in {p["spec"]["nodeName"] for p in pods(k, f"app={name}")}
        k.ok("rollout", "status", f"ds/{name}", "--timeout=60s")
        row = k.ok("get", "ds", name).splitlines()
        assert row[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                  "SELECTOR", "AGE"]
        assert row[1].split()[:7] == [name, "2", "2", "2", "2", "2", "<none>"]
    finally:
        k.ok("taint", "node", tainted, f"apps-{name}=yes:NoSchedule-")
    wait_for(lambda: len([p for p in pods(k, f"app={name}") if ready(p)]) == 3, timeout=60,
             what="the untainted node gets its pod")
    k.ok("set", "env", f"ds/{name}", "WAVE=2")
    out = k.run("rollout", "status", f"ds/{name}", "--timeout=90s", timeout=100)
    assert out.returncode == 0 and f'daemon set "{name}" successfully rolled out' in out.stdout, out.stderr
    assert all(any(e.get("value") == "2" for e in p["spec"]["containers"][0].get("env", []))
               for p in pods(k, f"app={name}"))
    history = k.ok("rollout", "history", f"ds/{name}")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"], history
    revs = get_json(k, "controllerrevisions", "-l", f"app={name}")["items"]
    assert sorted(r["revision"] for r in revs) == [1, 2]
    assert f"daemonset.apps/{name}" in k.ok("get", "controllerrevisions")
    described = k.ok("describe", "ds", name)
    assert "Desired Number of Nodes Scheduled: 3" in described and "SuccessfulCreate" in described, described
    k.ok("rollout", "undo", f"ds/{name}")
    k.ok("rollout", "status", f"ds/{name}", "--timeout=90s")
    assert all(not p["spec"]["containers"][0].get("env") for p in pods(k, f"app={name}"))
    history = k.ok("rollout", "history", f"ds/{name}")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["2", "3"], history
    k.ok("delete", "ds", name)
    wait_for(lambda: not pods(k, f"app={name}"), timeout=60, what="the daemon pods go with the DaemonSet")


def test_statefulset_ordered_scale_partitioned_rollout(k):
    name = f"db{suffix(k)}"
    k.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                                                  "spec": {"clusterIP": "None", "selector": {"app": name},
                                                           "ports": [{"port": 80}]}}))
    k.ok("apply", "-f", "-", input=workload("StatefulSet", name, replicas=3, serviceName=name))
    k.ok("rollout", "status", f"sts/{name}", "--timeout=90s")
    ps = sorted(pods(k, f"app={name}"), key=lambda p: p["metadata"]["name"])
    assert [p["metadata"]["name"] for p in ps] == [f"{name}-0", f"{name}-1", f"{name}-2"]
    started = [p["metadata"]["creationTimestamp"] for p in ps]
    assert started == sorted(started)  # created in order
    assert ps[1]["spec"]["hostname"] == f"{name}-1" and ps[1]["spec"]["subdomain"] == name
    assert ps[1]["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    assert k.ok("get", "sts", name).splitlines()[1].split()[:2] == [name, "3/3"]
    k.ok("scale", "sts", name, "--replicas=1")
    wait_for(lambda: [p["metadata"]["name"] for p in pods(k, f"app={name}")] == [f"{name}-0"], timeout=60,
             what="scaled down to ordinal 0")
    k.ok("scale", "sts", name, "--replicas=3")
    k.ok("rollout", "status", f"sts/{name}", "--timeout=90s")
    k.ok("patch", "sts", name, "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}))
    k.ok("set", "env", f"sts/{name}", "WAVE=2")
    out = k.run("rollout", "status", f"sts/{name}", "--timeout=90s", timeout=100)
    assert out.returncode == 0 and "partitioned roll out complete: 1 new pods have been updated" in out.stdout, out
    sts = get_json(k, "sts", name)
    by_name = {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"] for p in pods(k, f"app={name}")}
    assert by_name[f"{name}-2"] == sts["status"]["updateRevision"]
    assert (by_name[f"{name}-0"] == by_name[f"{name}-1"] == sts["status"]["currentRevision"]
            != sts["status"]["updateRevision"])
    k.ok("patch", "sts", name, "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))
    out = k.run("rollout", "status", f"sts/{name}", "--timeout=120s", timeout=130)
    # kubectl takes the partitioned path whenever partition is set, 0 included (as against Kubernetes)
    assert out.returncode == 0 and "partitioned roll out complete: 3 new pods have been updated" in out.stdout, out
    sts = get_json(k, "sts", name)
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    assert sts["status"]["currentReplicas"] == sts["status"]["updatedReplicas"] == 3
    history = k.ok("rollout", "history", f"sts/{name}")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"], history
    shown = k.ok("rollout", "history", f"sts/{name}", "--revision=2")
    assert "Pod Template:" in shown and "WAVE:" in shown, shown
    k.ok("rollout", "undo", f"sts/{name}")
    k.ok("rollout", "status", f"sts/{name}", "--timeout=120s")
    history = k.ok("rollout", "history", f"sts/{name}")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["2", "3"], history
    assert all(not p["spec"]["containers"][0].get("env") for p in pods(k, f"app={name}"))
    k.ok("rollout", "restart", f"sts/{name}")
    k.ok("rollout", "status", f"sts/{name}", "--timeout=120s")
    described = k.ok("describe", "sts", name)
    assert "Pods Status:" in described and "SuccessfulCreate" in described, described
    k.ok("delete", "sts", name)
    k.ok("delete", "svc", name)


def test_statefulset_claims_come_before_pods(k_once):
    k = k_once
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}
    k.ok("apply", "-f", "-", input=workload("StatefulSet", "vol", replicas=2, serviceName="vol",
                                            podManagementPolicy="Parallel", volumeClaimTemplates=[claim]))
    try:
        claims = wait_for(lambda: (lambda items: items if len(items) == 2 else None)(
            get_json(k, "pvc", "-l", "app=vol")["items"]), timeout=30, what="one claim per ordinal")
        assert sorted(c["metadata"]["name"] for c in claims) == ["data-vol-0", "data-vol-1"]
        pod = wait_for(lambda: next(iter(get_json(k, "pods", "-l", "app=vol")["items"]), None), timeout=30,
                       what="a pod")
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{pod['metadata']['name']}"}} in \
            pod["spec"]["volumes"]
    finally:
        k.ok("delete", "sts", "vol")
    wait_for(lambda: not get_json(k, "pods", "-l", "app=vol")["items"], timeout=60, what="pods gone")
    assert len(get_json(k, "pvc", "-l", "app=vol")["items"]) == 2  # whenDeleted: Retain
    k.ok("delete", "pvc", "-l", "app=vol")


def test_replication_controller_scale_and_table(k):
    name = f"rc{suffix(k)}"
    k.ok("apply", "-f", "-", input=workload("ReplicationController", name, replicas=2))
    wait_for(lambda: len([p for p in pods(k, f"app={name}") if ready(p)]) == 2, timeout=60, what="two pods")
    k.ok("scale", "rc", name, "--replicas=3")
    wait_for(lambda: len([p for p in pods(k, f"app={name}") if ready(p)]) == 3, timeout=60, what="three pods")
    rows = k.ok("get", "rc", name, "-o", "wide").splitlines()
    assert rows[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    wait_for(lambda: k.ok("get", "rc", name).splitlines()[1].split()[1:4] == ["3", "3", "3"], timeout=30,
             what="rc status")
    k.ok("delete", "rc", name)
    wait_for(lambda: not pods(k, f"app={name}"), timeout=60, what="the pods go with the RC")


def test_bad_input_is_422(k):
    bad = yaml.safe_load(workload("DaemonSet", "bad"))
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    out = k.run("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert out.returncode == 1
    assert 'The DaemonSet "bad" is invalid: spec.template.metadata.labels: Invalid value: ' in out.stderr
    assert "`selector` does not match template `labels`" in out.stderr
    assert k.run("get", "ds", "bad").returncode == 1  # nothing half-created
    sts = yaml.safe_load(workload("StatefulSet", "fixed", serviceName="a"))
    k.ok("apply", "-f", "-", input=yaml.safe_dump(sts))
    sts["spec"]["serviceName"] = "b"
    out = k.run("apply", "-f", "-", input=yaml.safe_dump(sts))
    assert "spec: Forbidden: updates to statefulset spec for fields other than" in out.stderr, out.stderr
    k.ok("delete", "sts", "fixed")


def test_python_client_scales_a_statefulset(k_once, cluster):
    k = k_once
    require_module("kubernetes")
    from kubernetes import client, config

    api = client.AppsV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    body = yaml.safe_load(workload("StatefulSet", "pyweb", replicas=2, serviceName="pyweb",
                                   podManagementPolicy="Parallel"))
    api.create_namespaced_stateful_set("default", body)
    def ready_replicas() -> int:
        status = api.read_namespaced_stateful_set("pyweb", "default").status
        return (status.ready_replicas if status else 0) or 0
    wait_for(lambda: ready_replicas() == 2, timeout=60, what="two ready replicas")
    api.patch_namespaced_stateful_set_scale("pyweb", "default", {"spec": {"replicas": 0}})
    assert api.read_namespaced_stateful_set_scale("pyweb", "default").spec.replicas == 0
    wait_for(lambda: not pods(k, "app=pyweb"), timeout=60, what="scaled to zero")
    revs = api.list_namespaced_controller_revision("default", label_selector="app=pyweb").items
    assert [r.revision for r in revs] == [1] and revs[0].metadata.owner_references[0].kind == "StatefulSet"
    api.delete_namespaced_stateful_set("pyweb", "default")
