"""Deleting a namespace: the server marks it Terminating, the namespace controller empties it
and finalizes it, and it goes (under `pocketkube server`, which runs the controllers); the
`finalize` subresource with upstream's semantics (under --no-control-plane, nobody else acts)."""

from __future__ import annotations

import pytest
from control_plane_helpers import server_in_temp_dir, until

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client

NAMESPACES = BY_PLURAL[("", "namespaces")]
SERVICES = BY_PLURAL[("", "services")]
PODS = BY_PLURAL[("", "pods")]
DEPLOYMENTS = BY_PLURAL[("apps", "deployments")]


@pytest.fixture(scope="module")
def server():
    yield from server_in_temp_dir("pk-ns-", [])


@pytest.fixture(scope="module")
def bare_server():
    yield from server_in_temp_dir("pk-ns-bare-", ["--no-control-plane"])


def _namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _deployment(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get(NAMESPACES, "", name)
    except errors.NotFound:
        return True
    return False


async def test_a_deleted_namespace_is_emptied_and_goes(server):
    client = Client(server.url, server.token(), str(server.ca_file))
    try:
        await client.create(NAMESPACES, _namespace("doomed"))
        await client.create(SERVICES, _service("web"), "doomed")
        await client.create(PODS, _pod("lone"), "doomed")
        await client.create(DEPLOYMENTS, _deployment("app"), "doomed")
        marked = await client.delete(NAMESPACES, "", "doomed")
        assert marked["status"]["phase"] == "Terminating" and marked["metadata"]["deletionTimestamp"]
        with pytest.raises(errors.Forbidden, match="because it is being terminated"):
            await client.create(SERVICES, _service("late"), "doomed")
        await until(lambda: _gone(client, "doomed"), "the namespace to go", timeout=20)
        for res in (SERVICES, PODS, DEPLOYMENTS):
            assert (await client.list(res, "doomed"))[0] == []
        await client.create(NAMESPACES, _namespace("doomed"))  # the name is free again
        assert not await _gone(client, "doomed")
    finally:
        await client.close()


async def test_finalize_is_the_only_way_to_change_spec_finalizers(bare_server):
    client = Client(bare_server.url, bare_server.token(), str(bare_server.ca_file))
    try:
        ns = await client.create(NAMESPACES, _namespace("held"))
        assert ns["spec"]["finalizers"] == ["kubernetes"]
        ns["spec"]["finalizers"] = []
        updated = await client.update(NAMESPACES, ns)
        assert updated["spec"]["finalizers"] == ["kubernetes"]  # the main resource keeps them
        await client.delete(NAMESPACES, "", "held")
        again = await client.delete(NAMESPACES, "", "held")  # still finalizers: still there
        assert again["status"]["phase"] == "Terminating"
        body = {**again, "spec": {"finalizers": []}}
        await client.update(NAMESPACES, body, "finalize")
        assert await _gone(client, "held")  # the last finalizer removed from a terminating namespace
    finally:
        await client.close()


async def test_a_live_namespace_is_finalized_without_going(bare_server):
    client = Client(bare_server.url, bare_server.token(), str(bare_server.ca_file))
    try:
        ns = await client.create(NAMESPACES, _namespace("kept"))
        finalized = await client.update(NAMESPACES, {**ns, "spec": {"finalizers": []}}, "finalize")
        assert finalized["spec"]["finalizers"] == [] and finalized["status"]["phase"] == "Active"
        assert not await _gone(client, "kept")
    finally:
        await client.close()
