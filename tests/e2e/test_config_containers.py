"""Container mode (containerd): env from a ConfigMap and a Secret in a busybox pod's log, a
missing key holding the container in CreateContainerConfigError until the key exists, and
imagePullSecrets (the ServiceAccount's and the pod's) reaching containerd's pull from a local
registry that wants basic auth."""

from __future__ import annotations

import json

import pytest

from pocketkube.testing import images, registry
from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, REGISTRY, SKOPEO, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# This module's own ranges (helper cfg's: no other test file's).
RANGES = {"node_ip_base": "10.211.0.0", "pod_cidr_base": "10.221.0.0/16", "service_cidr": "10.231.0.0/16",
          "lb_pool": "10.211.1.0/24"}
USER, PASSWORD = "alice", "wonderland"
pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              requires(registry.have_registry(), REGISTRY), requires(registry.have_skopeo(), SKOPEO),
              requires(registry.have_bcrypt(), "Python's crypt module with bcrypt (for htpasswd)"),
              pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def reg():
    with registry.local_registry(users={USER: PASSWORD}) as addr:
        built = images.busybox_image()
        image = f"{addr}/private/busybox:{built.tag}"
        registry.push(built.layout, image, tag=built.tag, creds=f"{USER}:{PASSWORD}")
        yield {"addr": addr, "image": image}


@pytest.fixture(scope="module")
def cluster(reg):
    args = ["--no-pod-egress", "--insecure-registry", reg["addr"]]
    with running_cluster("pk-cfgc-", nodes=1, runtime="containerd", extra_args=args, **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster, reg):
    kc = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    kc.ok("create", "secret", "docker-registry", "regcred", f"--docker-server={reg['addr']}",
          f"--docker-username={USER}", f"--docker-password={PASSWORD}")
    yield kc
    kc.close()


def waiting(k, name: str) -> dict:
    pod = get_json(k, "pod", name)
    return ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting") or {}


def pod(name: str, image: str, command: str, *, env=None, env_from=None, pull_secrets=None,
        policy: str = "IfNotPresent") -> str:
    container = {"name": "main", "image": image, "imagePullPolicy": policy, "command": ["sh", "-c", command]}
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    spec = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_image_pull_secrets_reach_the_pull(k, reg):
    # No credentials: the registry's 401 is the pull error.
    k.ok("create", "-f", "-", input=pod("anon", reg["image"], "true", policy="Always"))
    wait_for(lambda: waiting(k, "anon").get("reason") in ("ErrImagePull", "ImagePullBackOff"), timeout=60,
             what="the anonymous pull to fail")
    assert "401 Unauthorized" in waiting(k, "anon").get("message", "") or \
        "unauthorized" in waiting(k, "anon").get("message", "").lower()
    k.run("delete", "pod", "anon", "--wait=false")
    # The pod's own secret.
    k.ok("create", "-f", "-", input=pod("own", reg["image"], "echo pulled; sleep 3600", pull_secrets=["regcred"],
                                        policy="Always"))
    wait_for(lambda: k.run("logs", "own").stdout.strip() == "pulled", timeout=60,
             what="the pod pulled with its secret")
    k.run("delete", "pod", "own", "--wait=false")
    # The default ServiceAccount's secret, for a pod that names none.
    k.ok("patch", "serviceaccount", "default", "-p", '{"imagePullSecrets":[{"name":"regcred"}]}')
    k.ok("create", "-f", "-", input=pod("via-sa", reg["image"], "echo via-sa; sleep 3600", policy="Always"))
    wait_for(lambda: k.run("logs", "via-sa").stdout.strip() == "via-sa", timeout=60,
             what="the pod pulled with its ServiceAccount's secret")
    k.run("delete", "pod", "via-sa", "--wait=false")


def test_env_from_configmap_and_secret_in_a_busybox_pod(k, reg):
    k.ok("create", "configmap", "app-cfg", "--from-literal=color=blue", "--from-literal=mode=prod")
    k.ok("create", "secret", "generic", "app-secret", "--from-literal=password=s3cret")
    env = [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "app-cfg", "key": "color"}}},
           {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
           {"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "app-cfg", "key": "late"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    command = "echo COLOR=$COLOR PASSWORD=$PASSWORD LATE=$LATE CFG_mode=$CFG_mode POD=$POD_NAME; sleep 3600"
    k.ok("create", "-f", "-", input=pod("env", reg["image"], command, env=env, pull_secrets=["regcred"],
                                        env_from=[{"prefix": "CFG_", "configMapRef": {"name": "app-cfg"}}]))
    try:
        wait_for(lambda: waiting(k, "env").get("reason") == "CreateContainerConfigError", timeout=60,
                 what="CreateContainerConfigError")
        assert waiting(k, "env")["message"] == "couldn't find key late in ConfigMap default/app-cfg"
        k.ok("patch", "configmap", "app-cfg", "-p", '{"data":{"late":"here"}}')
        logs = wait_for(lambda: k.run("logs", "env").stdout.strip(), timeout=60, what="the container's log")
        assert logs == "COLOR=blue PASSWORD=s3cret LATE=here CFG_mode=prod POD=env"
    finally:
        k.run("delete", "pod", "env", "--wait=false")
