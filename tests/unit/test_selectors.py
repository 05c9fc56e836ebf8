"""Label and field selectors: grammar, matching and Kubernetes' error messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.api.fields import Path
from pocketkube.api.selectors import FieldSelector, LabelSelector, selector_to_string, validate_label_selector


@pytest.mark.parametrize("selector,labels,expected", [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "db"}, False),
    ("app!=web", {}, True),
    ("env in (prod,staging)", {"env": "staging"}, True),
    ("env notin (prod)", {"env": "prod"}, False),
    ("env notin (prod)", {}, True),
    ("tier", {"tier": ""}, True),
    ("!tier", {"tier": "x"}, False),
    ("app=web,tier", {"app": "web"}, False),
    ("in in (in)", {"in": "in"}, True),
    ("n>3", {"n": "4"}, True),
    ("n<3", {"n": "x"}, False),
    ("", {"anything": "x"}, True),
])
def test_parse_and_match(selector, labels, expected):
    assert LabelSelector.parse(selector).matches(labels) is expected


def test_string_form_is_sorted_and_canonical():
    assert str(LabelSelector.parse("x in (foo,,baz),y,z notin ()")) == "x in (,baz,foo),y,z notin ()"
    assert str(LabelSelector.parse("b=2, a = 1")) == "a=1,b=2"
    assert LabelSelector.parse("").empty


@pytest.mark.parametrize("selector,message", [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("k>x", ("unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, "
             "the value must be an integer")),
])
def test_parse_errors(selector, message):
    with pytest.raises(ValueError) as e:
        LabelSelector.parse(selector)
    assert str(e.value) == message


def test_invalid_value_names_the_key():
    with pytest.raises(ValueError, match=r'^unable to parse requirement: values\[0\]\[app\]: Invalid value: "\$x": '):
        LabelSelector.parse("app=$x")


def test_from_dict():
    sel = LabelSelector.from_dict({"matchLabels": {"app": "web"},
                                   "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                        {"key": "old", "operator": "DoesNotExist"}]})
    assert sel.matches({"app": "web", "tier": "b"})
    assert not sel.matches({"app": "web", "tier": "b", "old": "1"})
    assert str(sel) == "app=web,!old,tier in (a,b)"
    assert LabelSelector.from_dict({}).empty and LabelSelector.from_dict({}).matches({})
    nothing = LabelSelector.from_dict(None)
    assert not nothing.empty and not nothing.matches({})
    with pytest.raises(ValueError, match='"Maybe" is not a valid label selector operator'):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "Maybe"}]})


def test_from_dict_rejects_odd_operators_and_prints_repeated_values_once():
    with pytest.raises(ValueError, match="is not a valid label selector operator"):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": ["In"], "values": ["x"]}]})
    sel = LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["y", "x", "y"]}]})
    assert str(sel) == "a notin (x,y)"


def test_validate_label_selector_dict():
    errs = validate_label_selector({"matchExpressions": [{"key": "a", "operator": "In"},
                                                         {"key": "b", "operator": "Exists", "values": ["x"]},
                                                         {"key": "c", "operator": "Is"}]},
                                   Path("spec", "selector"))
    assert [str(e) for e in errs] == [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ("spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or "
         "'DoesNotExist'"),
        'spec.selector.matchExpressions[2].operator: Invalid value: "Is": not a valid selector operator',
    ]
    assert validate_label_selector("app=web", Path("spec", "selector"))[0].field == "spec.selector"


def test_selector_to_string():
    assert selector_to_string({"b": "2", "a": "1"}) == "a=1,b=2"


POD = {"metadata": {"name": "p", "namespace": "default"},
       "spec": {"nodeName": "node-1", "schedulerName": "default-scheduler"}, "status": {"phase": "Running"}}


def test_field_selector_on_pods():
    sel = FieldSelector.parse("spec.nodeName=node-1,status.phase!=Succeeded,status.phase!=Failed", "Pod")
    assert sel.matches(POD)
    assert not FieldSelector.parse("metadata.name==q", "Pod").matches(POD)
    assert FieldSelector.parse("spec.nodeName=", "Pod").matches({"metadata": {"name": "x"}})
    assert FieldSelector.parse("spec.host=node-1", "Pod").requirements == [("spec.nodeName", "=", "node-1")]


def test_field_selector_on_events():
    event = {"metadata": {"name": "e", "namespace": "default"}, "type": "Normal", "reason": "Scheduled",
             "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"}}
    sel = FieldSelector.parse("involvedObject.uid=u1,involvedObject.name=p,involvedObject.kind=Pod,"
                              "involvedObject.namespace=default", "Event")
    assert sel.matches(event)
    assert not FieldSelector.parse("type=Warning", "Event").matches(event)


def test_field_selector_errors():
    with pytest.raises(ValueError, match="^field label not supported: spec.foo$"):
        FieldSelector.parse("spec.foo=x", "Pod")
    with pytest.raises(ValueError, match='^"spec.replicas" is not a known field selector: only "metadata.name", '
                                         '"metadata.namespace"$'):
        FieldSelector.parse("spec.replicas=1", "Deployment")
    with pytest.raises(ValueError, match="^invalid selector: 'name'; can't understand 'name'$"):
        FieldSelector.parse("name", "Pod")
    assert FieldSelector.parse(r"metadata.name=a\,b", "Pod").requirements == [("metadata.name", "=", "a,b")]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=!(),<> \tinotx\\.", max_size=20))
def test_parsers_raise_only_value_error(text):
    for parse in (LabelSelector.parse, lambda s: FieldSelector.parse(s, "Pod")):
        try:
            parse(text)
        except ValueError:
            pass
