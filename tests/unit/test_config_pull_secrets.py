"""imagePullSecrets: docker config parsing, matching an image's registry, CRI AuthConfig, and the
kubelet trying the pod's (or its ServiceAccount's) credentials."""

from __future__ import annotations

import base64

import orjson
import pytest
from async_waits import until

from pocketkube.agent.kubelet.pull_secrets import RegistryKey, credentials_for, keyring, pull_secret_names
from pocketkube.agent.runtime.cri.translate import auth_config
from pocketkube.agent.runtime.interface import RegistryAuth
from pocketkube.api.resources import BY_PLURAL
from pocketkube.registry.core.pods.serviceaccount import admit
from pocketkube.testing.kubelets import kubelet_on_fakes

pytestmark = pytest.mark.unit

PODS = BY_PLURAL[("", "pods")]
SECRETS = BY_PLURAL[("", "secrets")]
SAS = BY_PLURAL[("", "serviceaccounts")]
EVENTS = BY_PLURAL[("", "events")]
NODE = "node-1"


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def dockerconfigjson(name: str, auths: dict) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(orjson.dumps({"auths": auths}))}}


def test_dockerconfigjson_and_dockercfg_are_parsed() -> None:
    ring = keyring([
        dockerconfigjson("a", {"registry.example.com:5000": {"username": "u", "password": "p"},
                               "https://index.docker.io/v1/": {"auth": b64("hub:secret")}}),
        {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(orjson.dumps(
            {"*.corp.example": {"auth": b64("c:d"), "email": "x@y"}}))}},
        {"type": "Opaque", "data": {"x": b64("{}")}},
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("not json")}},
    ])
    assert [(k.host, k.path, a.username, a.password) for k, a in ring] == [
        ("registry.example.com:5000", "", "u", "p"), ("index.docker.io", "", "hub", "secret"),
        ("*.corp.example", "", "c", "d")]


@pytest.mark.parametrize(("key", "image", "matches"), [
    ("registry.example.com:5000", "registry.example.com:5000/app:1", True),
    ("registry.example.com:5000", "registry.example.com/app:1", False),
    ("https://registry.example.com:5000/", "registry.example.com:5000/team/app", True),
    ("registry.example.com/team", "registry.example.com/team/app", True),
    ("registry.example.com/team", "registry.example.com/other/app", False),
    ("*.corp.example", "eu.corp.example/app", True),
    ("*.corp.example", "corp.example/app", False),
    ("https://index.docker.io/v1/", "nginx", True),
    ("docker.io", "library/redis:7", True),
    ("127.0.0.1:5000", "127.0.0.1:5000/busybox:latest", True),
])
def test_registry_keys_match_as_the_keyring_does(key: str, image: str, matches: bool) -> None:
    ring = [(RegistryKey.parse(key), RegistryAuth("u", "p"))]
    assert bool(credentials_for(image, ring)) is matches


def test_most_specific_credentials_first_with_the_server_address() -> None:
    ring = [(RegistryKey.parse("r.example"), RegistryAuth("broad", "1")),
            (RegistryKey.parse("r.example/team"), RegistryAuth("narrow", "2"))]
    creds = credentials_for("r.example/team/app:1", ring)
    assert [c.username for c in creds] == ["narrow", "broad"]
    assert {c.server_address for c in creds} == {"r.example"}


def test_auth_config_for_cri() -> None:
    cfg = auth_config(RegistryAuth("u", "p", "dTpw", "r.example:5000"))
    assert (cfg.username, cfg.password, cfg.auth, cfg.server_address) == ("u", "p", "dTpw", "")
    assert auth_config(None) is None


def test_pod_secrets_win_over_the_service_accounts() -> None:
    """The kubelet reads the pod's list only: the ServiceAccount admission put the account's
    secrets there when the pod named none (and left a pod's own list alone)."""
    sa = {"metadata": {"name": "robot"}, "imagePullSecrets": [{"name": "from-sa"}]}
    own = {"metadata": {"namespace": "default"}, "spec": {"serviceAccountName": "robot", "containers": [],
                                                          "imagePullSecrets": [{"name": "own"}]}}
    bare = {"metadata": {"namespace": "default"}, "spec": {"serviceAccountName": "robot", "containers": []}}
    for pod in (own, bare):
        admit(pod, lambda ns, name: sa)
    assert pull_secret_names(own) == ["own"]
    assert pull_secret_names(bare) == ["from-sa"]
    assert pull_secret_names({"spec": {}}) == []
    assert pull_secret_names({"spec": {"imagePullSecrets": [{"name": ""}, "x", {"name": "ok"}]}}) == ["ok"]


@pytest.fixture
async def world():
    async with kubelet_on_fakes(present=(), in_registry=["r.example:5000/app:1"]) as world:
        yield world


def pod(name: str, secrets: list[str] | None = None) -> dict:
    spec: dict = {"nodeName": NODE, "containers": [{"name": "c", "image": "r.example:5000/app:1"}]}
    if secrets is not None:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def test_kubelet_pulls_with_the_service_accounts_secret(world) -> None:
    fake, rt, _ = world
    rt.required_auth = RegistryAuth("u", "p", "", "r.example:5000")
    await fake.create(SECRETS, dockerconfigjson("wrong", {"r.example:5000": {"username": "u", "password": "bad"}}),
                      "default")
    await fake.create(SECRETS, dockerconfigjson("right", {"r.example:5000": {"username": "u", "password": "p"}}),
                      "default")
    # (No token volume: this fake world has no TokenRequest; the pull is what is under test.)
    account = await fake.create(SAS, {"metadata": {"name": "default", "namespace": "default"},
                                      "automountServiceAccountToken": False,
                                      "imagePullSecrets": [{"name": "wrong"}, {"name": "gone"}, {"name": "right"}]},
                                "default")
    # The pod as the API server stores it: the ServiceAccount admission copied the account's secrets.
    admitted = pod("p")
    admitted["metadata"]["namespace"] = "default"
    admit(admitted, lambda ns, name: account)
    await fake.create(PODS, admitted, "default")
    await until(lambda: rt.started, "the container started")
    assert [a.password for a in rt.pull_auths if a] == ["bad", "p"]
    reasons = [(e["reason"], e["message"]) for e in fake.objects(EVENTS, "default")]
    assert ("FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets (gone); attempting "
            "to pull the image may not succeed.") in reasons


async def test_kubelet_without_matching_secret_pulls_anonymously_and_fails(world) -> None:
    fake, rt, _ = world
    rt.required_auth = RegistryAuth("u", "p", "", "r.example:5000")
    await fake.create(SECRETS, dockerconfigjson("other", {"elsewhere.example": {"username": "u", "password": "p"}}),
                      "default")
    await fake.create(PODS, pod("q", ["other"]), "default")
    await until(lambda: any(e["reason"] == "Failed" and "401 Unauthorized" in e["message"]
                            for e in fake.objects(EVENTS, "default")), "the pull failed")
    assert rt.pull_auths == [None] and not rt.started


def test_a_node_may_read_but_not_write_config_and_secrets() -> None:
    """The Node authorizer's grant; noderestriction.py narrows reads to what the node's pods use."""
    from pocketkube.apiserver.authz import Attributes, User, allowed
    from pocketkube.registry.rbac.index import PolicyIndex

    node = User("system:node:node-1", ("system:nodes", "system:authenticated"))
    for resource in ("configmaps", "secrets", "serviceaccounts"):
        for verb in ("get", "list", "watch"):
            assert allowed(Attributes(node, verb, resource=resource, namespace="default", name="x"), PolicyIndex())
        for verb in ("create", "update", "delete"):
            assert not allowed(Attributes(node, verb, resource=resource, namespace="default", name="x"),
                               PolicyIndex())
