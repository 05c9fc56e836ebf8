"""api.taints: the toleration rules shared by the scheduler and the node lifecycle controller."""

from __future__ import annotations

import pytest

from pocketkube.api.taints import NOT_READY_TAINT, find_untolerated_taint, node_ready_status, tolerates

TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(("toleration", "expected"), [
    ({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}, True),
    ({"key": "dedicated", "value": "gpu"}, True),  # empty effect: any
    ({"key": "dedicated", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # empty key with Exists: everything
    ({"key": "dedicated", "value": "cpu"}, False),
    ({"key": "dedicated", "value": "gpu", "effect": "NoExecute"}, False),
    ({"value": "gpu"}, False),  # Equal needs a key
    ({"key": "dedicated", "operator": "Gt", "value": "gpu"}, False),
])
def test_tolerates(toleration, expected):
    assert tolerates(toleration, TAINT) is expected


def test_find_untolerated_taint_respects_effects():
    taints = [{"key": "a", "effect": "PreferNoSchedule"}, TAINT]
    assert find_untolerated_taint(taints, [], ("NoSchedule",)) == TAINT
    assert find_untolerated_taint(taints, [{"key": "dedicated", "operator": "Exists"}], ("NoSchedule",)) is None
    assert find_untolerated_taint(taints, [], ("NoExecute",)) is None


def test_node_ready_status():
    assert node_ready_status({}) == "Unknown"
    assert node_ready_status({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}) == "False"
    assert NOT_READY_TAINT == "node.kubernetes.io/not-ready"
