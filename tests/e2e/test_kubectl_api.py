"""The real kubectl (1.32 and the bundled newer one) against a real `pocketkube server`."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_SERVICE = str(EXAMPLES / "service-definition.yaml")


def cleanup(kubectl, *args):
    kubectl.run("delete", "--ignore-not-found", "--wait=false", *args)


def test_seed_service_create_get_delete(kubectl):
    out = kubectl.ok("create", "-f", SEED_SERVICE)
    assert out.strip() == "service/myapp-service created"
    try:
        table = kubectl.ok("get", "services")
        header, *rows = table.strip().splitlines()
        assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        row = next(r.split() for r in rows if r.startswith("myapp-service"))
        assert row[1] == "NodePort" and row[3] == "<none>" and row[4] == "80:30008/TCP"
        assert row[2].startswith("127.96.")
        assert any(r.split()[0] == "kubernetes" and r.split()[4] == "443/TCP" for r in rows)
        wide = kubectl.ok("get", "svc", "myapp-service", "-o", "wide")
        assert "app=myapp,type=front-end" in wide
        svc = yaml.safe_load(kubectl.ok("get", "svc", "myapp-service", "-o", "yaml"))
        port = svc["spec"]["ports"][0]
        assert port == {"port": 80, "targetPort": 80, "nodePort": 30008, "protocol": "TCP"}
        assert svc["spec"]["sessionAffinity"] == "None"
        assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
        assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
        again = kubectl.run("create", "-f", SEED_SERVICE)
        assert again.returncode == 1
        assert ('The Service "myapp-service" is invalid: spec.ports[0].nodePort: Invalid value: 30008: '
                "provided port is already allocated") in again.stderr
    finally:
        out = kubectl.ok("delete", "-f", SEED_SERVICE)
    assert out.startswith('service "myapp-service" deleted')
    missing = kubectl.run("get", "svc", "myapp-service")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): services "myapp-service" not found' in missing.stderr


def test_apply_then_change_and_reapply_keeps_node_port(kubectl, tmp_path):
    manifest = yaml.safe_load(open(SEED_SERVICE))
    del manifest["spec"]["ports"][0]["nodePort"]
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert kubectl.ok("apply", "-f", str(path)).strip() == "service/myapp-service created"
    try:
        first = yaml.safe_load(kubectl.ok("get", "svc", "myapp-service", "-o", "yaml"))
        node_port = first["spec"]["ports"][0]["nodePort"]
        assert 30000 <= node_port <= 32767
        manifest["spec"]["ports"][0]["targetPort"] = 8080
        path.write_text(yaml.safe_dump(manifest))
        assert kubectl.ok("apply", "-f", str(path)).strip() == "service/myapp-service configured"
        second = yaml.safe_load(kubectl.ok("get", "svc", "myapp-service", "-o", "yaml"))
        assert second["spec"]["ports"][0]["targetPort"] == 8080
        assert second["spec"]["ports"][0]["nodePort"] == node_port
        assert second["spec"]["clusterIP"] == first["spec"]["clusterIP"]
        assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
        assert kubectl.ok("apply", "-f", str(path)).strip() == "service/myapp-service unchanged"
    finally:
        cleanup(kubectl, "-f", str(path))


@pytest.mark.parametrize("change, message", [
    ({"nodePort": 40000}, "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid "
                          "range. The range of valid ports is 30000-32767"),
    ({"port": 0}, "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ({"port": 65536}, "spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"),
])
def test_invalid_ports_are_rejected_with_kubernetes_messages(kubectl, tmp_path, change, message):
    manifest = yaml.safe_load(open(SEED_SERVICE))
    manifest["metadata"]["name"] = "bad-ports"
    manifest["spec"]["ports"][0].update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    cp = kubectl.run("create", "-f", str(path))
    assert cp.returncode == 1
    assert f'The Service "bad-ports" is invalid: {message}' in cp.stderr


def test_node_port_on_cluster_ip_service(kubectl, tmp_path):
    manifest = yaml.safe_load(open(SEED_SERVICE))
    manifest["metadata"]["name"] = "cip"
    manifest["spec"]["type"] = "ClusterIP"
    path = tmp_path / "cip.yaml"
    path.write_text(yaml.safe_dump(manifest))
    cp = kubectl.run("create", "-f", str(path))
    assert cp.returncode == 1
    assert ("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'") in cp.stderr


def test_unknown_field_strict_validation(kubectl, tmp_path):
    manifest = yaml.safe_load(open(SEED_SERVICE))
    manifest["metadata"]["name"] = "strict"
    manifest["spec"]["bogusField"] = 1
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(manifest))
    cp = kubectl.run("create", "-f", str(path))
    assert cp.returncode == 1
    assert 'strict decoding error: unknown field "spec.bogusField"' in cp.stderr
    cp = kubectl.run("create", "--validate=warn", "-f", str(path))
    try:
        assert cp.returncode == 0, cp.stderr
        assert 'unknown field "spec.bogusField"' in cp.stderr
        assert "bogusField" not in kubectl.ok("get", "svc", "strict", "-o", "yaml")
    finally:
        cleanup(kubectl, "svc", "strict")


def test_describe_service(kubectl):
    kubectl.ok("create", "-f", SEED_SERVICE)
    try:
        out = kubectl.ok("describe", "service", "myapp-service")
        assert re.search(r"Type:\s+NodePort", out)
        assert re.search(r"NodePort:\s+<unset>\s+30008/TCP", out)
        assert re.search(r"Selector:\s+app=myapp,type=front-end", out)
    finally:
        cleanup(kubectl, "-f", SEED_SERVICE)


def test_get_watch_receives_an_event(kubectl, server):
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), KUBECACHEDIR=kubectl.cache, HOME=kubectl.cache)
    kubectl.ok("get", "svc")  # warm discovery
    watcher = subprocess.Popen([kubectl.binary, "get", "svc", "-w", "--request-timeout=0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert watcher.stdout is not None
        lines.append(watcher.stdout.readline())  # header
        lines.append(watcher.stdout.readline())  # kubernetes
        kubectl.ok("create", "service", "clusterip", "watched", "--tcp=80:8080")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()
            if "watched" in line:
                assert "ClusterIP" in line and "80/TCP" in line
                break
        else:
            pytest.fail(f"no watch event; got {lines}")
    finally:
        watcher.kill()
        watcher.wait()
        cleanup(kubectl, "svc", "watched")


def test_deployment_create_scale_get_all(kubectl):
    deploy = str(EXAMPLES / "deployment-definition.yaml")
    assert kubectl.ok("create", "-f", deploy).strip() == "deployment.apps/myapp-deployment created"
    try:
        assert kubectl.ok("scale", "deployment", "myapp-deployment", "--replicas=5").strip() == \
            "deployment.apps/myapp-deployment scaled"
        d = yaml.safe_load(kubectl.ok("get", "deploy", "myapp-deployment", "-o", "yaml"))
        assert d["spec"]["replicas"] == 5
        assert d["metadata"]["generation"] == 2
        assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
        out = kubectl.ok("get", "all")
        assert "deployment.apps/myapp-deployment" in out
        assert "service/kubernetes" in out
    finally:
        cleanup(kubectl, "-f", deploy)


def test_generators_send_protobuf(kubectl):
    assert kubectl.ok("create", "namespace", "gen-ns").strip() == "namespace/gen-ns created"
    try:
        assert kubectl.ok("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", "gen-ns").strip() \
            == "deployment.apps/web created"
        assert kubectl.ok("create", "service", "nodeport", "web", "--tcp=80:80", "--node-port=30123",
                          "-n", "gen-ns").strip() == "service/web created"
        out = kubectl.ok("get", "svc", "web", "-n", "gen-ns")
        assert "80:30123/TCP" in out
        assert kubectl.ok("run", "runpod", "--image=nginx", "-n", "gen-ns").strip() == "pod/runpod created"
        assert kubectl.ok("expose", "deployment", "web", "--name=web2", "--port=80", "--type=NodePort",
                          "-n", "gen-ns").strip() == "service/web2 exposed"
    finally:
        kubectl.run("delete", "namespace", "gen-ns", "--wait=true", timeout=60)
    assert kubectl.run("get", "ns", "gen-ns").returncode == 1


def test_edit_with_editor(kubectl, tmp_path):
    kubectl.ok("create", "-f", SEED_SERVICE)
    try:
        editor = tmp_path / "editor.sh"
        editor.write_text("#!/bin/sh\nsed -i 's/nodePort: 30008/nodePort: 30009/' \"$1\"\n")
        editor.chmod(0o755)
        env_editor = {"KUBE_EDITOR": str(editor)}
        os.environ.update(env_editor)
        try:
            out = kubectl.ok("edit", "svc", "myapp-service")
        finally:
            del os.environ["KUBE_EDITOR"]
        assert "service/myapp-service edited" in out
        assert "80:30009/TCP" in kubectl.ok("get", "svc", "myapp-service")
    finally:
        cleanup(kubectl, "svc", "myapp-service")


def test_label_annotate_patch(kubectl):
    kubectl.ok("create", "-f", SEED_SERVICE)
    try:
        kubectl.ok("label", "svc", "myapp-service", "tier=web")
        kubectl.ok("annotate", "svc", "myapp-service", "note=hello")
        kubectl.ok("patch", "svc", "myapp-service", "-p", '{"spec":{"ports":[{"port":80,"nodePort":30010}]}}')
        svc = yaml.safe_load(kubectl.ok("get", "svc", "myapp-service", "-o", "yaml"))
        assert svc["metadata"]["labels"]["tier"] == "web"
        assert svc["metadata"]["annotations"]["note"] == "hello"
        assert svc["spec"]["ports"][0]["nodePort"] == 30010
        assert "tier=web" in kubectl.ok("get", "svc", "-l", "tier in (web,api)", "--show-labels")
    finally:
        cleanup(kubectl, "svc", "myapp-service")


def test_missing_namespace_and_unknown_resource(kubectl):
    cp = kubectl.run("create", "-f", SEED_SERVICE, "-n", "nope")
    assert cp.returncode == 1 and 'namespaces "nope" not found' in cp.stderr
    cp = kubectl.run("get", "widgets")
    assert cp.returncode == 1
    assert 'the server doesn\'t have a resource type "widgets"' in cp.stderr
