"""Bad input of every kind gets a 4xx Kubernetes Status, never a 500 or a hang, and the server goes on."""

from __future__ import annotations

import json

import pytest
from apiclient import DEPLOYMENTS, PODS, SERVICES, Api, Reply, deployment, pod, service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MiB = 1024 * 1024


def assert_status(reply: Reply, code: int, reason: str, message: str | None = None,
                  field: str | None = None) -> dict:
    """A Failure Status with this code and reason; `message` is a substring, `field` a cause's field."""
    assert reply.status == code, reply.body[:500]
    status = reply.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1", status
    assert status["status"] == "Failure" and status["code"] == code and status["reason"] == reason, status
    if message is not None:
        assert message in status["message"], status["message"]
    if field is not None:
        causes = status["details"]["causes"]
        assert field in [c.get("field") for c in causes], causes
    return status


@pytest.fixture(scope="module", autouse=True)
def still_serving_at_the_end(server):
    """After all of this module's abuse, the same server process still answers a GET."""
    yield
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    probe = Api(server)
    try:
        assert probe.get(SERVICES + "/kubernetes").status == 200
    finally:
        probe.close()


# ---- bodies ----

@pytest.mark.parametrize("body, content_type, message", [
    ('{"apiVersion": "v1", "kind": ', "application/json", "json parse error"),
    ("{bad", "application/json", "json parse error"),
    ("kind: Service\nmetadata: [name: x", "application/yaml", "yaml parse error"),
    ("[1, 2]", "application/json", "Object 'Kind' is missing"),
    ("42", "application/json", "Object 'Kind' is missing"),
    ('"a string"', "application/json", "Object 'Kind' is missing"),
    ("null", "application/json", "Object 'Kind' is missing"),
    ("- a\n- b\n", "application/yaml", "Object 'Kind' is missing"),
    ("[" * 10_000 + "]" * 10_000, "application/json", "json parse error"),
    ('{"a":' * 10_000 + "1" + "}" * 10_000, "application/json", "json parse error"),
    ("a:\n" + "  " * 1 + "- " * 5000 + "x", "application/yaml", None),
    (b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"\xff\xfe"}}', "application/json", None),
])
def test_malformed_bodies_are_400(api, body, content_type, message):
    reply = api.post(SERVICES, body, content_type=content_type)
    assert_status(reply, 400, "BadRequest", message)


def test_empty_body_is_400(api):
    assert_status(api.post(SERVICES, b""), 400, "BadRequest")


@pytest.mark.parametrize("api_version, kind, message", [
    ("v1", "Pod", "the kind in the data (Pod) does not match the expected kind (Service)"),
    ("apps/v1", "Service", "the API version in the data (apps/v1) does not match the expected API version (v1)"),
    ("v2", "Service", "does not match the expected API version (v1)"),
])
def test_wrong_kind_or_api_version_for_the_url(api, api_version, kind, message):
    body = dict(service("wrong-kind"), apiVersion=api_version, kind=kind)
    assert_status(api.post(SERVICES, body), 400, "BadRequest", message)


def test_oversized_body_is_413(api):
    big = service("big", labels={"a": "b"})
    big["metadata"]["annotations"] = {"blob": "x" * (3 * MiB + 10)}
    reply = api.post(SERVICES, big)
    assert_status(reply, 413, "RequestEntityTooLarge", "Request entity too large")


def test_oversized_patch_is_413(api):
    reply = api.request("PATCH", SERVICES + "/kubernetes", {"metadata": {"annotations": {"x": "y" * (4 * MiB)}}},
                        content_type="application/merge-patch+json")
    assert_status(reply, 413, "RequestEntityTooLarge")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/xml"])
def test_unknown_content_type_is_415(api, content_type):
    reply = api.post(SERVICES, json.dumps(service("ctype")), content_type=content_type)
    assert_status(reply, 415, "UnsupportedMediaType", "the body of the request was in an unknown format")


# ---- unknown fields: fieldValidation ----

UNKNOWN = service("unknown-fields")
UNKNOWN["spec"]["bogus"] = 1
UNKNOWN["spec"]["ports"][0]["alsoBogus"] = True


def test_unknown_fields_strict_is_400_with_kubernetes_message(api):
    reply = api.post(SERVICES + "?fieldValidation=Strict", UNKNOWN)
    assert_status(reply, 400, "BadRequest",
                  'Service in version "v1" cannot be handled as a Service: strict decoding error: ')
    message = reply.json()["message"]
    assert 'unknown field "spec.bogus"' in message and 'unknown field "spec.ports[0].alsoBogus"' in message


def test_unknown_fields_warn_is_created_with_warning_headers(api):
    reply = api.post(SERVICES + "?fieldValidation=Warn&dryRun=All", UNKNOWN)
    assert reply.status == 201, reply.body
    assert sorted(reply.header_values("Warning")) == [
        '299 - "unknown field \\"spec.bogus\\""', '299 - "unknown field \\"spec.ports[0].alsoBogus\\""']
    assert "bogus" not in reply.json()["spec"] and "alsoBogus" not in reply.json()["spec"]["ports"][0]


def test_unknown_fields_ignore_is_silent(api):
    reply = api.post(SERVICES + "?fieldValidation=Ignore&dryRun=All", UNKNOWN)
    assert reply.status == 201 and reply.header_values("Warning") == []
    assert "bogus" not in reply.json()["spec"]


def test_unknown_field_validation_mode_is_400(api):
    assert_status(api.post(SERVICES + "?fieldValidation=Loud", UNKNOWN), 400, "BadRequest",
                  "fieldValidation parameter unsupported: Loud")


# ---- validation: 422 with field paths ----

@pytest.mark.parametrize("name, message", [
    ("Upper", "a DNS-1035 label must consist of lower case alphanumeric characters"),
    ("a" * 64, "must be no more than 63 characters"),
    ("a/b", "a DNS-1035 label"),
    ("", "name or generateName is required"),
])
def test_invalid_service_names_are_422(api, name, message):
    reply = api.post(SERVICES, service(name))
    assert_status(reply, 422, "Invalid", message, "metadata.name")


def test_invalid_pod_name_is_422(api):
    reply = api.post(PODS, pod("Bad_Name"))
    assert_status(reply, 422, "Invalid", "a lowercase RFC 1123 subdomain", "metadata.name")


@pytest.mark.parametrize("labels, message", [
    ({"bad key!": "v"}, "name part must consist of alphanumeric characters"),
    ({"k": "bad value!"}, "a valid label must be an empty string or consist of alphanumeric characters"),
    ({"k": "v" * 64}, "must be no more than 63 characters"),
    ({"a/b/c": "v"}, "a qualified name must consist of alphanumeric characters"),
])
def test_invalid_labels_are_422(api, labels, message):
    reply = api.post(SERVICES, service("labels", labels=labels))
    assert_status(reply, 422, "Invalid", message, "metadata.labels")


@pytest.mark.parametrize("spec, field, message", [
    ({"ports": [{"port": 0}]}, "spec.ports[0].port",
     "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ({"ports": [{"port": 65536}]}, "spec.ports[0].port",
     "spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"),
    ({"ports": [{"port": 80, "nodePort": 30555}]}, "spec.ports[0].nodePort",
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    ({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}, "spec.ports[1].name",
     'spec.ports[1].name: Duplicate value: "a"'),
    ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name", "spec.ports[0].name: Required value"),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}, "spec.ports[0].nodePort",
     "provided port is not in the valid range. The range of valid ports is 30000-32767"),
    ({"type": "Sideways", "ports": [{"port": 80}]}, "spec.type", 'Unsupported value: "Sideways"'),
])
def test_invalid_service_specs_are_422_naming_the_field(api, spec, field, message):
    reply = api.post(SERVICES, service("bad-spec", **spec))
    assert_status(reply, 422, "Invalid", message, field)


# ---- list and watch parameters ----

@pytest.mark.parametrize("query, message", [
    ("labelSelector=a%3D%3D%3Db", "unable to parse requirement"),
    ("labelSelector=!!", "unable to parse requirement"),
    ("labelSelector=a+in+(b", None),
    ("fieldSelector=spec.bogus%3Dx", "field label not supported: spec.bogus"),
    ("fieldSelector=%3D%3D%3D", None),
    ("limit=abc", "invalid value for limit"),
    ("continue=garbage!!", "continue key is not valid"),
    ("limit=1&continue=eyJ4IjoxfQ%3D%3D", "continue key is not valid"),
    ("watch=1&labelSelector=!!", "unable to parse requirement"),
    ("watch=1&fieldSelector=spec.bogus%3Dx", "field label not supported"),
    ("watch=1&resourceVersion=abc", "invalid resource version"),
    ("watch=1&resourceVersion=-5", "invalid resource version"),
    ("watch=1&timeoutSeconds=soon", "invalid value for timeoutSeconds"),
])
def test_bad_list_and_watch_parameters_are_400(api, query, message):
    assert_status(api.get(f"{SERVICES}?{query}"), 400, "BadRequest", message)


# ---- patches ----

PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]


@pytest.fixture(scope="module")
def patch_target(server):
    client = Api(server)
    assert client.post(SERVICES, service("patch-target")).status == 201
    yield SERVICES + "/patch-target"
    client.request("DELETE", SERVICES + "/patch-target")
    client.close()


@pytest.mark.parametrize("content_type", PATCH_TYPES)
@pytest.mark.parametrize("body", ["{bad", "42", '"text"', "[1]"])
def test_undecodable_patch_is_400(api, patch_target, content_type, body):
    reply = api.request("PATCH", patch_target + "?fieldManager=test", body, content_type=content_type)
    assert_status(reply, 400, "BadRequest")


@pytest.mark.parametrize("operations", [
    [{"op": "bogus", "path": "/spec"}],
    [{"op": "replace", "path": "/spec/ports/9/port", "value": 1}],
    [{"op": "test", "path": "/spec/type", "value": "NodePort"}],
    [{"op": "remove"}],
])
def test_json_patch_that_cannot_apply_is_422(api, patch_target, operations):
    # Kubernetes answers these with its generic 422, without causes.
    reply = api.request("PATCH", patch_target, operations, content_type="application/json-patch+json")
    assert_status(reply, 422, "Invalid", "the server rejected our request due to an error in our request")


@pytest.mark.parametrize("content_type", PATCH_TYPES[1:])
@pytest.mark.parametrize("body, code, field", [
    ({"spec": {"ports": [{"port": 0}]}}, 422, "spec.ports[0].port"),
    ({"spec": {"ports": "not-a-list"}}, 422, "spec.ports"),
    ({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 1}]}}, 422, "spec.ports[0].nodePort"),
    ({"kind": "Pod"}, 400, None),
])
def test_patch_producing_a_bad_object_is_4xx(api, patch_target, content_type, body, code, field):
    reply = api.request("PATCH", patch_target + "?fieldManager=test", body, content_type=content_type)
    assert_status(reply, code, "Invalid" if code == 422 else "BadRequest", field=field)


@pytest.mark.parametrize("content_type", PATCH_TYPES[2:])
@pytest.mark.parametrize("body, message", [
    ({"spec": {"ports": [{"$patch": "bogus", "port": 1}]}}, "unknown patch type: bogus"),
    ({"spec": {"$retainKeys": "x"}}, "invalid patch format of retainKeys"),
    ({"spec": {"$setElementOrder/ports": "x"}}, "invalid patch format of setElementOrder list"),
])
def test_bad_strategic_directives_are_400(api, patch_target, content_type, body, message):
    reply = api.request("PATCH", patch_target + "?fieldManager=test", body, content_type=content_type)
    assert_status(reply, 400, "BadRequest", message)


@pytest.mark.parametrize("content_type", PATCH_TYPES[1:])
def test_patch_cannot_rename_the_object(api, patch_target, content_type):
    reply = api.request("PATCH", patch_target + "?fieldManager=test", {"metadata": {"name": "renamed"}},
                        content_type=content_type)
    assert_status(reply, 400, "BadRequest",
                  "the name of the object (renamed) does not match the name on the URL (patch-target)")


def test_update_cannot_move_the_object_to_another_namespace(api, patch_target):
    current = api.get(patch_target).json()
    current["metadata"]["namespace"] = "kube-system"
    assert_status(api.request("PUT", patch_target, current), 400, "BadRequest",
                  "the namespace of the object (kube-system) does not match the namespace on the URL (default)")


@pytest.mark.parametrize("depth", [150, 600, 1000])
def test_deeply_nested_objects_are_400(api, patch_target, depth):
    # Within the JSON parser's limit, beyond what any real object needs: refused, not a RecursionError.
    nested = '{"a":' * depth + "1" + "}" * depth
    body = json.dumps(service("deep"))[:-2] + ', "x": ' + nested + "}}"
    assert_status(api.post(SERVICES, body), 400, "BadRequest", "nested too deeply")
    reply = api.request("PATCH", patch_target, '{"spec": {"x": ' + nested + "}}", content_type=PATCH_TYPES[1])
    assert reply.status == 400, reply.body[:300]


def test_yaml_aliases_are_refused(api):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20))
    reply = api.post(SERVICES, "kind: Service\napiVersion: v1\nmetadata: {name: bomb}\nspec:\n" +
                     "".join("  " + line + "\n" for line in bomb.splitlines()), content_type="application/yaml")
    assert_status(reply, 400, "BadRequest", "YAML aliases are not supported")


def test_patch_with_unsupported_content_type_is_415(api, patch_target):
    reply = api.request("PATCH", patch_target, {}, content_type="application/json")
    assert_status(reply, 415, "UnsupportedMediaType")


def test_apply_patch_without_field_manager_is_400(api, patch_target):
    reply = api.request("PATCH", patch_target, {"spec": {}}, content_type="application/apply-patch+yaml")
    assert_status(reply, 400, "BadRequest", "fieldManager")


# ---- deletes ----

@pytest.mark.parametrize("body, message", [
    ("{bad", "error decoding DeleteOptions"),
    ("[1]", None),
    ('{"propagationPolicy": "Bogus"}', 'Unsupported value: "Bogus"'),
    ('{"gracePeriodSeconds": "soon"}', None),
    ('{"preconditions": "x"}', None),
    ('{"preconditions": {"uid": 5}}', None),
    ('{"preconditions": {"resourceVersion": ["1"]}}', None),
])
def test_delete_with_bad_options_is_400_and_deletes_nothing(api, patch_target, body, message):
    reply = api.request("DELETE", patch_target, body)
    assert_status(reply, 400, "BadRequest", message)
    assert api.get(patch_target).status == 200


def test_delete_with_bad_query_is_400(api, patch_target):
    assert_status(api.request("DELETE", patch_target + "?gracePeriodSeconds=x"), 400, "BadRequest")
    assert_status(api.request("DELETE", patch_target + "?propagationPolicy=Sometimes"), 400, "BadRequest")


# ---- authentication ----

@pytest.mark.parametrize("token, headers", [
    ("", None),
    ("not-the-token", None),
    ("", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
    ("", {"Authorization": "Bearer"}),
])
def test_unauthenticated_is_401_status(api, token, headers):
    reply = api.request("GET", SERVICES, token=token, headers=headers)
    assert_status(reply, 401, "Unauthorized", "Unauthorized")
    reply = api.request("POST", SERVICES, service("anon"), token=token, headers=headers)
    assert_status(reply, 401, "Unauthorized")


# ---- random bodies ----

_KEYS = ["apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations", "generateName",
         "finalizers", "ownerReferences", "resourceVersion", "uid", "spec", "status", "type", "ports", "port",
         "nodePort", "targetPort", "protocol", "selector", "clusterIP", "clusterIPs", "ipFamilies",
         "ipFamilyPolicy", "externalIPs", "sessionAffinity", "externalTrafficPolicy", "containers", "image",
         "env", "value", "replicas", "template", "matchLabels", "matchExpressions", "key", "operator", "values",
         "strategy", "rollingUpdate", "maxSurge", "x"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["TCP", "UDP", "SCTP", "NodePort", "ClusterIP", "None", "LoadBalancer", "ExternalName",
                     "1.2.3.4", "127.96.0.9", "web", "80", "IPv4", "IPv6", "RequireDualStack", "nginx"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4), max_leaves=20)
_KINDS = {"services": (SERVICES, service("fuzz", type="NodePort")), "pods": (PODS, pod("fuzz")),
          "deployments": (DEPLOYMENTS, deployment("fuzz"))}
_API_VERSIONS = {"services": ("v1", "Service"), "pods": ("v1", "Pod"), "deployments": ("apps/v1", "Deployment")}


@st.composite
def manifests(draw) -> tuple[str, dict]:
    kind = draw(st.sampled_from(sorted(_KINDS)))
    api_version, kind_name = _API_VERSIONS[kind]
    meta = draw(st.one_of(_VALUES, st.fixed_dictionaries(
        {"name": st.just("fuzz")}, optional={k: _VALUES for k in ("labels", "annotations", "generateName",
                                                                     "finalizers", "resourceVersion")})))
    body = {"apiVersion": api_version, "kind": kind_name, "metadata": meta, "spec": draw(_VALUES)}
    if draw(st.booleans()):
        body["status"] = draw(_VALUES)
    return kind, draw(st.one_of(st.just(body), _VALUES.map(lambda v: {"spec": v})))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(manifest=manifests(), verb=st.sampled_from(["POST", "PUT", "merge", "strategic", "apply", "json"]),
       value=_VALUES)
def test_random_bodies_never_cause_a_server_error(api, manifest, verb, value):
    kind, body = manifest
    collection, seed = _KINDS[kind]
    if verb == "POST":
        reply = api.post(collection, body)
    else:
        api.post(collection, seed)  # 201, or 409 when it already exists
        target = collection + "/fuzz"
        if verb == "PUT":
            reply = api.request("PUT", target, body)
        elif verb == "json":
            ops = value if isinstance(value, list) else [{"op": "add", "path": "/spec/x", "value": value}]
            reply = api.request("PATCH", target, ops, content_type="application/json-patch+json")
        else:
            content_type = {"merge": PATCH_TYPES[1], "strategic": PATCH_TYPES[2], "apply": PATCH_TYPES[3]}[verb]
            reply = api.request("PATCH", target + "?fieldManager=fuzz", body, content_type=content_type)
    assert reply.status < 500, (verb, kind, body, reply.body[:500])
    if reply.status >= 400:
        assert reply.json()["kind"] == "Status"
    if reply.status in (200, 201) and verb == "POST":
        api.request("DELETE", collection + "/" + reply.json()["metadata"]["name"])
