"""Server-side Table printing: the cells `kubectl get` shows, as Kubernetes 1.32 renders them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketkube.apiserver import tables
from pocketkube.apiserver.tables import human_duration, table

NOW = datetime(2026, 11, 26, 6, 24, 24, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, age: float = 296, **extra) -> dict:
    return {"name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "1567",
            "creationTimestamp": ago(age), **extra}


def cells(plural: str, obj: dict, group: str = "") -> list:
    return table(plural, group, [obj], NOW)["rows"][0]["cells"]


def wide_free(plural: str, obj: dict, group: str = "") -> list:
    """The cells of the columns shown without -o wide."""
    result = table(plural, group, [obj], NOW)
    return [cell for cell, column in zip(result["rows"][0]["cells"], result["columnDefinitions"])
            if column["priority"] == 0]


# --- human_duration -----------------------------------------------------------------------

DAY = 86400


@pytest.mark.parametrize("seconds, expected", [
    (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (0, "0s"), (0.9, "0s"), (59, "59s"),
    (119.99, "119s"), (120, "2m"), (150, "2m30s"), (188, "3m8s"), (599, "9m59s"), (600, "10m"),
    (659, "10m"), (179 * 60 + 59, "179m"), (3 * 3600, "3h"), (3 * 3600 + 15 * 60 + 59, "3h15m"),
    (8 * 3600 - 1, "7h59m"), (8 * 3600, "8h"), (48 * 3600 - 1, "47h"), (2 * DAY, "2d"),
    (2 * DAY + 5 * 3600, "2d5h"), (8 * DAY - 1, "7d23h"), (8 * DAY, "8d"), (729 * DAY, "729d"),
    (730 * DAY, "2y"), (731 * DAY, "2y1d"), (8 * 365 * DAY - 1, "7y364d"), (8 * 365 * DAY, "8y"),
    (20 * 365 * DAY, "20y"), (float("nan"), "<invalid>"),
])
def test_human_duration_matches_apimachinery(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_age_is_unknown_without_a_creation_timestamp() -> None:
    assert cells("configmaps", {"metadata": {"name": "c"}}) == ["c", 0, "<unknown>"]


def test_now_may_be_epoch_seconds() -> None:
    assert cells("configmaps", {"metadata": meta("c", age=5)}) == ["c", 0, "5s"]
    assert table("configmaps", "", [{"metadata": meta("c", age=5)}], NOW.timestamp())["rows"][0]["cells"] == ["c", 0, "5s"]


# --- table envelope -----------------------------------------------------------------------

SEED_SERVICE = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": meta("myapp-service", labels={"app": "myapp"},
                     managedFields=[{"manager": "kubectl-client-side-apply"}]),
    "spec": {"type": "NodePort", "clusterIP": "10.96.0.22", "clusterIPs": ["10.96.0.22"],
             "ports": [{"port": 80, "targetPort": 80, "nodePort": 30008, "protocol": "TCP"}],
             "selector": {"type": "front-end", "app": "myapp"}},
    "status": {"loadBalancer": {}},
}


def test_seed_service_table_is_what_kubectl_expects() -> None:
    result = table("services", "", [SEED_SERVICE], NOW, resource_version="1567", continue_token="tok")
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {"resourceVersion": "1567", "continue": "tok"}
    columns = result["columnDefinitions"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in columns] == [
        ("Name", "string", "name", 0), ("Type", "string", "", 0), ("Cluster-IP", "string", "", 0),
        ("External-IP", "string", "", 0), ("Port(s)", "string", "", 0), ("Age", "string", "", 0),
        ("Selector", "string", "", 1)]
    assert all(c["description"] for c in columns)
    row = result["rows"][0]
    assert row["cells"] == ["myapp-service", "NodePort", "10.96.0.22", "<none>", "80:30008/TCP",
                            "4m56s", "app=myapp,type=front-end"]
    assert row["object"] == {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in SEED_SERVICE["metadata"].items() if k != "managedFields"}}


def test_include_object_none_and_object() -> None:
    assert "object" not in table("services", "", [SEED_SERVICE], NOW, include_object="None")["rows"][0]
    full = table("services", "", [SEED_SERVICE], NOW, include_object="Object")["rows"][0]["object"]
    assert full == SEED_SERVICE


def test_watch_tables_after_the_first_carry_no_columns_and_empty_meta_is_omitted() -> None:
    result = table("services", "", [SEED_SERVICE], NOW, with_columns=False)
    assert "columnDefinitions" not in result
    assert result["metadata"] == {}


def test_empty_list_has_no_rows() -> None:
    result = table("pods", "", [], NOW, resource_version="7")
    assert result["rows"] == [] and len(result["columnDefinitions"]) == 9


def test_unknown_resource_prints_name_and_age() -> None:
    result = table("widgets", "example.com", [{"metadata": meta("w1", age=3600)}], NOW)
    assert [c["name"] for c in result["columnDefinitions"]] == ["Name", "Age"]
    assert result["rows"][0]["cells"] == ["w1", "60m"]


def test_a_printer_bug_degrades_the_row_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: dict, now: float) -> list:
        raise KeyError("boom")
    monkeypatch.setitem(tables.PRINTERS, ("", "services"),
                        tables.Printer(tables.SERVICE_COLUMNS, broken))
    assert cells("services", SEED_SERVICE) == ["myapp-service"] + [None] * 6


# --- services -----------------------------------------------------------------------------

def service(spec: dict, status: dict | None = None) -> dict:
    return {"metadata": meta("web"), "spec": spec, "status": status or {}}


def test_load_balancer_without_ingress_is_pending() -> None:
    svc = service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.5"],
                   "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"},
                             {"port": 443, "nodePort": 31443, "protocol": "TCP"}]})
    assert cells("services", svc)[:5] == ["web", "LoadBalancer", "10.96.0.5", "<pending>",
                                          "80:31000/TCP,443:31443/TCP"]


def test_load_balancer_ingress_is_deduplicated_sorted_and_followed_by_external_ips() -> None:
    ingress = [{"ip": "192.0.2.9"}, {"hostname": "lb.example.com"}, {"ip": "192.0.2.1"},
               {"ip": "192.0.2.9", "hostname": "ignored"}, {}]
    svc = service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.5"],
                   "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]},
                  {"loadBalancer": {"ingress": ingress}})
    assert cells("services", svc)[3] == "192.0.2.1,192.0.2.9,lb.example.com"
    svc["spec"]["externalIPs"] = ["198.51.100.7"]
    assert cells("services", svc)[3] == "192.0.2.1,192.0.2.9,lb.example.com,198.51.100.7"
    svc["status"] = {}
    assert cells("services", svc)[3] == "198.51.100.7"


@pytest.mark.parametrize("spec, cluster_ip, external_ip, ports", [
    ({"type": "ClusterIP", "clusterIPs": ["10.96.0.1"], "ports": [{"port": 443, "protocol": "TCP"}]},
     "10.96.0.1", "<none>", "443/TCP"),
    ({"type": "ClusterIP", "clusterIP": "10.96.0.2", "externalIPs": ["1.2.3.4", "5.6.7.8"],
      "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
     "10.96.0.2", "1.2.3.4,5.6.7.8", "53/UDP,53/TCP"),
    ({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}, "None", "<none>", "<none>"),
    ({"type": "ExternalName", "externalName": "db.example.com"}, "<none>", "db.example.com", "<none>"),
    ({"type": "Weird"}, "<none>", "<unknown>", "<none>"),
])
def test_service_cells(spec: dict, cluster_ip: str, external_ip: str, ports: str) -> None:
    assert cells("services", service(spec))[2:5] == [cluster_ip, external_ip, ports]


def test_service_without_selector_shows_none() -> None:
    assert cells("services", service({"type": "ClusterIP"}))[6] == "<none>"


# --- pods ---------------------------------------------------------------------------------

def pod(status: dict, spec: dict | None = None, **metadata) -> dict:
    return {"metadata": meta("myapp-pod", age=30, **metadata),
            "spec": spec or {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status}


RUNNING = {"running": {"startedAt": ago(20)}}


def test_pending_unscheduled_pod() -> None:
    p = pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]})
    assert cells("pods", p) == ["myapp-pod", "0/1", "Pending", "0", "30s",
                                "<none>", "<none>", "<none>", "<none>"]


def test_scheduled_pod_creating_its_container() -> None:
    p = pod({"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "ContainerCreating"}}}]},
        spec={"nodeName": "node-1", "containers": [{"name": "app"}]})
    assert cells("pods", p)[:7] == ["myapp-pod", "0/1", "ContainerCreating", "0", "30s", "<none>", "node-1"]


def test_running_ready_pod() -> None:
    p = pod({"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
             "nominatedNodeName": "node-2",
             "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "state": RUNNING}]},
            spec={"nodeName": "node-1", "containers": [{"name": "app"}]})
    assert cells("pods", p) == ["myapp-pod", "1/1", "Running", "0", "30s",
                                "10.244.0.5", "node-1", "node-2", "<none>"]


def test_pod_ip_falls_back_to_pod_ip_field() -> None:
    assert cells("pods", pod({"phase": "Running", "podIP": "10.244.0.9"}))[5] == "10.244.0.9"


def test_crash_looping_pod_shows_restarts_with_age_of_last_restart() -> None:
    p = pod({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 4,
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(65)}}}]})
    assert wide_free("pods", p) == ["myapp-pod", "0/1", "CrashLoopBackOff", "4 (65s ago)", "30s"]


def test_restarts_without_known_termination_time_are_a_bare_number() -> None:
    p = pod({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": True, "restartCount": 2, "state": RUNNING}]})
    assert cells("pods", p)[1:4] == ["1/1", "Running", "2"]


def test_deleting_pod_is_terminating_unless_terminal_or_node_lost() -> None:
    running = {"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": True, "restartCount": 0, "state": RUNNING}]}
    assert cells("pods", pod(running, deletionTimestamp=ago(1)))[2] == "Terminating"
    assert cells("pods", pod({"phase": "Succeeded"}, deletionTimestamp=ago(1)))[2] == "Succeeded"
    lost = dict(running, reason="NodeLost")
    assert cells("pods", pod(lost, deletionTimestamp=ago(1)))[2] == "Unknown"
    assert cells("pods", pod(lost))[2] == "NodeLost"  # not deleting: status.reason stands


@pytest.mark.parametrize("state, expected", [
    ({"terminated": {"exitCode": 0, "reason": "Completed"}}, "Completed"),
    ({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "OOMKilled"),
    ({"terminated": {"exitCode": 2}}, "ExitCode:2"),
    ({"terminated": {"exitCode": 0, "signal": 9}}, "Signal:9"),
    ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
    ({"waiting": {}}, "Running"),
])
def test_container_state_overrides_phase(state: dict, expected: str) -> None:
    p = pod({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0, "state": state}]})
    assert cells("pods", p)[2] == expected


def test_first_container_reason_wins() -> None:
    p = pod({"phase": "Pending", "containerStatuses": [
        {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
        {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
        spec={"containers": [{"name": "a"}, {"name": "b"}]})
    assert cells("pods", p)[1:3] == ["0/2", "ImagePullBackOff"]


def test_completed_with_a_running_container_is_running_or_not_ready() -> None:
    statuses = [{"name": "a", "ready": True, "state": RUNNING},
                {"name": "b", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    ready = {"type": "Ready", "status": "True"}
    assert cells("pods", pod({"phase": "Running", "containerStatuses": statuses,
                              "conditions": [ready]}, spec))[1:3] == ["1/2", "Running"]
    assert cells("pods", pod({"phase": "Running", "containerStatuses": statuses}, spec))[2] == "NotReady"


def init_pod(init_statuses: list[dict], init_specs: list[dict] | None = None, **status) -> dict:
    spec = {"initContainers": init_specs or [{"name": "init-a"}, {"name": "init-b"}],
            "containers": [{"name": "app"}]}
    return pod({"phase": "Pending", "initContainerStatuses": init_statuses, **status}, spec)


@pytest.mark.parametrize("init_statuses, expected", [
    ([{"name": "init-a", "state": RUNNING}, {"name": "init-b", "state": {"waiting": {"reason": "PodInitializing"}}}],
     "Init:0/2"),
    ([{"name": "init-a", "state": {"terminated": {"exitCode": 0}}}, {"name": "init-b", "state": RUNNING}],
     "Init:1/2"),
    ([{"name": "init-a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}], "Init:CrashLoopBackOff"),
    ([{"name": "init-a", "state": {"terminated": {"exitCode": 3}}}], "Init:ExitCode:3"),
    ([{"name": "init-a", "state": {"terminated": {"exitCode": 1, "signal": 15}}}], "Init:Signal:15"),
    ([{"name": "init-a", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}], "Init:Error"),
])
def test_init_container_states(init_statuses: list[dict], expected: str) -> None:
    assert cells("pods", init_pod(init_statuses))[2] == expected


def test_init_restarts_count_until_initialized() -> None:
    crashing = {"name": "init-a", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20)}}}
    assert cells("pods", init_pod([crashing]))[2:4] == ["Init:CrashLoopBackOff", "2 (20s ago)"]
    # Once the Initialized condition is true only app (and sidecar) restarts count; a merely
    # running app container does not override the init reason (as upstream).
    app = {"name": "app", "ready": True, "restartCount": 4, "state": RUNNING,
           "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}}
    initialized = init_pod([crashing], containerStatuses=[app],
                           conditions=[{"type": "Initialized", "status": "True"}])
    assert cells("pods", initialized)[1:4] == ["1/1", "Init:CrashLoopBackOff", "4 (10s ago)"]


def test_sidecar_init_containers_count_as_containers() -> None:
    sidecar = {"name": "proxy", "restartPolicy": "Always"}
    statuses = [{"name": "proxy", "started": True, "ready": True, "restartCount": 1, "state": RUNNING}]
    p = init_pod(statuses, [sidecar], phase="Running",
                 containerStatuses=[{"name": "app", "ready": True, "restartCount": 0, "state": RUNNING}])
    assert cells("pods", p)[1:4] == ["2/2", "Running", "1"]


def test_scheduling_gated_and_readiness_gates() -> None:
    p = pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
        {"type": "example.com/lb", "status": "True"}]},
        spec={"containers": [{"name": "app"}],
              "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]})
    row = cells("pods", p)
    assert row[2] == "SchedulingGated" and row[8] == "1/2"


def test_finished_pods_carry_completed_row_conditions() -> None:
    done = table("pods", "", [pod({"phase": "Succeeded"}), pod({"phase": "Failed"}),
                              pod({"phase": "Running"})], NOW)["rows"]
    assert [r.get("conditions", [{}])[0].get("reason") for r in done] == ["Succeeded", "Failed", None]


# --- nodes --------------------------------------------------------------------------------

def node(ready: str | None, **extra) -> dict:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {"metadata": meta("node-1", age=5 * DAY, labels=extra.pop("labels", {})),
            "spec": extra.pop("spec", {}),
            "status": {"conditions": conditions, **extra}}


def test_ready_node_with_wide_columns() -> None:
    n = node("True", labels={"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x"},
             addresses=[{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "127.0.1.1"}],
             nodeInfo={"kubeletVersion": "v1.32.0", "osImage": "Debian 12", "kernelVersion": "6.1.0",
                       "containerRuntimeVersion": "pocketkube://0.1"})
    assert cells("nodes", n) == ["node-1", "Ready", "control-plane", "5d", "v1.32.0", "127.0.1.1", "<none>",
                                 "Debian 12", "6.1.0", "pocketkube://0.1"]


@pytest.mark.parametrize("ready, unschedulable, expected", [
    ("False", False, "NotReady"), ("Unknown", False, "NotReady"), (None, False, "Unknown"),
    ("True", True, "Ready,SchedulingDisabled"), (None, True, "Unknown,SchedulingDisabled"),
])
def test_node_status(ready: str | None, unschedulable: bool, expected: str) -> None:
    assert cells("nodes", node(ready, spec={"unschedulable": unschedulable}))[1] == expected


def test_node_roles_are_sorted_and_include_the_legacy_label() -> None:
    n = node("True", labels={"node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge",
                             "node-role.kubernetes.io/control-plane": ""})
    row = cells("nodes", n)
    assert row[2] == "control-plane,edge,worker"
    assert row[7:] == ["<unknown>", "<unknown>", "<unknown>"]


# --- namespaces, leases -------------------------------------------------------------------

def test_namespace_and_lease() -> None:
    assert cells("namespaces", {"metadata": meta("kube-system", age=DAY), "status": {"phase": "Active"}}) == [
        "kube-system", "Active", "24h"]
    lease = {"metadata": meta("node-1", age=90), "spec": {"holderIdentity": "node-1"}}
    assert cells("leases", lease, "coordination.k8s.io") == ["node-1", "node-1", "90s"]
    assert cells("leases", {"metadata": meta("free")}, "coordination.k8s.io")[1] == ""


# --- deployments and replica sets ---------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "sidecar", "image": "busybox"}]}}


def test_deployment_cells() -> None:
    deployment = {"metadata": meta("web", age=3600),
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}},
                           "template": TEMPLATE},
                  "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert cells("deployments", deployment, "apps") == [
        "web", "2/3", 3, 2, "60m", "web,sidecar", "nginx:1.27,busybox", "app=web,tier=fe"]
    fresh = {"metadata": meta("new"), "spec": {"replicas": 2, "template": TEMPLATE}, "status": {}}
    assert cells("deployments", fresh, "apps")[1:4] == ["0/2", 0, 0]
    assert cells("deployments", fresh, "apps")[7] == ""


def test_replica_set_cells() -> None:
    rs = {"metadata": meta("web-5d9f", age=3600),
          "spec": {"replicas": 3, "template": TEMPLATE, "selector": {
              "matchLabels": {"app": "web"},
              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                   {"key": "canary", "operator": "DoesNotExist"}]}},
          "status": {"replicas": 3, "readyReplicas": 1}}
    assert cells("replicasets", rs, "apps") == [
        "web-5d9f", 3, 3, 1, "60m", "web,sidecar", "nginx:1.27,busybox", "app=web,!canary,tier in (be,fe)"]


@pytest.mark.parametrize("selector, formatted", [
    (None, "<none>"), ({}, "<none>"), ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]},
                           {"key": "app", "operator": "Exists"}]}, "app,env notin (prod)"),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": []}]}, "<error>"),
    ({"matchExpressions": [{"key": "env", "operator": "Like", "values": ["x"]}]}, "<error>"),
    ({"matchLabels": {"bad key": "x"}}, "<error>"),
    ({"matchLabels": {"example.com/app": "web"}}, "example.com/app=web"),
    ("app=web", "<error>"),
    ({"matchExpressions": [{"key": "env", "operator": ["In"], "values": ["x"]}]}, "<error>"),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["b", "a", "b"]}]}, "env in (a,b)"),
    ({"matchLabels": {"a": "x" * 64}}, "<error>"),
    ({"matchLabels": {"/a": "x"}}, "<error>"),
])
def test_format_label_selector(selector: object, formatted: str) -> None:
    assert tables.format_label_selector(selector) == formatted


def test_invalid_deployment_selector_prints_invalid() -> None:
    deployment = {"metadata": meta("web"), "spec": {"selector": {"matchLabels": {"a": ["x"]}}}}
    assert cells("deployments", deployment, "apps")[7] == "<invalid>"


# --- endpoints and endpoint slices --------------------------------------------------------

def endpoints(subsets: list[dict]) -> dict:
    return {"metadata": meta("web", age=60), "subsets": subsets}


@pytest.mark.parametrize("subsets, expected", [
    ([], "<none>"),
    ([{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 8080, "protocol": "TCP"}]}], "10.244.0.5:8080"),
    ([{"notReadyAddresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 8080}]}], ""),
    ([{"addresses": [{"ip": f"10.244.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
     "10.244.0.1:80,10.244.0.2:80,10.244.0.3:80 + 2 more..."),
    ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}],
     "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
    ([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}], "[fd00::1]:80"),
    ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}], "10.0.0.1,10.0.0.2"),
])
def test_endpoints_cell(subsets: list[dict], expected: str) -> None:
    assert cells("endpoints", endpoints(subsets)) == ["web", expected, "60s"]


def test_endpoint_slice_cells() -> None:
    eps = {"metadata": meta("web-abc12", age=60), "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}, {},
                     {"port": 9000}],
           "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
                         {"addresses": ["10.244.0.6"], "conditions": {"ready": False}}]}
    assert cells("endpointslices", eps, "discovery.k8s.io") == [
        "web-abc12", "IPv4", "8080,metrics,* + 1 more...", "10.244.0.5,10.244.0.6", "60s"]
    empty = {"metadata": meta("web-x"), "addressType": "IPv4", "endpoints": None}
    assert cells("endpointslices", empty, "discovery.k8s.io")[2:4] == ["<unset>", "<unset>"]


# --- events -------------------------------------------------------------------------------

def test_event_cells() -> None:
    event = {"metadata": meta("myapp-pod.17f", age=120), "type": "Normal", "reason": "Scheduled",
             "message": "Successfully assigned default/myapp-pod to node-1\n",
             "involvedObject": {"kind": "Pod", "name": "myapp-pod", "fieldPath": "spec.containers{app}"},
             "source": {"component": "kubelet", "host": "node-1"},
             "firstTimestamp": ago(120), "lastTimestamp": ago(30), "count": 3}
    assert cells("events", event) == [
        "30s", "Normal", "Scheduled", "pod/myapp-pod", "spec.containers{app}", "kubelet, node-1",
        "Successfully assigned default/myapp-pod to node-1", "2m", 3, "myapp-pod.17f"]
    columns = table("events", "", [event], NOW)["columnDefinitions"]
    assert [c["name"] for c in columns if c["priority"] == 0] == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert columns[-1]["format"] == "name"


def test_new_style_event_falls_back_to_event_time_and_reporting_controller() -> None:
    event = {"metadata": meta("e"), "type": "Warning", "reason": "FailedScheduling",
             "involvedObject": {"kind": "Node"}, "eventTime": "2026-11-26T06:24:14.123456Z",
             "reportingComponent": "default-scheduler", "reportingInstance": ""}
    row = cells("events", event)
    assert row[0] == "9s" and row[3] == "node" and row[5] == "default-scheduler"
    assert row[7] == "9s" and row[8] == 1
    event["series"] = {"count": 7, "lastObservedTime": "2026-11-26T06:24:22.000000Z"}
    assert cells("events", event)[0] == "2s" and cells("events", event)[8] == 7


# --- robustness: odd objects never raise --------------------------------------------------

ODD_OBJECTS = [
    {}, {"metadata": None}, {"metadata": "x", "spec": 3, "status": []},
    {"metadata": {"name": 5, "creationTimestamp": "not-a-time", "labels": ["a"]}},
    {"metadata": {"name": "n", "creationTimestamp": 12, "deletionTimestamp": True},
     "spec": {"containers": "nope", "initContainers": [None, 1], "ports": [1, "a"],
              "selector": "app=web", "template": [], "readinessGates": {"a": 1}},
     "status": {"containerStatuses": [{"state": "running"}, {"state": {"waiting": "x"}}],
                "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}}],
                "conditions": "Ready", "loadBalancer": {"ingress": [{"ip": 7}]},
                "nodeInfo": None, "addresses": [None]}},
    {"spec": {"type": "LoadBalancer", "ports": [{"port": "80", "nodePort": True}], "externalIPs": [1]},
     "subsets": [{"addresses": [{"ip": None}], "ports": [{"port": None}]}], "subsets_extra": 1},
    {"subsets": "x", "endpoints": [{"addresses": "1.2.3.4"}], "ports": [{"port": "x", "name": 3}],
     "involvedObject": [], "series": {"count": "2"}, "count": None, "message": 4, "source": "s"},
]

ALL_PRINTERS = sorted(tables.PRINTERS.items()) + [(("", "nosuchkinds"), tables.DEFAULT_PRINTER)]


@pytest.mark.parametrize("key, printer", ALL_PRINTERS, ids=lambda v: v[1] if isinstance(v, tuple) else "")
@pytest.mark.parametrize("obj", ODD_OBJECTS)
def test_cells_never_raise_on_odd_objects(key: tuple[str, str], printer: tables.Printer, obj: dict) -> None:
    row = printer.cells(obj, NOW.timestamp())  # called directly: the safety net must not hide bugs
    assert len(row) == len(printer.columns)


SAMPLES = {
    ("", "pods"): [init_pod([{"name": "init-a", "restartCount": 1, "state": RUNNING,
                              "lastState": {"terminated": {"finishedAt": ago(3)}}}],
                            [{"name": "init-a", "restartPolicy": "Always"}],
                            containerStatuses=[{"name": "app", "ready": True, "state": RUNNING}],
                            conditions=[{"type": "Ready", "status": "True"}], podIPs=[{"ip": "10.0.0.1"}])],
    ("", "services"): [SEED_SERVICE],
    ("", "nodes"): [node("True", labels={"kubernetes.io/role": "x"}, addresses=[{"type": "InternalIP"}])],
    ("", "endpoints"): [endpoints([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}])],
    ("discovery.k8s.io", "endpointslices"): [
        {"metadata": meta("s"), "addressType": "IPv4", "ports": [{"port": 80}],
         "endpoints": [{"addresses": ["10.0.0.1"]}]}],
    ("apps", "deployments"): [{"metadata": meta("d"), "spec": {"replicas": 1, "template": TEMPLATE,
                                                              "selector": {"matchExpressions": [
                                                                  {"key": "a", "operator": "In", "values": ["b"]}]}}}],
    ("", "events"): [{"metadata": meta("e"), "involvedObject": {"kind": "Pod", "name": "p"},
                      "series": {"count": 2, "lastObservedTime": ago(1)}, "source": {"host": "h"}}],
}

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3),
                 st.floats(allow_nan=True), st.just([]), st.just({}), st.lists(st.none(), max_size=2),
                 st.just([{"x": 1}]))


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


def _replace(value: object, path: tuple, junk: object) -> object:
    if not path:
        return junk
    value = copy.deepcopy(value)
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = junk
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cells_never_raise_when_any_field_of_a_real_object_is_junk(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(SAMPLES)))
    obj = data.draw(st.sampled_from(SAMPLES[key]))
    for _ in range(data.draw(st.integers(1, 3))):
        obj = _replace(obj, data.draw(st.sampled_from(_paths(obj))), data.draw(JUNK))
    printer = tables.PRINTERS[key]
    row = printer.cells(obj if isinstance(obj, dict) else {}, NOW.timestamp())
    assert len(row) == len(printer.columns)


# --- the printers package -----------------------------------------------------------------

def test_each_group_module_prints_only_its_own_group() -> None:
    import importlib
    import pkgutil

    import pocketkube.apiserver.tables as package

    modules = [importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    printing = [m for m in modules if getattr(m, "PRINTERS", None)]
    assert {m.__name__.rsplit(".", 1)[1] for m in printing} >= {"core", "apps", "discovery", "coordination", "batch", "rbac",
                                                                "storage", "policy"}
    for module in printing:
        assert len({g for g, _ in module.PRINTERS}) == 1, module.__name__
    # Every printer comes from a group module (core's volumes.py and core_quota.py are core's).
    assert set().union(*(m.PRINTERS for m in printing)) == set(tables.PRINTERS)


def test_render_draws_with_the_printer_it_is_given() -> None:
    from pocketkube.apiserver.tables.base import render

    printer = tables.Printer((tables.Column("Name", ""), tables.Column("Kind", "")),
                             lambda obj, now: [obj["metadata"]["name"], obj.get("kind")])
    result = render(printer, [{"kind": "Widget", "metadata": {"name": "w"}}], NOW, include_object="None",
                    continue_token="abc")
    assert result["metadata"] == {"continue": "abc"}
    assert result["rows"] == [{"cells": ["w", "Widget"]}]
