"""Quantity math, LimitRange validation and LimitRanger decisions, quota arithmetic (pure)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pocketkube.api import quota
from pocketkube.api.quantity import fmt, is_binary, milli, parse
from pocketkube.registry.core import limitranges
from pocketkube.registry.core import quota as quota_kind


@pytest.mark.parametrize("text,value,printed", [
    ("500m", Fraction(1, 2), "500m"), ("2000m", Fraction(2), "2"), ("1000", Fraction(1000), "1k"),
    ("1Gi", Fraction(2**30), "1Gi"), ("1536Mi", Fraction(1536 * 2**20), "1536Mi"), ("1e3", Fraction(1000), "1k"),
    ("0.1", Fraction(1, 10), "100m"), (".5", Fraction(1, 2), "500m"), ("3", Fraction(3), "3"), (2, Fraction(2), "2"),
])
def test_quantities_parse_and_print_as_kubernetes(text, value, printed):
    assert parse(text) == value
    assert fmt(parse(text), is_binary(text)) == printed


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1Qi", "--1", "1e", "1e+", "1eM", None, True, [1]])
def test_bad_quantities_are_none(text):
    assert parse(text) is None


def test_milli_rounds_up():
    assert milli("1n") == 1 and milli("1.5") == 1500 and milli("bad") == 0


def lr(*items: dict) -> dict:
    return {"metadata": {"name": "lr", "namespace": "default"}, "spec": {"limits": list(items)}}


def msgs(errs) -> list[str]:
    return [str(e) for e in errs]


def test_limitrange_defaults_as_upstream():
    obj = lr({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}})
    limitranges.default(obj)
    item = obj["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "64Mi"}


def test_limitrange_validation_messages():
    obj = lr({"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
             {"type": "Pod", "default": {"cpu": "1"}}, {"type": "Pod"}, {"type": "bogus"},
             {"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}, "max": {"memory": "x"}})
    assert msgs(limitranges.validate(obj)) == [
        'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1',
        "spec.limits[1].default: Invalid value: {\"cpu\":\"1\"}: may not be specified when `type` is 'Pod'",
        'spec.limits[2].type: Duplicate value: "Pod"',
        'spec.limits[3].type: Invalid value: "bogus": must be a standard limit type or fully qualified',
        'spec.limits[4].type: Duplicate value: "Container"',
        'spec.limits[4].max[memory]: Invalid value: "x": must be a valid resource quantity',
        'spec.limits[4].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1',
    ]


def test_limitrange_default_request_above_default():
    obj = lr({"type": "Container", "default": {"memory": "1Gi"}, "defaultRequest": {"memory": "2Gi"}})
    assert msgs(limitranges.validate(obj)) == [
        'spec.limits[0].defaultRequest[memory]: Invalid value: "2Gi": '
        "default request value 2Gi is greater than default limit value 1Gi"]


def pod(*resources: dict) -> dict:
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": f"c{i}", "image": "x", "resources": r}
                                    for i, r in enumerate(resources)]}}


def test_limitranger_applies_defaults_only_where_unset():
    ranges = [lr({"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                  "defaultRequest": {"cpu": "100m", "memory": "64Mi"}})]
    p = pod({}, {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
    limitranges.apply_defaults(p, ranges)
    c0, c1 = (c["resources"] for c in p["spec"]["containers"])
    assert c0 == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert c1 == {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "64Mi"}}


def test_limitranger_container_max_min_ratio():
    ranges = [lr({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
                  "maxLimitRequestRatio": {"cpu": "2"}})]
    p = pod({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "32Mi"}})
    assert limitranges.violations(p, ranges) == [
        "minimum memory usage per Container is 64Mi, but request is 32Mi",
        "maximum cpu usage per Container is 1, but limit is 2",
        "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
    ]
    assert limitranges.violations(pod({}), ranges)[:2] == [
        "minimum memory usage per Container is 64Mi.  No request is specified",
        "maximum cpu usage per Container is 1.  No limit is specified"]


def test_limitranger_pod_totals():
    ranges = [lr({"type": "Pod", "max": {"cpu": "1"}})]
    p = pod({"limits": {"cpu": "600m"}}, {"limits": {"cpu": "600m"}})
    assert limitranges.violations(p, ranges) == ["maximum cpu usage per Pod is 1, but limit is 1200m"]
    err = limitranges.forbidden("pods", "p", limitranges.violations(p, ranges))
    assert err.code == 403 and err.message == 'pods "p" is forbidden: maximum cpu usage per Pod is 1, but limit is 1200m'


def test_pod_usage_and_terminal_pods():
    p = pod({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}},
            {"requests": {"cpu": "250m"}})
    u = quota.usage("", "pods", p)
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == Fraction(1, 2) and u["cpu"] == Fraction(1, 2)
    assert u["limits.cpu"] == Fraction(1, 2) and u["requests.memory"] == 64 * 2**20
    p["status"] = {"phase": "Succeeded"}
    assert quota.usage("", "pods", p) == {}
    assert quota.usage("apps", "deployments", {})["count/deployments.apps"] == 1


def test_quota_exceeded_message():
    hard = {"pods": "2", "requests.memory": "1Gi"}
    msg = quota.exceeded("q", hard, {"pods": Fraction(2), "requests.memory": Fraction(0)},
                         {"pods": Fraction(1), "requests.memory": Fraction(2**29)})
    assert msg == "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    msg = quota.exceeded("q", hard, {"pods": Fraction(0), "requests.memory": Fraction(2**29)},
                         {"pods": Fraction(1), "requests.memory": Fraction(2**30)})
    assert msg == ("exceeded quota: q, requested: requests.memory=1Gi, used: requests.memory=512Mi, "
                   "limited: requests.memory=1Gi")
    assert quota.exceeded("q", hard, {}, {"pods": Fraction(1)}) is None


def test_quota_requires_cpu_memory_when_limited():
    p = pod({"requests": {"cpu": "1"}}, {})
    assert quota.missing_constraints(p, {"limits.cpu", "requests.cpu", "pods"}) == (
        "must specify limits.cpu for: c0,c1; requests.cpu for: c1")
    assert quota.missing_constraints(p, {"pods"}) is None


def test_quota_validation():
    obj = {"metadata": {"name": "q", "namespace": "default"},
           "spec": {"hard": {"pods": "1500m", "cpu": "-1", "memory": "x"}}}
    assert msgs(quota_kind.validate(obj)) == [
        'spec.hard[pods]: Invalid value: "1500m": must be an integer',
        'spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0',
        'spec.hard[memory]: Invalid value: "x": must be a valid resource quantity',
    ]


def test_quota_controller_status_from_objects():
    from pocketkube.controllers.resourcequota import quota_status

    rq = {"metadata": {"name": "q", "namespace": "default"},
          "spec": {"hard": {"pods": "10", "requests.memory": "1Gi", "count/deployments.apps": "2"}}}
    done = pod({"requests": {"memory": "1Gi"}})
    done["status"] = {"phase": "Failed"}
    objects = {("", "pods"): [pod({"requests": {"memory": "256Mi"}}), pod({"requests": {"memory": "256Mi"}}), done],
               ("apps", "deployments"): [{"metadata": {"name": "d"}}]}
    assert quota_status(rq, objects) == {
        "hard": rq["spec"]["hard"],
        "used": {"count/deployments.apps": "1", "pods": "2", "requests.memory": "512Mi"}}
    assert quota.kinds_for(list(rq["spec"]["hard"])) == {("", "pods"), ("apps", "deployments")}


def test_quota_scopes():
    besteffort = pod({})
    burstable = pod({"requests": {"cpu": "1"}})
    burstable["spec"]["activeDeadlineSeconds"] = 30
    assert quota.in_scope(["BestEffort"], "", "pods", besteffort)
    assert not quota.in_scope(["BestEffort"], "", "pods", burstable)
    assert quota.in_scope(["NotBestEffort", "Terminating"], "", "pods", burstable)
    assert not quota.in_scope(["NotTerminating"], "", "pods", burstable)
    assert not quota.in_scope(["BestEffort"], "", "services", {})
    assert quota.total("", "pods", [besteffort, burstable], ["pods"], ["BestEffort"]) == {"pods": 1}
    obj = {"metadata": {"name": "q", "namespace": "default"},
           "spec": {"hard": {"pods": "1", "requests.cpu": "1"}, "scopes": ["BestEffort", "NotBestEffort", "Nope"]}}
    assert [e.body() for e in quota_kind.validate(obj)] == [
        'Invalid value: ["BestEffort","NotBestEffort","Nope"]: unsupported scope applied to resource',
        'Invalid value: ["BestEffort","NotBestEffort","Nope"]: unsupported scope',
        'Invalid value: ["BestEffort","NotBestEffort","Nope"]: conflicting scopes',
    ]


def test_limitranger_claims():
    ranges = [lr({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}})]
    claim = {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    assert limitranges.claim_violations(claim, ranges) == [
        "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
    claim["spec"]["resources"]["requests"]["storage"] = "500Mi"
    assert limitranges.claim_violations(claim, ranges) == [
        "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
    claim["spec"]["resources"]["requests"]["storage"] = "1536Mi"
    assert limitranges.claim_violations(claim, ranges) == []
