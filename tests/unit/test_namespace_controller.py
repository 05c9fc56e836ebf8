"""The namespace controller's decisions (controllers/namespace.py)."""

from __future__ import annotations

from pocketkube.controllers.namespace import content_resources, finalize_body, finalized, still_to_delete


def test_content_is_every_namespaced_deletable_resource():
    plurals = {r.plural for r in content_resources()}
    assert {"pods", "services", "deployments", "replicasets", "endpoints", "events"} <= plurals
    assert not plurals & {"namespaces", "nodes"}


def test_objects_already_terminating_are_not_deleted_again():
    items = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "deletionTimestamp": "2026-01-01T00:00:00Z"}}]
    assert [o["metadata"]["name"] for o in still_to_delete(items)] == ["a"]


def test_finalize_removes_only_our_finalizer_and_sends_no_status():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "resourceVersion": "7"},
          "spec": {"finalizers": ["kubernetes", "example.com/other"]}, "status": {"phase": "Terminating"}}
    body = finalize_body(ns)
    assert body["spec"]["finalizers"] == ["example.com/other"] and "status" not in body
    assert body["metadata"]["resourceVersion"] == "7"
    assert ns["spec"]["finalizers"] == ["kubernetes", "example.com/other"]  # the input is untouched
    assert not finalized(ns) and finalized(finalize_body({"metadata": {}, "spec": {"finalizers": ["kubernetes"]}}))
