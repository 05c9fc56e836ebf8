"""Which container `kubectl logs` reads: app, init and ephemeral containers, as the API server decides."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.logs import _container

POD = {"metadata": {"name": "duo"},
       "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "web"}, {"name": "client"}]}}


def test_init_containers_have_logs_too():
    assert _container(POD, "init") == "init"
    assert _container(POD, "web") == "web"


def test_an_unknown_container_is_a_bad_request():
    with pytest.raises(errors.BadRequest, match="container nope is not valid for pod duo"):
        _container(POD, "nope")


def test_several_containers_need_a_name_and_the_message_lists_init_containers():
    with pytest.raises(errors.BadRequest) as err:
        _container(POD, None)
    assert str(err.value) == ("a container name must be specified for pod duo, choose one of: [web client] "
                              "or one of the init containers: [init]")


def test_a_single_container_is_the_default():
    assert _container({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "only"}]}}, None) == "only"
