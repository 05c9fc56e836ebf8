"""Everyday kubectl flows beyond create/get/apply, with both kubectl builds, against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import yaml

from pocketkube.testing.waits import wait_for

POD = """apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: NAME}}
spec: {containers: [{name: c, image: nginx}]}
"""


def svc_manifest(name: str, port: int = 80, namespace: str = "default", labels: dict | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": namespace, "labels": labels or {"flow": name}},
                           "spec": {"selector": {"app": name}, "ports": [{"port": port}]}})


def deleted_line(kind: str, name: str, namespace: str = "default") -> re.Pattern:
    # kubectl 1.37 adds the namespace to the message.
    return re.compile(rf'^{kind} "{name}" deleted( from {namespace} namespace)?$')


def background(kubectl, *args: str) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(kubectl.kubeconfig), KUBECACHEDIR=kubectl.cache, HOME=kubectl.cache)
    return subprocess.Popen([kubectl.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=kubectl.cwd)


@pytest.fixture
def namespace(kubectl):
    name = "flows-" + kubectl.version.replace(".", "-").replace("kubectl-", "")
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "--all", "svc", "-n", name, "--wait=false")


def test_delete_pod_without_node_is_immediate(kubectl):
    kubectl.ok("apply", "-f", "-", input=POD.replace("NAME", "flow-pod"))
    started = time.monotonic()
    out = kubectl.ok("delete", "pod", "flow-pod")
    assert deleted_line("pod", "flow-pod").match(out.strip()), out
    assert time.monotonic() - started < 5
    missing = kubectl.run("get", "pod", "flow-pod")
    assert 'Error from server (NotFound): pods "flow-pod" not found' in missing.stderr


def test_wait_for_delete(kubectl):
    kubectl.ok("apply", "-f", "-", input=POD.replace("NAME", "waited"))
    waiter = background(kubectl, "wait", "--for=delete", "pod/waited", "--timeout=20s", "-v=6")
    # -v=6 logs each request once answered: delete only once kubectl's watch of the pod is open
    # (before its first list, a missing pod would count as deleted already).
    assert waiter.stderr is not None
    wait_for(lambda: "watch=true" in waiter.stderr.readline(), timeout=20, interval=0, what="kubectl's watch")
    kubectl.ok("delete", "pod", "waited", "--wait=false")
    out, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 0, err
    assert out.strip() == "pod/waited condition met"


def test_get_watch_receives_a_later_change(kubectl):
    kubectl.ok("apply", "-f", "-", input=svc_manifest("watched"))
    try:
        watcher = background(kubectl, "get", "svc", "watched", "-w", "--request-timeout=3s")
        # The header and the first row come from kubectl's read of the Service; its watch starts
        # from that read's resourceVersion, so a change made after them is always seen.
        assert watcher.stdout is not None
        first = watcher.stdout.readline() + watcher.stdout.readline()
        kubectl.ok("label", "svc", "watched", "changed=yes")
        out, err = watcher.communicate(timeout=20)
        out = first + out
        lines = out.strip().splitlines()
        assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], out
        rows = [line.split() for line in lines[1:]]
        assert len(rows) == 2 and all(r[0] == "watched" and r[4] == "80/TCP" for r in rows), out + err
    finally:
        kubectl.run("delete", "svc", "watched", "--wait=false")


def test_output_formats_and_sorting(kubectl, namespace):
    for name, port in (("b-svc", 8080), ("c-svc", 80), ("a-svc", 9090)):
        kubectl.ok("apply", "-f", "-", input=svc_manifest(name, port, namespace, {"flow": "sort"}))
    names = kubectl.ok("get", "svc", "-n", namespace, "-l", "flow=sort", "-o", "name")
    assert names.split() == ["service/a-svc", "service/b-svc", "service/c-svc"]
    by_port = kubectl.ok("get", "svc", "-n", namespace, "-l", "flow=sort", "--sort-by=.spec.ports[0].port",
                         "-o", "name")
    assert by_port.split() == ["service/c-svc", "service/b-svc", "service/a-svc"]
    jsonpath = kubectl.ok("get", "svc", "-n", namespace, "-l", "flow=sort",
                          "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.ports[0].port} {end}")
    assert jsonpath.split() == ["a-svc=9090", "b-svc=8080", "c-svc=80"]
    table = kubectl.ok("get", "svc", "-n", namespace, "--sort-by=.metadata.name", "-l", "flow=sort")
    assert [r.split()[0] for r in table.strip().splitlines()[1:]] == ["a-svc", "b-svc", "c-svc"]


def test_replace(kubectl, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(svc_manifest("replaced"))
    kubectl.ok("create", "-f", str(path))
    try:
        path.write_text(svc_manifest("replaced", 81))
        assert kubectl.ok("replace", "-f", str(path)).strip() == "service/replaced replaced"
        assert kubectl.ok("get", "svc", "replaced", "-o", "jsonpath={.spec.ports[0].port}") == "81"
    finally:
        kubectl.run("delete", "-f", str(path), "--wait=false")


def test_server_side_apply(kubectl, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(svc_manifest("ssa"))
    try:
        assert kubectl.ok("apply", "--server-side", "-f", str(path)).strip() == "service/ssa serverside-applied"
        manifest = yaml.safe_load(path.read_text())
        manifest["metadata"]["labels"]["extra"] = "yes"
        path.write_text(yaml.safe_dump(manifest))
        assert kubectl.ok("apply", "--server-side", "-f", str(path)).strip() == "service/ssa serverside-applied"
        live = json.loads(kubectl.ok("get", "svc", "ssa", "-o", "json"))
        assert live["metadata"]["labels"] == {"flow": "ssa", "extra": "yes"}
        assert live["spec"]["ports"][0]["port"] == 80
    finally:
        kubectl.run("delete", "-f", str(path), "--wait=false")


def test_diff_uses_a_dry_run_and_changes_nothing(kubectl, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(svc_manifest("diffed"))
    kubectl.ok("apply", "-f", str(path))
    try:
        same = kubectl.run("diff", "-f", str(path))
        assert same.returncode == 0 and same.stdout == "", same.stderr
        before = json.loads(kubectl.ok("get", "svc", "diffed", "-o", "json"))
        path.write_text(svc_manifest("diffed", 81))
        changed = kubectl.run("diff", "-f", str(path))
        assert changed.returncode == 1, changed.stderr
        assert re.search(r"^-\s+- port: 80$", changed.stdout, re.MULTILINE) and \
            re.search(r"^\+\s+- port: 81$", changed.stdout, re.MULTILINE), changed.stdout
        after = json.loads(kubectl.ok("get", "svc", "diffed", "-o", "json"))
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    finally:
        kubectl.run("delete", "-f", str(path), "--wait=false")


def test_get_events(kubectl, namespace):
    assert kubectl.ok("get", "events", "-n", namespace) == ""
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "flow-event", "namespace": namespace},
             "involvedObject": {"kind": "Service", "name": "some-svc", "namespace": namespace},
             "reason": "Testing", "message": "a flow test event", "type": "Normal", "count": 1,
             "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
             "source": {"component": "flows"}}
    kubectl.ok("create", "-f", "-", input=json.dumps(event))
    header, row = kubectl.ok("get", "events", "-n", namespace).strip().splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == ["Normal", "Testing", "service/some-svc", "a", "flow", "test", "event"]


def test_api_resources_lists_our_resources_with_short_names(kubectl):
    rows: dict[str, list[str]] = {}
    for line in kubectl.ok("api-resources").strip().splitlines()[1:]:
        rows.setdefault(line.split()[0], line.split())  # core first: metrics.k8s.io has nodes and pods too
    expected = {"services": "svc", "pods": "po", "namespaces": "ns", "nodes": "no", "endpoints": "ep",
                "events": "ev", "deployments": "deploy", "replicasets": "rs"}
    for plural, short in expected.items():
        assert rows[plural][1] == short, rows.get(plural)
    assert rows["endpointslices"][1:3] == ["discovery.k8s.io/v1", "true"]
    assert rows["leases"][1:3] == ["coordination.k8s.io/v1", "true"]
    cluster_scoped = kubectl.ok("api-resources", "--namespaced=false", "-o", "name").split()
    assert "namespaces" in cluster_scoped and "nodes" in cluster_scoped and "services" not in cluster_scoped


def test_cluster_info_and_version(kubectl, server):
    info = kubectl.ok("cluster-info")
    assert f"Kubernetes control plane is running at {server.url}" in re.sub(r"\x1b\[[0-9;]*m", "", info)
    version = json.loads(kubectl.ok("version", "-o", "json"))
    assert version["serverVersion"]["major"] == "1" and version["serverVersion"]["gitVersion"].startswith("v1.")
    assert "Server Version: v1." in kubectl.ok("version")


def test_explain_service_ports(kubectl):
    out = kubectl.ok("explain", "service.spec.ports")
    assert "FIELD: ports <[]ServicePort>" in out
    assert re.search(r"^  port\s+<integer> -required-$", out, re.MULTILINE), out
    assert re.search(r"^  nodePort\s+<integer>$", out, re.MULTILINE), out


def test_delete_all_services_in_a_namespace_and_get_all_namespaces(kubectl, namespace):
    for i in range(3):
        kubectl.ok("apply", "-f", "-", input=svc_manifest(f"gone-{i}", namespace=namespace))
    everywhere = kubectl.ok("get", "svc", "-A").strip().splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    pairs = {tuple(r.split()[:2]) for r in everywhere[1:]}
    assert ("default", "kubernetes") in pairs and (namespace, "gone-0") in pairs
    out = kubectl.ok("delete", "--all", "svc", "-n", namespace).strip().splitlines()
    assert len(out) == 3 and all(deleted_line("service", f"gone-{i}", namespace).match(line)
                                 for i, line in enumerate(out)), out
    empty = kubectl.run("get", "svc", "-n", namespace)
    assert empty.stdout == "" and f"No resources found in {namespace} namespace." in empty.stderr
    assert kubectl.ok("get", "svc", "kubernetes", "-o", "name").strip() == "service/kubernetes"


def test_paging_with_chunk_size(kubectl, namespace):
    for i in range(5):
        kubectl.ok("apply", "-f", "-", input=svc_manifest(f"page-{i}", namespace=namespace))
    cp = kubectl.run("get", "svc", "-n", namespace, "--chunk-size=2", "-v=6", check=True)
    assert [r.split()[0] for r in cp.stdout.strip().splitlines()[1:]] == [f"page-{i}" for i in range(5)]
    pages = re.findall(r"GET https://\S+/services\?\S*limit=2", cp.stderr) or \
        re.findall(r'verb="GET" url="https://\S+/services\?\S*limit=2', cp.stderr)
    assert len(pages) == 3, cp.stderr
    assert sum("continue=" in p for p in pages) == 2
