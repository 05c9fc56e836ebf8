"""Pod defaulting and validation: defaults as a real cluster shows them, Kubernetes' messages."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketkube.registry.core import pods


def pod(**spec_overrides) -> dict:
    spec = {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}
    spec.update(spec_overrides)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "myapp-pod", "namespace": "default", "labels": {"app": "myapp"}}, "spec": spec}


def defaulted(**spec_overrides) -> dict:
    p = pod(**spec_overrides)
    pods.default(p)
    return p


def messages(errs) -> list[str]:
    return [str(e) for e in errs]


def test_defaults_match_a_real_cluster():
    p = defaulted()
    spec, c = p["spec"], p["spec"]["containers"][0]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"][0]["protocol"] == "TCP"
    assert [t["key"] for t in spec["tolerations"]] == ["node.kubernetes.io/not-ready",
                                                      "node.kubernetes.io/unreachable"]
    assert all(t["tolerationSeconds"] == 300 and t["effect"] == "NoExecute" for t in spec["tolerations"])
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert pods.validate(p) == []


def test_pull_policy_depends_on_tag():
    for image, policy in [("nginx:1.25", "IfNotPresent"), ("nginx:latest", "Always"),
                          ("registry:5000/app", "Always"), ("registry:5000/app:v1", "IfNotPresent"),
                          ("nginx@sha256:" + "a" * 64, "IfNotPresent")]:
        p = pod(containers=[{"name": "c", "image": image}])
        pods.default(p)
        assert p["spec"]["containers"][0]["imagePullPolicy"] == policy, image


def test_probe_defaults():
    p = defaulted(containers=[{"name": "c", "image": "x:1", "readinessProbe": {"httpGet": {"port": 80}}}])
    probe = p["spec"]["containers"][0]["readinessProbe"]
    assert probe == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                     "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def test_existing_toleration_suppresses_default():
    p = defaulted(tolerations=[{"operator": "Exists"}])
    assert p["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_requests_default_to_limits_and_qos():
    p = defaulted(containers=[{"name": "c", "image": "x:1",
                               "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}])
    assert p["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}
    assert p["status"]["qosClass"] == "Guaranteed"


def test_containers_required():
    assert "spec.containers: Required value" in messages(pods.validate(defaulted(containers=[])))


def test_container_name_and_image():
    p = defaulted(containers=[{"name": "Web", "image": ""}, {"name": "dup", "image": "a"},
                              {"name": "dup", "image": "b"}])
    msgs = messages(pods.validate(p))
    assert any(m.startswith('spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label') for m in msgs)
    assert "spec.containers[0].image: Required value" in msgs
    assert 'spec.containers[2].name: Duplicate value: "dup"' in msgs


def test_ports():
    p = defaulted(containers=[{"name": "c", "image": "x", "ports": [
        {"containerPort": 70000}, {"containerPort": 80, "name": "HTTP"}, {"name": "a"},
        {"containerPort": 81, "protocol": "ICMP"}]}])
    msgs = messages(pods.validate(p))
    assert "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive" in msgs
    assert ('spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain only alpha-numeric characters '
            "(a-z, 0-9), and hyphens (-)") in msgs
    assert "spec.containers[0].ports[2].containerPort: Required value" in msgs
    assert ('spec.containers[0].ports[3].protocol: Unsupported value: "ICMP": supported values: '
            '"SCTP", "TCP", "UDP"') in msgs


def test_restart_policy_and_env():
    p = defaulted(restartPolicy="Sometimes",
                  containers=[{"name": "c", "image": "x", "env": [{"name": "A=B"}, {"value": "v"}]}])
    msgs = messages(pods.validate(p))
    assert ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", '
            '"Never"') in msgs
    assert ('spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must '
            "consist only of printable ASCII characters other than '='") in msgs
    assert "spec.containers[0].env[1].name: Required value" in msgs


def test_probe_and_resources_shape():
    p = defaulted(containers=[{"name": "c", "image": "x", "livenessProbe": {"periodSeconds": -1},
                               "resources": {"limits": {"cpu": "1", "gpu": "1"}, "requests": {"cpu": "2"}}}])
    msgs = messages(pods.validate(p))
    assert "spec.containers[0].livenessProbe: Required value: must specify a handler type" in msgs
    assert "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0" in msgs
    assert ('spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for '
            "containers") in msgs
    assert 'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1' in msgs


def test_wrong_types_are_field_errors():
    p = pod(containers="nginx")
    pods.default(p)
    assert messages(pods.validate(p))[0] == 'spec.containers: Invalid value: "nginx": must be of type array, not string'
    p = defaulted(containers=[{"name": "c", "image": "x", "ports": [{"containerPort": "80"}]}])
    assert 'spec.containers[0].ports[0].containerPort: Invalid value: "80": must be of type integer, not string' in \
        messages(pods.validate(p))


def test_update_allows_image_and_forbids_other_changes():
    old = defaulted()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.25"
    assert pods.validate_update(new, old) == []
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 81
    errs = pods.validate_update(new, old)
    assert len(errs) == 1 and errs[0].field == "spec" and errs[0].type == "Forbidden"
    assert str(errs[0]).startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)")


def test_update_node_name_and_tolerations():
    old = defaulted()
    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = "node-1"
    assert [e.type for e in pods.validate_update(new, old)] == ["Forbidden"]
    new = copy.deepcopy(old)
    new["spec"]["tolerations"].append({"key": "a", "operator": "Exists"})
    assert pods.validate_update(new, old) == []
    new["spec"]["tolerations"] = new["spec"]["tolerations"][1:]
    assert "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds" in \
        messages(pods.validate_update(new, old))


def test_update_may_not_add_containers():
    old = defaulted()
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "b", "image": "b:1", "imagePullPolicy": "IfNotPresent",
                                      "terminationMessagePath": "/dev/termination-log",
                                      "terminationMessagePolicy": "File"})
    assert "spec.containers: Forbidden: pod updates may not add or remove containers" in \
        messages(pods.validate_update(new, old))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12)
pod_keys = st.sampled_from(["containers", "initContainers", "volumes", "restartPolicy", "tolerations",
                            "nodeSelector", "activeDeadlineSeconds", "hostname", "securityContext"])
container_keys = st.sampled_from(["name", "image", "ports", "env", "resources", "livenessProbe",
                                  "readinessProbe", "volumeMounts", "command", "imagePullPolicy"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(pod_keys, json_values, max_size=4), st.dictionaries(container_keys, json_values, max_size=5),
       json_values)
def test_random_json_never_raises(spec_fields, container_fields, anything):
    p = pod(**spec_fields)
    if isinstance(p["spec"].get("containers"), list):
        p["spec"]["containers"].append(container_fields)
    for obj in (p, {"spec": anything}, {"metadata": anything, "spec": {"containers": [anything]}}):
        pods.default(obj)
        pods.validate(obj)
        pods.validate_update(obj, pod())
