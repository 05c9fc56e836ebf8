"""The protobuf bodies of `kubectl create quota|pdb` and of drain's Eviction decode to the JSON
kubectl would send (hand-built with k8s.io/api's field numbers)."""

from __future__ import annotations

from protobuf_writer import body, entry, num, sub

from pocketkube.apiserver.protobuf import decode_body


def test_resource_quota():
    raw = sub(1, sub(1, "q")) + sub(2, entry(1, "pods", sub(1, "10")) + entry(1, "requests.cpu", sub(1, "2")))
    assert decode_body(body("v1", "ResourceQuota", raw)) == {
        "kind": "ResourceQuota", "apiVersion": "v1", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "2"}}}


def test_pod_disruption_budget():
    percent = sub(1, num(1, 1) + num(2, 0) + sub(3, "50%"))
    selector = sub(2, entry(1, "app", "web"))
    raw = sub(1, sub(1, "b")) + sub(2, percent + selector)
    got = decode_body(body("policy/v1", "PodDisruptionBudget", raw))
    assert got["spec"] == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}
    raw = sub(1, sub(1, "b")) + sub(2, sub(3, num(1, 0) + num(2, 0)))
    assert decode_body(body("policy/v1", "PodDisruptionBudget", raw))["spec"] == {"maxUnavailable": 0}


def test_eviction_keeps_a_zero_grace_period():
    raw = sub(1, sub(1, "p") + sub(3, "ns")) + sub(2, num(1, 0) + sub(4, "Foreground"))
    assert decode_body(body("policy/v1", "Eviction", raw)) == {
        "kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "p", "namespace": "ns"},
        "deleteOptions": {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}}
