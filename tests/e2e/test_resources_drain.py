"""`kubectl drain` honours a PodDisruptionBudget (cordon, evictions, retry on 429), and the
generators `kubectl create pdb|quota` (protobuf bodies), with kubectl 1.32 and 1.37, on a
process-runtime cluster with address ranges of its own."""

from __future__ import annotations

import json

import pytest

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import NGINX, have_nginx, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

pytestmark = [requires(have_nginx(), NGINX), pytest.mark.slow, pytest.mark.timeout(300)]
RANGES = dict(node_ip_base="127.0.29.0", pod_cidr_base="127.218.0.0/16", service_cidr="127.228.0.0/16",
              lb_pool="127.238.0.0/24")


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-drain-", nodes=2, **RANGES) as c:
        yield c


@pytest.fixture(params=sorted(kubectl_binaries()))
def k(request, cluster, tmp_path):
    kc = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig, cwd=tmp_path)
    kc.version = request.param
    yield kc
    kc.close()


def ready_pods(k: Kubectl, selector: str) -> list[dict]:
    return [p for p in get_json(k, "pods", "-l", selector)["items"]
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")]


def test_generators_create_quota_and_pdb(k):
    suffix = k.version.replace(".", "-").replace("kubectl-", "")
    out = k.ok("create", "quota", f"q-{suffix}", "--hard=pods=100,requests.cpu=10")
    assert out.strip() == f"resourcequota/q-{suffix} created"
    rq = get_json(k, "resourcequota", f"q-{suffix}")
    assert rq["spec"]["hard"] == {"pods": "100", "requests.cpu": "10"}
    table = k.ok("get", "quota", f"q-{suffix}").splitlines()
    assert table[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    k.ok("delete", "quota", f"q-{suffix}")
    out = k.ok("create", "pdb", f"b-{suffix}", "--selector=app=nothing", "--min-available=50%")
    assert out.strip() == f"poddisruptionbudget.policy/b-{suffix} created"
    pdb = get_json(k, "pdb", f"b-{suffix}")
    assert pdb["spec"] == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "nothing"}}}
    wait_for(lambda: get_json(k, "pdb", f"b-{suffix}").get("status", {}).get("observedGeneration") == 1,
             timeout=15, what="the disruption controller to see the budget")
    header = k.ok("get", "pdb", f"b-{suffix}").splitlines()[0].split()
    assert header == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    k.ok("delete", "pdb", f"b-{suffix}")


def test_drain_waits_for_the_budget(k, cluster):
    app = "drain-" + k.version.replace(".", "-").replace("kubectl-", "")
    k.ok("create", "deployment", app, "--image=nginx", "--replicas=2")
    wait_for(lambda: len(ready_pods(k, f"app={app}")) == 2, timeout=60, what="two ready replicas")
    k.ok("create", "pdb", app, f"--selector=app={app}", "--max-unavailable=0")
    wait_for(lambda: (get_json(k, "pdb", app).get("status") or {}).get("currentHealthy") == 2, timeout=20,
             what="the budget's status")
    node = ready_pods(k, f"app={app}")[0]["spec"]["nodeName"]
    blocked = k.run("drain", node, "--ignore-daemonsets", "--timeout=4s", f"--pod-selector=app={app}")
    assert blocked.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in blocked.stdout + blocked.stderr
    spec = json.loads(k.ok("get", "node", node, "-o", "json"))["spec"]
    assert spec.get("unschedulable") is True  # cordoned first
    k.ok("patch", "pdb", app, "--type=merge", "-p", '{"spec":{"maxUnavailable":1}}')
    wait_for(lambda: (get_json(k, "pdb", app).get("status") or {}).get("disruptionsAllowed") == 1, timeout=20,
             what="the budget to allow one disruption")
    out = k.ok("drain", node, "--ignore-daemonsets", "--timeout=60s", f"--pod-selector=app={app}")
    assert f"node/{node} drained" in out
    wait_for(lambda: len(ready_pods(k, f"app={app}")) == 2
             and all(p["spec"]["nodeName"] != node for p in ready_pods(k, f"app={app}")),
             timeout=60, what="the evicted replica back on the other node")
    k.ok("uncordon", node)
    k.ok("delete", "pdb", app)
    k.ok("delete", "deployment", app)


def test_nodes_share_the_machine_and_too_big_pods_wait(k, cluster):
    from pocketkube.agent.node import machine_share

    cpu, memory = machine_share(2)
    node = get_json(k, "node", "node-1")
    assert node["status"]["capacity"]["cpu"] == cpu and node["status"]["allocatable"]["memory"] == memory
    name = "huge-" + k.version.replace(".", "-").replace("kubectl-", "")
    k.ok("run", name, "--image=nginx", "--overrides",
         json.dumps({"spec": {"containers": [{"name": name, "image": "nginx",
                                              "resources": {"requests": {"cpu": "64"}}}]}}))
    expected = "0/2 nodes are available: 2 Insufficient cpu."

    def condition_message() -> str:
        conds = get_json(k, "pod", name).get("status", {}).get("conditions") or []
        return next((c.get("message", "") for c in conds if c["type"] == "PodScheduled"), "")
    wait_for(lambda: condition_message().startswith(expected), timeout=20, what="the FailedScheduling condition")
    events = get_json(k, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "FailedScheduling" and e["message"].startswith(expected) for e in events)
    k.ok("delete", "pod", name, "--wait=false")


def test_limitrange_and_quota_with_kubectl(k):
    ns = "rq-" + k.version.replace(".", "-").replace("kubectl-", "")
    k.ok("create", "namespace", ns)
    k.ok("create", "quota", "q", "-n", ns, "--hard=pods=1")
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": ns},
          "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"}}]}}
    k.ok("apply", "-f", "-", input=json.dumps(lr))
    big = k.run("run", "big", "-n", ns, "--image=nginx", "--overrides",
                json.dumps({"spec": {"containers": [{"name": "big", "image": "nginx",
                                                     "resources": {"limits": {"cpu": "2"}}}]}}))
    assert big.returncode != 0
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in big.stderr
    k.ok("run", "one", "-n", ns, "--image=nginx")
    assert get_json(k, "pod", "one", "-n", ns)["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m"}
    two = k.run("run", "two", "-n", ns, "--image=nginx")
    assert "exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1" in two.stderr
    k.ok("delete", "pod", "one", "-n", ns, "--grace-period=0", "--force")
    wait_for(lambda: get_json(k, "quota", "q", "-n", ns)["status"]["used"] == {"pods": "0"}, timeout=20,
             what="the quota controller to give the pod back")
    k.ok("delete", "namespace", ns, "--wait=false")


def test_kubectl_top_nodes_and_pods(k):
    app = "top-" + k.version.replace(".", "-").replace("kubectl-", "")
    k.ok("create", "deployment", app, "--image=nginx")
    wait_for(lambda: len(ready_pods(k, f"app={app}")) == 1, timeout=60, what="a ready pod")
    out = k.ok("top", "nodes")
    rows = [r.split() for r in out.strip().splitlines()]
    assert rows[0][:3] == ["NAME", "CPU(cores)", "CPU(%)"] or rows[0][:2] == ["NAME", "CPU(cores)"], out
    assert {r[0] for r in rows[1:]} == {"node-1", "node-2"}
    assert all(r[1].endswith("m") and r[3].endswith("Mi") for r in rows[1:]), out
    pod = ready_pods(k, f"app={app}")[0]["metadata"]["name"]
    out = wait_for(lambda: (r := k.run("top", "pod", pod)).returncode == 0 and r.stdout, timeout=20,
                   what="kubectl top pod")
    rows = [r.split() for r in out.strip().splitlines()]
    assert rows[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"] and rows[1][0] == pod, out
    assert int(rows[1][2].removesuffix("Mi")) > 0, out
    out = k.ok("top", "pod", pod, "--containers")
    assert out.strip().splitlines()[1].split()[:2] == [pod, "nginx"], out
    k.ok("delete", "deployment", app)


def test_python_client_budget_quota_and_eviction(cluster):
    from pocketkube.testing.requires import require_module

    require_module("kubernetes")
    from kubernetes import client, config

    api = config.new_client_from_config(str(cluster.kubeconfig))
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    ns = "py-res"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_resource_quota(ns, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="q"), spec=client.V1ResourceQuotaSpec(hard={"pods": "5"})))
    labels = {"app": "py"}
    for name in ("a", "b"):
        core.create_namespaced_pod(ns, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")])))
    wait_for(lambda: all(any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
                         for p in core.list_namespaced_pod(ns).items), timeout=60, what="two ready pods")
    policy.create_namespaced_pod_disruption_budget(ns, client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="b"),
        spec=client.V1PodDisruptionBudgetSpec(min_available=1, selector=client.V1LabelSelector(match_labels=labels))))
    wait_for(lambda: (s := policy.read_namespaced_pod_disruption_budget("b", ns).status) is not None
             and s.disruptions_allowed == 1, timeout=20, what="one disruption allowed")
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="a", namespace=ns),
                                 delete_options=client.V1DeleteOptions(grace_period_seconds=0))
    core.create_namespaced_pod_eviction("a", ns, eviction)
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod_eviction("b", ns, client.V1Eviction(metadata=client.V1ObjectMeta(name="b")))
    assert e.value.status == 429
    assert json.loads(e.value.body)["details"]["causes"][0]["reason"] == "DisruptionBudget"
    used = wait_for(lambda: (core.read_namespaced_resource_quota("q", ns).status.used or {}).get("pods") == "1",
                    timeout=20, what="the quota to count one pod")
    assert used
    core.delete_namespace(ns)
