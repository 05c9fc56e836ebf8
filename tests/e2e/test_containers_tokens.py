"""Service-account tokens from inside a container: a pod presents a bound token to the API
server at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (the `kubernetes` Service), verifies
the server with the cluster CA, and is the service account (SelfSubjectReview). The second test
does what client-go's and the Python client's in-cluster config do with the files of the
kube-api-access volume the ServiceAccount admission adds and the kubelet projects. Then the real
clients do it themselves inside pods: the host's kubectl (a static binary, mounted by hostPath)
with no kubeconfig, and the official Python client's `load_incluster_config()` (this venv's
packages, mounted read-only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster, module_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# This module's own ranges (helper `tokens`).
RANGES = {"node_ip_base": "10.212.0.0", "pod_cidr_base": "10.222.0.0/16", "service_cidr": "10.232.0.0/16",
          "lb_pool": "10.212.1.0/24"}
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.slow, pytest.mark.timeout(240)]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Who am I, per the API server, with the token and CA given (env or the mounted files).
WHOAMI = r"""
import http.client, json, os, ssl, sys
d = "/var/run/secrets/kubernetes.io/serviceaccount"
token, ca = os.environ.get("TOKEN"), os.environ.get("CA_PEM")
if token is None:
    if not os.path.exists(d + "/token"):
        print("no-mount", flush=True)
        sys.exit(0)
    token, ca = open(d + "/token").read(), open(d + "/ca.crt").read()
    print("namespace", open(d + "/namespace").read(), flush=True)
host, port = os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"])
conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cadata=ca), timeout=10)
body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
conn.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body,
             headers={"Authorization": "Bearer " + token.strip(), "Content-Type": "application/json"})
resp = conn.getresponse()
print("whoami", resp.status, json.loads(resp.read())["status"]["userInfo"]["username"], flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-tok-", tmp_path_factory.mktemp("images"), ["python"], nodes=1, **RANGES) as c:
        yield c


k = module_kubectl()


def _run_pod(k, tmp_path, name: str, spec: dict) -> str:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"restartPolicy": "Never", **spec}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(manifest))
    k.ok("create", "-f", str(path))
    try:
        phase = wait_for(lambda: _phase(k, name) in ("Succeeded", "Failed") and _phase(k, name), timeout=90,
                         what=f"{name} finished")
        logs = k.run("logs", name).stdout
        assert phase == "Succeeded", logs
        return logs
    finally:
        k.run("delete", "pod", name, "--wait=true", timeout=60)


def _phase(k, name: str) -> str:
    return (get_json(k, "pod", name).get("status") or {}).get("phase", "")


def _container(**extra) -> dict:
    return {"name": "client", "image": "python:3", "imagePullPolicy": "Never", "command": ["python3", "-c", WHOAMI],
            **extra}


def test_pod_authenticates_with_a_token_through_the_kubernetes_service(k, cluster, tmp_path):
    k.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                                  "metadata": {"name": "in-pod"}}))
    token = k.ok("create", "token", "in-pod").strip()
    ca_pem = (cluster.data_dir / "pki" / "ca.crt").read_text()
    logs = _run_pod(k, tmp_path, "token-env", {
        "serviceAccountName": "in-pod", "automountServiceAccountToken": False,
        "containers": [_container(env=[{"name": "TOKEN", "value": token}, {"name": "CA_PEM", "value": ca_pem}])]})
    assert "whoami 201 system:serviceaccount:default:in-pod" in logs, logs


def test_in_cluster_config_from_the_mounted_volume(k, cluster, tmp_path):
    if k.run("get", "serviceaccount", "default").returncode != 0:  # before the default-SA controller exists
        k.ok("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                                      "metadata": {"name": "default"}}))
    logs = _run_pod(k, tmp_path, "token-volume", {"containers": [_container()]})
    assert "no-mount" not in logs, f"the kubelet did not mount the projected {SA_DIR} volume"
    assert "namespace default" in logs and "whoami 201 system:serviceaccount:default:default" in logs, logs


def _host_file(name: str, path: str, file_type: str) -> dict:
    return {"name": name, "hostPath": {"path": path, "type": file_type}}


def test_kubectl_inside_a_pod_uses_the_in_cluster_config(k, cluster, tmp_path):
    kubectl = k.binary  # a static Go binary: it runs in any image
    logs = _run_pod(k, tmp_path, "kubectl-in-pod", {
        "volumes": [_host_file("kubectl", os.path.realpath(kubectl), "File")],
        "containers": [_container(command=["/opt/kubectl", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                                  volumeMounts=[{"name": "kubectl", "mountPath": "/opt/kubectl", "readOnly": True}])]})
    assert logs.strip() == "system:serviceaccount:default:default", logs


INCLUSTER = r"""
from kubernetes import client, config
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
print("incluster", review.status.user_info.username, client.VersionApi().get_code().git_version, flush=True)
"""


def test_official_python_client_load_incluster_config(k, cluster, tmp_path):
    import kubernetes

    site = str(Path(kubernetes.__file__).parent.parent)
    # pydantic_core (the client's dependency) links libraries the slim python image lacks (libgcc_s,
    # librt): the host's library directory, which the image's own libraries come from, is mounted too.
    libdir = next(str(p.parent) for p in (Path("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                                          *Path("/usr/lib").glob("*/libgcc_s.so.1")) if p.exists())
    logs = _run_pod(k, tmp_path, "pyclient-in-pod", {
        "volumes": [_host_file("site", site, "Directory"), _host_file("libs", libdir, "Directory")],
        "containers": [_container(command=["python3", "-c", INCLUSTER],
                                  env=[{"name": "PYTHONPATH", "value": "/site"},
                                       {"name": "LD_LIBRARY_PATH", "value": "/opt/lib"}],
                                  volumeMounts=[{"name": "site", "mountPath": "/site", "readOnly": True},
                                                {"name": "libs", "mountPath": "/opt/lib", "readOnly": True}])]})
    assert "incluster system:serviceaccount:default:default v1." in logs, logs
