"""Deployment and ReplicaSet defaulting and validation."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.registry.apps import deployments, replicasets


def deployment(**spec_overrides) -> dict:
    spec = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}
    spec.update(spec_overrides)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": spec}


def messages(errs) -> list[str]:
    return [str(e) for e in errs]


def test_deployment_defaults():
    d = deployment()
    deployments.default(d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in tspec and "tolerations" not in tspec  # pod-only (admission) defaults
    assert deployments.validate(d) == []


def test_recreate_strategy_gets_no_rolling_update():
    d = deployment(strategy={"type": "Recreate"})
    deployments.default(d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}


def test_selector_required_and_must_match():
    d = deployment()
    del d["spec"]["selector"]
    deployments.default(d)
    assert messages(deployments.validate(d)) == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`',
    ]


def test_empty_selector_and_negative_replicas():
    d = deployment(selector={}, replicas=-1)
    deployments.default(d)
    msgs = messages(deployments.validate(d))
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in msgs
    assert "spec.selector: Invalid value: {}: empty selector is invalid for deployment" in msgs


def test_template_restart_policy_and_pod_spec_path():
    d = deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 0}]
    deployments.default(d)
    msgs = messages(deployments.validate(d))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in msgs
    assert "spec.template.spec.containers[0].ports[0].containerPort: Required value" in msgs


def test_rolling_update_values():
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}})
    deployments.default(d)
    assert "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0" in \
        messages(deployments.validate(d))
    d = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "x"}})
    deployments.default(d)
    msgs = messages(deployments.validate(d))
    assert 'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%' in msgs
    assert any(m.startswith('spec.strategy.rollingUpdate.maxSurge: Invalid value: "x": a valid percent string')
               for m in msgs)


def test_selector_is_immutable():
    old = deployment()
    deployments.default(old)
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    assert deployments.validate_update(new, old) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert messages(deployments.validate_update(new, old)) == [
        'spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable']


def test_replicaset():
    rs = deployment()
    rs["kind"] = "ReplicaSet"
    replicasets.default(rs)
    assert rs["spec"]["replicas"] == 1 and "strategy" not in rs["spec"]
    assert replicasets.validate(rs) == []
    rs["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert messages(replicasets.validate(rs)) == [
        'spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not match template `labels`']


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10)
spec_keys = st.sampled_from(["replicas", "selector", "template", "strategy", "minReadySeconds",
                             "revisionHistoryLimit", "progressDeadlineSeconds"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(spec_keys, json_values, max_size=4), json_values)
def test_random_json_never_raises(spec_fields, anything):
    for module in (deployments, replicasets):
        for obj in (deployment(**spec_fields), {"metadata": anything, "spec": anything}):
            module.default(obj)
            module.validate(obj)
            module.validate_update(obj, deployment())
