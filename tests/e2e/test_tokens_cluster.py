"""Service-account tokens in a whole `pocketkube up` cluster (process runtime): the tutorial's
long-lived token Secret filled by the controller manager's tokens controller and used with
kubectl, and the ServiceAccount admission on pods the ReplicaSet controller creates."""

from __future__ import annotations

import base64

import pytest
import yaml

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.waits import get_json, is_ready, wait_for

# This module's own process-mode ranges (helper `tokens`).
RANGES = {"node_ip_base": "127.0.212.0", "pod_cidr_base": "127.222.0.0/16", "service_cidr": "127.232.0.0/16",
          "lb_pool": "127.212.1.0/24"}
pytestmark = [pytest.mark.timeout(180)]

# docs: "Manually create a long-lived API token for a ServiceAccount"
MANIFEST = """apiVersion: v1
kind: ServiceAccount
metadata:
  name: build-robot
---
apiVersion: v1
kind: Secret
metadata:
  name: build-robot-secret
  annotations:
    kubernetes.io/service-account.name: build-robot
type: kubernetes.io/service-account-token
"""


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-tokup-", nodes=1, **RANGES) as c:
        yield c


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_long_lived_token_secret(cluster, binary, tmp_path):
    k = Kubectl(kubectl_binaries()[binary], cluster.kubeconfig, cwd=tmp_path)
    try:
        k.ok("apply", "-f", "-", input=MANIFEST)
        secret = wait_for(lambda: (s := get_json(k, "secret", "build-robot-secret")).get("data", {}).get("token")
                          and s, timeout=30, what="the token secret filled in")
        described = k.ok("describe", "secret", "build-robot-secret")
        assert "token:" in described and "ca.crt:" in described, described
        token = base64.b64decode(secret["data"]["token"]).decode()
        who = yaml.safe_load(k.ok("--token", token, "auth", "whoami", "-o", "yaml"))
        assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:build-robot"
        k.ok("delete", "-f", "-", input=MANIFEST)
        cp = k.run("--token", token, "auth", "whoami")
        assert cp.returncode == 1 and "Unauthorized" in cp.stderr, cp.stderr
    finally:
        k.close()


def test_controller_created_pods_get_the_token_volume(cluster, tmp_path):
    k = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig, cwd=tmp_path)
    try:
        k.ok("create", "deployment", "tok-web", "--image=nginx")
        pods = wait_for(lambda: get_json(k, "pods", "-l", "app=tok-web").get("items"), timeout=60,
                        what="the deployment's pod")
        spec = pods[0]["spec"]
        assert spec["serviceAccountName"] == "default"
        assert spec["volumes"][-1]["name"].startswith("kube-api-access-")
        assert {"name": spec["volumes"][-1]["name"], "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in spec["containers"][0]["volumeMounts"]
        # The process runtime runs the pod with the volume in its spec (it has no files to mount yet).
        wait_for(lambda: any(is_ready(p) for p in get_json(k, "pods", "-l", "app=tok-web")["items"]), timeout=60,
                 what="the pod Ready")
        k.ok("delete", "deployment", "tok-web")
    finally:
        k.close()
