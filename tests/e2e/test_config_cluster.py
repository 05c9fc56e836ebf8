"""ConfigMaps, Secrets and ServiceAccounts in a running cluster (process runtime): the default
ServiceAccount and kube-root-ca.crt of every namespace, env from ConfigMaps and Secrets (a
missing key waits with CreateContainerConfigError, then the container starts), and the official
Python client."""

from __future__ import annotations

import base64

import pytest
import yaml

from pocketkube.testing.procs import kubectl_binaries, preferred_kubectl, running_cluster
from pocketkube.testing.requires import require_module
from pocketkube.testing.waits import wait_for

kubernetes = require_module("kubernetes")
from kubernetes import client, config  # noqa: E402

RANGES = dict(node_ip_base="127.0.211.0", pod_cidr_base="127.221.0.0/16", service_cidr="127.231.0.0/16",
              lb_pool="127.211.1.0/24")


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-cfg-e2e-", nodes=1, **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def kubectl(cluster):
    k = preferred_kubectl(cluster.kubeconfig)
    yield k
    k.close()


def test_every_namespace_has_default_service_account_and_root_ca(cluster, kubectl):
    ca = (cluster.data_dir / "pki" / "ca.crt").read_text()
    kubectl.ok("create", "namespace", "cfg-team")
    try:
        for ns in ("default", "kube-system", "cfg-team"):
            wait_for(lambda ns=ns: kubectl.run("get", "sa", "default", "-n", ns).returncode == 0, timeout=20,
                     what=f"the default ServiceAccount in {ns}")
            cm = wait_for(lambda ns=ns: kubectl.run("get", "cm", "kube-root-ca.crt", "-n", ns, "-o", "yaml").stdout,
                          timeout=20, what=f"kube-root-ca.crt in {ns}")
            assert yaml.safe_load(cm)["data"] == {"ca.crt": ca}
        kubectl.ok("delete", "sa", "default", "-n", "cfg-team")
        wait_for(lambda: kubectl.run("get", "sa", "default", "-n", "cfg-team").returncode == 0, timeout=20,
                 what="the default ServiceAccount re-created")
        kubectl.ok("patch", "cm", "kube-root-ca.crt", "-n", "cfg-team", "-p", '{"data":{"ca.crt":"tampered"}}')
        wait_for(lambda: yaml.safe_load(kubectl.ok("get", "cm", "kube-root-ca.crt", "-n", "cfg-team", "-o", "yaml"))
                 ["data"] == {"ca.crt": ca}, timeout=20, what="the CA bundle put back")
    finally:
        kubectl.run("delete", "namespace", "cfg-team", "--wait=false")


POD = """apiVersion: v1
kind: Pod
metadata: {name: env-pod, labels: {app: env}}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo COLOR=$COLOR PW=$PW FROM=$from_env NODE=$NODE LIMIT=$MEM; sleep 3600"]
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: env-cm, key: color}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: env-secret, key: password}}}
    - {name: OPT, valueFrom: {secretKeyRef: {name: nope, key: x, optional: true}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    envFrom:
    - {configMapRef: {name: env-cm}}
    resources: {limits: {memory: 64Mi}}
"""


def waiting_message(kubectl) -> str:
    pod = yaml.safe_load(kubectl.ok("get", "pod", "env-pod", "-o", "yaml"))
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    waiting = statuses[0].get("state", {}).get("waiting") or {}
    return f"{waiting.get('reason')}: {waiting.get('message')}"


def test_env_from_configmap_and_secret_waits_for_a_missing_key(kubectl):
    kubectl.ok("create", "secret", "generic", "env-secret", "--from-literal=password=s3cret")
    kubectl.ok("create", "configmap", "env-cm", "--from-literal=from_env=yes")
    try:
        kubectl.ok("apply", "-f", "-", input=POD)
        wait_for(lambda: waiting_message(kubectl) ==
                 "CreateContainerConfigError: couldn't find key color in ConfigMap default/env-cm",
                 timeout=30, what="CreateContainerConfigError")
        row = kubectl.ok("get", "pod", "env-pod", "--no-headers").split()
        assert row[2] == "CreateContainerConfigError"
        events = kubectl.ok("get", "events", "--field-selector", "involvedObject.name=env-pod")
        assert "couldn't find key color in ConfigMap default/env-cm" in events
        kubectl.ok("patch", "configmap", "env-cm", "-p", '{"data":{"color":"blue"}}')
        logs = wait_for(lambda: kubectl.run("logs", "env-pod").stdout.strip(), timeout=40, what="the pod's log")
        assert logs == "COLOR=blue PW=s3cret FROM=yes NODE=node-1 LIMIT=64"
    finally:
        kubectl.run("delete", "pod", "env-pod", "--grace-period=0", "--force")
        kubectl.run("delete", "secret", "env-secret")
        kubectl.run("delete", "configmap", "env-cm")


def test_python_client_configmaps_and_secrets(cluster):
    api = config.new_client_from_config(str(cluster.kubeconfig))
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-cm"), data={"k": "v"}, binary_data={"b": "AAE="}))
    v1.create_namespaced_secret("default", client.V1Secret(
        metadata=client.V1ObjectMeta(name="py-secret"), string_data={"token": "abc"}))
    try:
        cm = v1.read_namespaced_config_map("py-cm", "default")
        assert cm.data == {"k": "v"} and cm.binary_data == {"b": "AAE="}
        secret = v1.read_namespaced_secret("py-secret", "default")
        assert secret.type == "Opaque" and base64.b64decode(secret.data["token"]) == b"abc"
        assert secret.string_data is None
        with pytest.raises(client.ApiException) as bad:
            v1.create_namespaced_secret("default", client.V1Secret(
                metadata=client.V1ObjectMeta(name="py-bad"), data={"x": "%%%"}))
        assert bad.value.status == 422 and "illegal base64 data at input byte 0" in bad.value.body
        sa = v1.read_namespaced_service_account("default", "default")
        assert sa.metadata.name == "default"
        names = [c.metadata.name for c in v1.list_namespaced_config_map("default").items]
        assert {"py-cm", "kube-root-ca.crt"} <= set(names)
    finally:
        v1.delete_namespaced_config_map("py-cm", "default")
        v1.delete_namespaced_secret("py-secret", "default")


def test_python_client_configmap_flow_as_its_own_e2e(cluster):
    """The official client's own e2e configmap flow: create, read, patch with the whole body,
    delete with a body, list by label; and a delete-collection."""
    v1 = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    body = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "py-flow", "labels": {"e2e-tests": "true"}},
            "data": {"config.json": '{"command":"/usr/bin/mysqld_safe"}', "frontend.cnf": "[mysqld]\nbind-address = 10.0.0.3\n"}}
    assert v1.create_namespaced_config_map(body=body, namespace="default").metadata.name == "py-flow"
    assert v1.read_namespaced_config_map(name="py-flow", namespace="default").data["config.json"].startswith("{")
    body["data"]["config.json"] = "{}"
    assert v1.patch_namespaced_config_map(name="py-flow", namespace="default", body=body).data["config.json"] == "{}"
    v1.delete_namespaced_config_map(name="py-flow", body={}, namespace="default")
    assert v1.list_namespaced_config_map("default", pretty="true", label_selector="e2e-tests=true").items == []
    for i in range(3):
        v1.create_namespaced_secret("default", client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"py-many-{i}", labels={"batch": "py"}), string_data={"i": str(i)}))
    v1.delete_collection_namespaced_secret("default", label_selector="batch=py")
    assert v1.list_namespaced_secret("default", label_selector="batch=py").items == []


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_describe_pod_env_sources(cluster, binary):
    """kubectl's describe of a pod naming ConfigMaps and Secrets reads them (both kubectl builds)."""
    from pocketkube.testing.procs import Kubectl

    k = Kubectl(kubectl_binaries()[binary], cluster.kubeconfig)
    try:
        out = k.ok("describe", "sa", "default")
        assert "Name:" in out and "default" in out
        out = k.ok("describe", "cm", "kube-root-ca.crt")
        assert "ca.crt:" in out and "BEGIN CERTIFICATE" in out
    finally:
        k.close()
