"""client.interface.Client: the REST client and the fake both implement it, signature for signature."""

from __future__ import annotations

import inspect

import pytest

from pocketkube.client import interface, rest
from pocketkube.testing.fakeclient import FakeClient

VERBS = [name for name, member in vars(interface.Client).items()
         if inspect.isfunction(member) and not name.startswith("_")]


def test_the_protocol_declares_what_components_call():
    assert set(VERBS) == {"get", "list", "watch", "create", "create_subresource", "update", "update_status", "patch", "delete", "bind",
                          "close"}


@pytest.mark.parametrize("implementation", [rest.Client, FakeClient])
@pytest.mark.parametrize("verb", VERBS)
def test_implementations_match_the_protocol(implementation, verb):
    declared = inspect.signature(getattr(interface.Client, verb))
    actual = inspect.signature(getattr(implementation, verb))
    assert list(actual.parameters) == list(declared.parameters)
    for name, param in declared.parameters.items():
        assert actual.parameters[name].default == param.default, (verb, name)
    is_async = inspect.iscoroutinefunction(getattr(interface.Client, verb))
    assert inspect.iscoroutinefunction(getattr(implementation, verb)) == is_async, verb
