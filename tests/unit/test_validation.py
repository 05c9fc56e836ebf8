"""Generic metadata validation: exact Kubernetes messages and robustness to wrong JSON types."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.api.fields import Path
from pocketkube.api.validation import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    is_int,
    label_value_errors,
    port_name_errors,
    qualified_name_errors,
    type_name,
    validate_labels,
    wrong_type,
)
from pocketkube.registry.validation import (
    TOTAL_ANNOTATION_SIZE_LIMIT,
    validate_annotations,
    validate_object_meta,
    validate_object_meta_update,
)

DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                     "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
                     "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                         "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                         "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def strs(errors):
    return [str(e) for e in errors]


@pytest.mark.parametrize("value", ["a", "my-name", "abc-123", "a" * 63])
def test_dns1035_accepts(value):
    assert dns1035_label_errors(value) == []


def test_dns1035_rejects_leading_digit_and_length():
    assert dns1035_label_errors("1abc") == [DNS1035_MSG]
    assert dns1035_label_errors("a" * 64) == ["must be no more than 63 characters"]
    assert dns1035_label_errors("") == [DNS1035_MSG]


def test_dns1123_label():
    assert dns1123_label_errors("123-abc") == []
    assert dns1123_label_errors("Abc") == [DNS1123_LABEL_MSG]
    assert dns1123_label_errors("a.b") == ["must not contain dots"]
    assert dns1123_label_errors("-" + "a" * 63) == ["must be no more than 63 characters", DNS1123_LABEL_MSG]


def test_dns1123_subdomain():
    assert dns1123_subdomain_errors("example.com") == []
    assert dns1123_subdomain_errors("Example.com") == [DNS1123_SUBDOMAIN_MSG]
    assert dns1123_subdomain_errors("a" * 254)[0] == "must be no more than 253 characters"
    assert dns1123_subdomain_errors("abc\n") == [DNS1123_SUBDOMAIN_MSG]


def test_qualified_name():
    assert qualified_name_errors("app.kubernetes.io/name") == []
    assert qualified_name_errors("MyName") == []
    assert qualified_name_errors("/name") == ["prefix part must be non-empty"]
    assert qualified_name_errors("a/") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    assert qualified_name_errors("Bad_/x") == ["prefix part " + DNS1123_SUBDOMAIN_MSG]
    assert qualified_name_errors("a/b/c")[0].startswith("a qualified name must consist of")
    assert qualified_name_errors("a" * 64) == ["name part must be no more than 63 characters"]


def test_label_value():
    assert label_value_errors("") == []
    assert label_value_errors("front-end") == []
    assert label_value_errors("-x") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]


def test_labels_errors_sit_on_the_map_path():
    errs = validate_labels({"app": "my app"}, Path("metadata", "labels"))
    assert len(errs) == 1 and errs[0].field == "metadata.labels" and errs[0].value == "my app"
    assert validate_labels({"app": "web", "tier": ""}, Path("spec", "selector")) == []


def test_labels_wrong_types():
    assert strs(validate_labels(["a"], Path("metadata", "labels"))) == [
        'metadata.labels: Invalid value: ["a"]: must be of type object, not array']
    assert strs(validate_labels({"a": 1}, Path("metadata", "labels"))) == [
        "metadata.labels[a]: Invalid value: 1: must be of type string, not integer"]


def test_annotations_size_limit():
    path = Path("metadata", "annotations")
    assert validate_annotations({"k": "x" * (TOTAL_ANNOTATION_SIZE_LIMIT - 1)}, path) == []
    errs = validate_annotations({"k": "x" * TOTAL_ANNOTATION_SIZE_LIMIT}, path)
    assert strs(errs) == ["metadata.annotations: Too long: must have at most 262144 bytes"]


def test_annotation_keys_are_qualified_names_case_insensitively():
    path = Path("metadata", "annotations")
    assert validate_annotations({"Example.COM/Key": "v"}, path) == []
    assert [e.field for e in validate_annotations({"a b": "v"}, path)] == ["metadata.annotations"]


def test_object_meta_name_required():
    assert strs(validate_object_meta({"metadata": {"namespace": "default"}}, True, dns1035_label_errors)) == [
        "metadata.name: Required value: name or generateName is required"]
    assert strs(validate_object_meta({}, False, dns1035_label_errors)) == [
        "metadata.name: Required value: name or generateName is required"]


def test_object_meta_generate_name_allows_trailing_dash():
    obj = {"metadata": {"generateName": "web-", "namespace": "default"}}
    assert validate_object_meta(obj, True, dns1035_label_errors) == []
    obj["metadata"]["generateName"] = "Web-"
    assert [e.field for e in validate_object_meta(obj, True, dns1035_label_errors)] == ["metadata.generateName"]


def test_object_meta_invalid_name_and_namespace_rules():
    errs = validate_object_meta({"metadata": {"name": "My_Svc"}}, True, dns1035_label_errors)
    assert strs(errs) == [f'metadata.name: Invalid value: "My_Svc": {DNS1035_MSG}', "metadata.namespace: Required value"]
    errs = validate_object_meta({"metadata": {"name": "n1", "namespace": "x"}}, False, dns1123_label_errors)
    assert strs(errs) == ["metadata.namespace: Forbidden: not allowed on this type"]


def test_object_meta_owner_references_and_finalizers():
    meta = {"name": "a", "namespace": "d",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
                                 "controller": True},
                                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u2", "controller": True}],
            "finalizers": ["example.com/keep", "bad finalizer"]}
    fields = [e.field for e in validate_object_meta({"metadata": meta}, True, dns1123_subdomain_errors)]
    assert fields == ["metadata.ownerReferences", "metadata.finalizers"]
    meta["ownerReferences"] = [{"kind": "Pod"}]
    meta["finalizers"] = []
    assert strs(validate_object_meta({"metadata": meta}, True, dns1123_subdomain_errors)) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": name must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty']


def test_object_meta_update_immutability():
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "u", "creationTimestamp": "2024-01-01T00:00:00Z"}}
    assert validate_object_meta_update(old, old) == []
    new = {"metadata": {"name": "b", "namespace": "d", "uid": "v", "creationTimestamp": "2024-01-01T00:00:00Z"}}
    assert strs(validate_object_meta_update(new, old)) == [
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.uid: Invalid value: "v": field is immutable']


def test_object_meta_update_rejects_new_finalizers_while_deleting():
    old = {"metadata": {"name": "a", "deletionTimestamp": "t", "finalizers": ["x/a"]}}
    new = {"metadata": {"name": "a", "deletionTimestamp": "t", "finalizers": ["x/a", "x/b"]}}
    assert strs(validate_object_meta_update(new, old)) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, '
        'found new finalizers []string{"x/b"}']


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "generateName", "namespace", "labels", "annotations",
                                        "ownerReferences", "finalizers", "generation", "uid"]), json_values))
def test_object_meta_never_raises_on_any_json(meta):
    validate_object_meta({"metadata": meta}, True, dns1035_label_errors)
    validate_object_meta_update({"metadata": meta}, {"metadata": meta})
    validate_object_meta_update({"metadata": meta}, {"metadata": {"deletionTimestamp": "t", "finalizers": meta}})


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_validators_never_raise_on_any_json(value):
    for fn in (dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors, qualified_name_errors,
               label_value_errors):
        fn(value)
    validate_labels(value, Path("x"))
    validate_annotations(value, Path("x"))
    validate_object_meta({"metadata": value}, False, dns1123_subdomain_errors)


@pytest.mark.parametrize("name, errors", [
    ("http", []),
    ("http-alt", []),
    ("a" * 16, ["must be no more than 15 characters"]),
    ("HTTP", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
              "must contain at least one letter (a-z)"]),
    ("123", ["must contain at least one letter (a-z)"]),
    ("a--b", ["must not contain consecutive hyphens"]),
    ("-ab", ["must not begin or end with a hyphen"]),
])
def test_port_name(name, errors):
    assert port_name_errors(name) == errors


def test_wrong_type_names_the_json_types():
    error = wrong_type(Path("spec").child("x"), [1], "string")
    assert (error.field, error.detail) == ("spec.x", "must be of type string, not array")
    assert [type_name(v) for v in (None, True, 1, 1.5, "s", [], {})] == \
        ["null", "boolean", "integer", "number", "string", "array", "object"]
    assert is_int(3) and not is_int(True) and not is_int(3.0)
