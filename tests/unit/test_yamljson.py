"""YAML read as Kubernetes reads it (pocketkube.apiserver.yamljson), shared by bodies and apply patches."""

from __future__ import annotations

import pytest
import yaml

from pocketkube.api.errors import BadRequest
from pocketkube.apiserver.yamljson import JsonCompatibleYamlLoader, as_json


def load(text: str):
    return as_json(yaml.load(text, Loader=JsonCompatibleYamlLoader))


def test_timestamps_stay_strings_and_scalar_keys_become_json_text() -> None:
    assert load("t: 2024-01-02T03:04:05Z\n1: a\nfalse: b\nnull: c\n1.5: d\n") == {
        "t": "2024-01-02T03:04:05Z", "1": "a", "false": "b", "null": "c", "1.5": "d"}


def test_aliases_are_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="aliases are not supported"):
        load("a: &x [1]\nb: *x\n")


@pytest.mark.parametrize("text, message", [
    ("a: .inf\n", "is not a JSON number"),
    ("a: 99999999999999999999999\n", "does not fit in 64 bits"),
    ("a: !!binary aGVsbG8=\n", "bytes value cannot be converted to JSON"),
])
def test_values_json_cannot_hold_are_a_bad_request(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        load(text)
