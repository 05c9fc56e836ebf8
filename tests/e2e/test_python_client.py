"""The official Python client (`kubernetes` on PyPI) against a real `pocketkube server`."""

import tempfile
import threading

import pytest

from pocketkube.testing.requires import require_module
from pocketkube.testing.waits import wait_for

kubernetes = require_module("kubernetes")
from kubernetes import client, config, dynamic, watch  # noqa: E402


@pytest.fixture
def api_client(server):
    return config.new_client_from_config(str(server.kubeconfig))


def seed_service(name="py-svc"):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "myapp", "type": "front-end"},
                                  ports=[client.V1ServicePort(port=80, target_port=80, node_port=30111)]))


def test_create_list_watch_patch_delete_service(api_client):
    v1 = client.CoreV1Api(api_client)
    events = []

    def watch_services():
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_service, "default", timeout_seconds=5):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED" and ev["object"].metadata.name == "py-svc":
                w.stop()
    t = threading.Thread(target=watch_services)
    t.start()
    # From no resourceVersion the watch opens with the existing Services (there is always
    # `kubernetes`): once they are in, it is open and sees the writes below.
    wait_for(lambda: events, timeout=30, what="the watch's initial events")
    created = v1.create_namespaced_service("default", seed_service())
    assert created.spec.ports[0].node_port == 30111
    assert created.spec.cluster_ip.startswith("127.96.")
    names = [s.metadata.name for s in v1.list_namespaced_service("default").items]
    assert "py-svc" in names and "kubernetes" in names
    patched = v1.patch_namespaced_service("py-svc", "default", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"x": "y"}
    assert v1.list_namespaced_service("default", label_selector="x=y").items[0].metadata.name == "py-svc"
    v1.delete_namespaced_service("py-svc", "default")
    t.join(10)
    assert ("ADDED", "py-svc") in events and ("MODIFIED", "py-svc") in events and ("DELETED", "py-svc") in events
    with pytest.raises(client.ApiException) as e:
        v1.read_namespaced_service("py-svc", "default")
    assert e.value.status == 404


def test_dynamic_client_uses_legacy_discovery(api_client, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its discovery cache file goes here
    dyn = dynamic.DynamicClient(api_client)
    services = dyn.resources.get(api_version="v1", kind="Service")
    assert any(s.metadata.name == "kubernetes" for s in services.get(namespace="default").items)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.get(namespace="default").items is not None


def test_deployment_scale_with_strategic_merge(api_client):
    apps = client.AppsV1Api(api_client)
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-deploy"),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]))))
    apps.create_namespaced_deployment("default", body)
    try:
        apps.patch_namespaced_deployment_scale("py-deploy", "default", {"spec": {"replicas": 4}})
        assert apps.read_namespaced_deployment_scale("py-deploy", "default").spec.replicas == 4
    finally:
        apps.delete_namespaced_deployment("py-deploy", "default")
