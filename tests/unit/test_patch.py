import copy
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketkube.api.errors import ApiError, BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from pocketkube.apiserver.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_CONTENT_TYPES,
    STRATEGIC_MERGE_PATCH,
    PatchRejected,
    apply_patch,
)


def smp(original: dict, patch: dict, kind: str) -> dict:
    return apply_patch(STRATEGIC_MERGE_PATCH, original, orjson.dumps(patch), kind)


def service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"keep": "me"}, "finalizers": ["a", "b"]},
        "spec": {"type": "NodePort", "selector": {"tier": "web", "app": "web"},
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30001},
                           {"port": 443, "protocol": "TCP", "targetPort": 443, "nodePort": 30002}]},
    }


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                },
            },
        },
    }


def ports_of(obj: dict) -> list[int]:
    return [p["port"] for p in obj["spec"]["ports"]]


# --- content types ----------------------------------------------------------------------------------

def test_unknown_content_type_is_415_with_kubernetes_message():
    with pytest.raises(UnsupportedMediaType) as e:
        apply_patch("application/json", service(), b"{}", "Service")
    assert e.value.code == 415
    assert e.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
        "application/strategic-merge-patch+json")


def test_content_type_parameters_are_ignored():
    out = apply_patch(MERGE_PATCH + "; charset=utf-8", service(), b'{"spec":{"type":"ClusterIP"}}', "Service")
    assert out["spec"]["type"] == "ClusterIP"


def test_original_is_never_mutated():
    original = deployment()
    before = copy.deepcopy(original)
    for content_type, body in [
        (JSON_PATCH, b'[{"op":"replace","path":"/spec/replicas","value":9}]'),
        (MERGE_PATCH, b'{"spec":{"template":{"metadata":{"labels":{"app":null}}}}}'),
        (STRATEGIC_MERGE_PATCH, b'{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"x"}]}}}}'),
        (APPLY_PATCH, b'{"spec":{"replicas":1}}'),
    ]:
        out = apply_patch(content_type, original, body, "Deployment")
        out["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"  # result shares nothing
        assert original == before


# --- JSON patch ---------------------------------------------------------------------------------------

def test_json_patch_rollout_undo_replaces_template():
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "old"}]}}
    body = orjson.dumps([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "1"}},
    ])
    out = apply_patch(JSON_PATCH, {**deployment(), "metadata": {"name": "app", "annotations": {}}}, body,
                      "Deployment")
    assert out["spec"]["template"] == template
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}


def test_json_patch_add_remove_test_move_copy():
    body = orjson.dumps([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
        {"op": "move", "from": "/metadata/labels/x", "path": "/metadata/labels/z"},
        {"op": "remove", "path": "/spec/strategy"},
    ])
    out = apply_patch(JSON_PATCH, deployment(), body, "Deployment")
    assert out["metadata"]["labels"] == {"z": "y"}
    assert out["metadata"]["annotations"] == {"x": "y"}
    assert "strategy" not in out["spec"]


@pytest.mark.parametrize("body", [
    b'[{"op":"test","path":"/spec/replicas","value":4}]',
    b'[{"op":"replace","path":"/spec/nothing/here","value":1}]',
    b'[{"op":"remove","path":"/metadata/labels"}]',
    b'[{"op":"frobnicate","path":"/spec"}]',
    b'[{"path":"/spec"}]',
    b'[{"op":"add","path":7,"value":1}]',
    b'[{"op":"add","path":"/spec/replicas"}]',
    b'[{"op":"move","path":"/spec/x"}]',
])
def test_json_patch_that_cannot_apply_is_kubernetes_generic_422(body):
    with pytest.raises(PatchRejected) as e:
        apply_patch(JSON_PATCH, deployment(), body, "Deployment")
    status = e.value.status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == "the server rejected our request due to an error in our request"
    assert e.value.cause


@pytest.mark.parametrize("body, message", [
    (b'{"op":"add"}', "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    (b'"x"', "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
    (b'[1]', "json: cannot unmarshal number into Go value of type jsonpatch.Operation"),
])
def test_json_patch_that_is_not_a_list_of_objects_is_400(body, message):
    with pytest.raises(BadRequest) as e:
        apply_patch(JSON_PATCH, deployment(), body, "Deployment")
    assert e.value.message == message


def test_json_patch_null_is_an_empty_patch():
    assert apply_patch(JSON_PATCH, service(), b"null", "Service") == service()


def test_json_patch_replacing_the_root_with_a_non_object_is_400():
    with pytest.raises(BadRequest, match="not an object"):
        apply_patch(JSON_PATCH, service(), b'[{"op":"replace","path":"","value":[1]}]', "Service")


def test_json_patch_operation_limit():
    body = orjson.dumps([{"op": "test", "path": "/kind", "value": "Service"}] * 10001)
    with pytest.raises(RequestEntityTooLarge, match="maximum operations in a JSON patch is 10000, got 10001"):
        apply_patch(JSON_PATCH, service(), body, "Service")


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH])
def test_invalid_json_is_400_error_decoding_patch(content_type):
    with pytest.raises(BadRequest) as e:
        apply_patch(content_type, service(), b'{"spec": ', "Service")
    assert e.value.code == 400
    assert e.value.message.startswith("error decoding patch: ")


# --- JSON merge patch -------------------------------------------------------------------------------

def test_merge_patch_label_and_annotate():
    body = b'{"metadata":{"labels":{"team":"a","app":null},"annotations":{"note":"x"}}}'
    out = apply_patch(MERGE_PATCH, service(), body, "Service")
    assert out["metadata"]["labels"] == {"team": "a"}
    assert out["metadata"]["annotations"] == {"keep": "me", "note": "x"}


def test_merge_patch_scale():
    scale = {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "app"},
             "spec": {"replicas": 3}, "status": {"replicas": 3, "selector": "app=web"}}
    out = apply_patch(MERGE_PATCH, scale, b'{"spec":{"replicas":5}}', "Scale")
    assert out["spec"] == {"replicas": 5}
    assert out["status"] == scale["status"]


def test_merge_patch_replaces_lists_and_keeps_nulls_inside_them():
    out = apply_patch(MERGE_PATCH, service(), b'{"spec":{"ports":[{"port":8080,"name":null}]}}', "Service")
    assert out["spec"]["ports"] == [{"port": 8080, "name": None}]


def test_merge_patch_replaces_a_scalar_with_an_object():
    out = apply_patch(MERGE_PATCH, service(), b'{"spec":{"type":{"a":{"b":null,"c":1}}}}', "Service")
    assert out["spec"]["type"] == {"a": {"c": 1}}


@pytest.mark.parametrize("body", [b"[]", b"3", b"null"])
def test_merge_patch_must_be_an_object(body):
    with pytest.raises(BadRequest, match="cannot unmarshal"):
        apply_patch(MERGE_PATCH, service(), body, "Service")


# --- strategic merge patch: merging ------------------------------------------------------------------

def test_smp_maps_merge_recursively_and_null_deletes():
    out = smp(service(), {"metadata": {"labels": {"team": "a"}}, "spec": {"selector": {"tier": None}}}, "Service")
    assert out["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert out["spec"]["selector"] == {"app": "web"}
    assert smp(service(), {"spec": {"selector": None}}, "Service")["spec"].get("selector") is None
    assert "nothing" not in smp(service(), {"spec": {"nothing": None}}, "Service")["spec"]


def test_smp_kubectl_apply_service_ports_merge_by_port():
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
             "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                      "ports": [{"nodePort": 30009, "port": 80}]}}
    out = smp(service(), patch, "Service")
    assert out["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30009}
    assert out["spec"]["ports"][1]["nodePort"] == 30002
    assert out["metadata"]["annotations"]["keep"] == "me"
    assert "$setElementOrder/ports" not in out["spec"]


def test_smp_new_merge_list_items_go_first_like_kubernetes():
    assert ports_of(smp(service(), {"spec": {"ports": [{"port": 8080}]}}, "Service")) == [8080, 80, 443]


def test_smp_repeated_new_items_in_a_patch_merge_into_one():
    out = smp(service(), {"spec": {"ports": [{"port": 8080, "name": "a"}, {"port": 8080, "protocol": "UDP"}]}},
              "Service")
    assert out["spec"]["ports"][0] == {"port": 8080, "name": "a", "protocol": "UDP"}
    assert ports_of(out) == [8080, 80, 443]


def test_smp_set_element_order_reorders():
    out = smp(service(), {"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}]}}, "Service")
    assert ports_of(out) == [443, 80]
    out = smp(service(), {"spec": {"$setElementOrder/ports": [{"port": 8080}, {"port": 80}],
                                   "ports": [{"port": 8080}]}}, "Service")
    assert ports_of(out) == [8080, 80, 443]  # 443 is not listed: it keeps its place after 80


def test_smp_set_element_order_for_primitive_list():
    out = smp(service(), {"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}},
              "Service")
    assert out["metadata"]["finalizers"] == ["c", "b", "a"]


def test_smp_set_element_order_that_contradicts_the_patch_is_400():
    with pytest.raises(BadRequest, match="doesn't match"):
        smp(service(), {"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                                 "ports": [{"port": 443}, {"port": 80}]}}, "Service")


def test_smp_kubectl_apply_deployment_containers_and_env():
    patch = {"spec": {"replicas": 4, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}, {"name": "extra"}],
        "containers": [{"name": "nginx", "image": "nginx:1.27",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "MODE"}],
                        "env": [{"name": "MODE", "value": "prod"}, {"name": "B", "$patch": "delete"}]},
                       {"name": "extra", "image": "busybox"}]}}}}
    out = smp(deployment(), patch, "Deployment")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar", "extra"]
    assert containers[0]["image"] == "nginx:1.27"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "MODE", "value": "prod"}]
    assert containers[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert out["spec"]["replicas"] == 4


def test_smp_set_image_and_rollout_restart():
    out = smp(deployment(), {"spec": {"template": {
        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}},
        "spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}}, "Deployment")
    template = out["spec"]["template"]
    assert template["metadata"] == {"labels": {"app": "web"},
                                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}
    assert [(c["name"], c["image"]) for c in template["spec"]["containers"]] == [
        ("nginx", "nginx:1.25"), ("sidecar", "busybox:1.36")]


def test_smp_container_ports_volume_mounts_and_volumes_merge_by_their_keys():
    out = smp(deployment(), {"spec": {"template": {"spec": {
        "containers": [{"name": "nginx",
                        "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}],
                        "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}],
        "volumes": [{"name": "cache", "emptyDir": {}}]}}}}, "Deployment")
    spec = out["spec"]["template"]["spec"]
    assert spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"},
                                              {"containerPort": 9090}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert [v["name"] for v in spec["volumes"]] == ["cache", "data"]


def test_smp_list_without_merge_key_is_replaced():
    out = smp(deployment(), {"spec": {"template": {"spec": {"tolerations": [{"key": "k2"}]}}}}, "Deployment")
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k2"}]


def test_smp_pod_kind_uses_pod_paths():
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": deployment()["spec"]["template"]["spec"]}
    out = smp(pod, {"spec": {"containers": [{"name": "nginx", "env": [{"name": "A", "value": "9"}]}]}}, "Pod")
    assert out["spec"]["containers"][0]["env"] == [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]


def test_smp_conditions_owner_references_and_finalizers():
    pod = {"kind": "Pod", "metadata": {"name": "p", "finalizers": ["a"],
                                       "ownerReferences": [{"uid": "u1", "name": "rs", "kind": "ReplicaSet"}]},
           "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}
    out = smp(pod, {"metadata": {"finalizers": ["b", "a"], "ownerReferences": [{"uid": "u1", "controller": True}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Pod")
    assert out["metadata"]["finalizers"] == ["b", "a"]
    assert out["metadata"]["ownerReferences"] == [{"uid": "u1", "name": "rs", "kind": "ReplicaSet", "controller": True}]
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]


def test_smp_merge_list_with_empty_patch_list_is_unchanged():
    assert smp(service(), {"metadata": {"finalizers": []}}, "Service")["metadata"]["finalizers"] == ["a", "b"]


def test_smp_unknown_kind_merges_maps_and_replaces_lists():
    out = smp({"spec": {"a": 1, "items": [{"name": "x"}]}}, {"spec": {"b": 2, "items": [{"name": "y"}]}}, "Widget")
    assert out == {"spec": {"a": 1, "b": 2, "items": [{"name": "y"}]}}


def test_smp_node_addresses_merge_by_type():
    node = {"kind": "Node", "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
    out = smp(node, {"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}, "Node")
    assert [a["type"] for a in out["status"]["addresses"]] == ["Hostname", "InternalIP"]


# --- strategic merge patch: directives --------------------------------------------------------------

def test_smp_patch_delete_in_a_list_removes_by_merge_key():
    out = smp(service(), {"spec": {"ports": [{"port": 443, "$patch": "delete"}]}}, "Service")
    assert ports_of(out) == [80]


def test_smp_patch_delete_in_a_map_empties_it_like_kubernetes():
    out = smp(service(), {"spec": {"selector": {"$patch": "delete"}}}, "Service")
    assert out["spec"]["selector"] == {}


def test_smp_patch_replace_in_a_map():
    out = smp(service(), {"spec": {"selector": {"$patch": "replace", "only": "this", "gone": None}}}, "Service")
    assert out["spec"]["selector"] == {"only": "this"}


def test_smp_patch_replace_in_a_list():
    out = smp(service(), {"spec": {"ports": [{"$patch": "replace"}, {"port": 9000}]}}, "Service")
    assert out["spec"]["ports"] == [{"port": 9000}]


def test_smp_retain_keys_clears_other_fields():
    out = smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                                   "rollingUpdate": None}}}, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_must_cover_the_patch():
    with pytest.raises(BadRequest, match="invalid patch format of retainKeys"):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "Deployment")
    with pytest.raises(BadRequest, match="invalid patch format of retainKeys"):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": "type"}}}, "Deployment")


def test_smp_delete_from_primitive_list():
    out = smp(service(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "Service")
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(service(), {"metadata": {"$deleteFromPrimitiveList/absent": ["a"]}}, "Service")
    assert "absent" not in out["metadata"]


def test_smp_directives_never_leak_even_into_new_fields():
    patch = {"spec": {"template": {"spec": {"initContainers": [
        {"name": "init", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}],
         "$setElementOrder/env": [{"name": "X"}], "$retainKeys": ["name", "env"], "gone": None}],
        "newMap": {"$patch": "replace", "k": {"$deleteFromPrimitiveList/x": ["y"], "v": 1}}}}}}
    out = smp(deployment(), patch, "Deployment")
    spec = out["spec"]["template"]["spec"]
    assert spec["initContainers"] == [{"name": "init", "env": [{"name": "X", "value": "1"}]}]
    assert spec["newMap"] == {"k": {"v": 1}}
    assert "$" not in orjson.dumps(out).decode()


@pytest.mark.parametrize("patch, message", [
    ({"spec": {"ports": [{"nodePort": 1}]}}, "does not contain declared merge key: port"),
    ({"spec": {"selector": {"$patch": "explode"}}}, "unknown patch type: explode in map: map[$patch:explode]"),
    ({"spec": {"ports": [{"port": 80, "$patch": "merge"}]}}, "merging lists cannot yet be specified"),
    ({"spec": {"$setElementOrder/ports": {"port": 80}}}, "invalid patch format of setElementOrder list"),
    ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "invalid patch format of primitive list"),
    ({"metadata": {"finalizers": ["x", 1]}}, "list element types are not identical"),
    ({"metadata": {"finalizers": [{"a": 1}]}}, "list element types are not identical"),
    ({"spec": {"ports": [{"port": {"x": 1}}]}}, "merge key"),
])
def test_smp_malformed_patches_are_400(patch, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        smp(service(), patch, "Service")


def test_smp_lists_of_lists_are_422():
    with pytest.raises(PatchRejected):
        smp(service(), {"metadata": {"finalizers": [["a"]]}}, "Service")


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"null"])
def test_smp_must_be_an_object(body):
    with pytest.raises(BadRequest, match="cannot unmarshal .* into Go value of type map"):
        apply_patch(STRATEGIC_MERGE_PATCH, service(), body, "Service")


@pytest.mark.parametrize("content_type", [MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH])
def test_deeply_nested_patch_is_400_not_recursion_error(content_type):
    depth = 1020  # under orjson's nesting limit, over what the recursive merge can follow
    body = b'{"a":' * depth + b"1" + b"}" * depth
    with pytest.raises(BadRequest, match="nested too deeply"):
        apply_patch(content_type, {}, body, "Service")


# --- server-side apply approximation ----------------------------------------------------------------

def test_apply_patch_json_body_merges_like_smp():
    intent = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"team": "a"}},
              "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    out = apply_patch(APPLY_PATCH, service(), orjson.dumps(intent), "Service")
    assert out["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30001}
    assert out["metadata"]["labels"] == {"app": "web", "team": "a"}


def test_apply_patch_yaml_body_keeps_timestamps_as_strings():
    body = b"metadata:\n  annotations:\n    when: 2024-01-01T00:00:00Z\n    1: one\nspec:\n  replicas: 2\n"
    out = apply_patch(APPLY_PATCH, deployment(), body, "Deployment")
    assert out["metadata"]["annotations"] == {"when": "2024-01-01T00:00:00Z", "1": "one"}
    assert out["spec"]["replicas"] == 2


@pytest.mark.parametrize("body", [
    b"spec: [unclosed", b"- a\n- b\n", b"", b"a: &x 1\nb: *x\n", b"a: !!binary aGk=\n", b"a: .nan\n",
    b"a: 1\n---\nb: 2\n", b"a: !!python/object:os.system {}\n", b"a: !!timestamp 2024-01-01\n",
    b"a: 99999999999999999999999\n",
])
def test_apply_patch_bad_yaml_is_400(body):
    with pytest.raises(BadRequest, match="error decoding YAML"):
        apply_patch(APPLY_PATCH, service(), body, "Service")


# --- never anything but ApiError -------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False,
                                                                                   allow_infinity=False) \
    | st.sampled_from(["", "a", "$patch", "delete", "replace", "merge", "/spec", "/spec/ports/0", "name", "port"])
json_keys = st.sampled_from([
    "spec", "metadata", "ports", "port", "name", "selector", "finalizers", "labels", "containers", "template",
    "env", "op", "path", "value", "from", "$patch", "$retainKeys", "$setElementOrder/ports",
    "$setElementOrder/finalizers", "$deleteFromPrimitiveList/finalizers", "$setElementOrder/containers",
]) | st.text(max_size=5)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(json_keys, inner, max_size=4), max_leaves=20)
json_patch_ops = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
     "path": st.sampled_from(["", "/", "/spec", "/spec/ports/0", "/spec/ports/-", "/metadata/x/y", "/kind"])},
    optional={"value": json_values, "from": st.sampled_from(["/spec", "/spec/ports/1", "/nope", 3])}), max_size=4)


def _assert_only_api_errors(content_type: str, original: dict, body: bytes, kind: str) -> None:
    try:
        result = apply_patch(content_type, original, body, kind)
    except ApiError as e:
        assert 400 <= e.code < 500
    else:
        assert isinstance(result, dict)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content_type=st.sampled_from(PATCH_CONTENT_TYPES), patch=json_values,
       kind=st.sampled_from(["Service", "Deployment", "Pod", "Widget"]))
def test_random_json_bodies_raise_only_api_errors(content_type, patch, kind):
    original = service() if kind == "Service" else deployment()
    _assert_only_api_errors(content_type, original, orjson.dumps(patch), kind)


@settings(max_examples=100, deadline=None)
@given(ops=json_patch_ops)
def test_random_json_patches_raise_only_api_errors(ops):
    _assert_only_api_errors(JSON_PATCH, service(), orjson.dumps(ops), "Service")


@settings(max_examples=100, deadline=None)
@given(content_type=st.sampled_from(PATCH_CONTENT_TYPES), body=st.binary(max_size=40))
def test_random_bytes_raise_only_api_errors(content_type, body):
    _assert_only_api_errors(content_type, service(), body, "Service")
