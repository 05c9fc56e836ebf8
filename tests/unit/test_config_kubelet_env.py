"""The kubelet reads the ConfigMaps and Secrets a container's env names: a missing one is
CreateContainerConfigError with upstream's message, retried until it exists."""

from __future__ import annotations

import base64

import pytest
from async_waits import until

from pocketkube.agent.kubelet import pod_workers
from pocketkube.api.resources import BY_PLURAL
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.kubelets import kubelet_on_fakes

pytestmark = pytest.mark.unit

PODS = BY_PLURAL[("", "pods")]
CONFIGMAPS = BY_PLURAL[("", "configmaps")]
SECRETS = BY_PLURAL[("", "secrets")]
EVENTS = BY_PLURAL[("", "events")]
NODE = "node-1"


@pytest.fixture
async def world(monkeypatch):
    monkeypatch.setattr(pod_workers, "CONFIG_RETRY", 0.05)
    async with kubelet_on_fakes() as world:
        yield world


def waiting(fake: FakeClient, name: str) -> dict:
    pod = next(p for p in fake.objects(PODS, "default") if p["metadata"]["name"] == name)
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0].get("state", {}).get("waiting") or {}


async def test_missing_key_waits_then_starts(world):
    fake, rt, _ = world
    env = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
           {"name": "P", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "p"}}}]
    await fake.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                             "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "app:1", "env": env,
                                      "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}},
                      "default")
    await until(lambda: waiting(fake, "p").get("message") == 'configmap "cfg" not found', "no configmap")
    assert waiting(fake, "p")["reason"] == "CreateContainerConfigError"
    await fake.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"b": "1"}},
                      "default")
    await until(lambda: waiting(fake, "p").get("message") == "couldn't find key a in ConfigMap default/cfg",
                "no key")
    cm = fake.objects(CONFIGMAPS, "default")[0]
    await fake.update(CONFIGMAPS, {**cm, "data": {"a": "1", "9z": "x"}})
    await until(lambda: waiting(fake, "p").get("message") == 'secret "sec" not found', "no secret")
    await fake.create(SECRETS, {"metadata": {"name": "sec", "namespace": "default"}, "type": "Opaque",
                                "data": {"p": base64.b64encode(b"pw").decode()}}, "default")
    await until(lambda: rt.started, "the container started")
    env_seen = rt.started[0].env
    assert env_seen["A"] == "1" and env_seen["P"] == "pw" and env_seen["a"] == "1" and "9z" not in env_seen
    reasons = [(e["reason"], e["message"]) for e in fake.objects(EVENTS, "default")]
    assert ("Failed", 'Error: configmap "cfg" not found') in reasons
    assert ("InvalidEnvironmentVariableNames", "Keys [9z] from the EnvFrom configMap default/cfg were skipped "
            "since they are considered invalid environment variable names.") in reasons
