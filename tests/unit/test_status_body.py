"""Status bodies as the Go API server writes them: clients (the official Python client's
create_from_yaml among them) quote the body text verbatim in their errors."""

import pytest

from pocketkube.api import errors
from pocketkube.api.fields import Path, required
from pocketkube.apiserver.handlers import status_body

pytestmark = pytest.mark.unit


def test_conflict_body_is_byte_for_byte_upstreams():
    body = status_body(errors.AlreadyExists.object("deployments", "triple-nginx", "apps"))
    assert body == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                    b'"message":"deployments.apps \\"triple-nginx\\" already exists","reason":"AlreadyExists",'
                    b'"details":{"name":"triple-nginx","group":"apps","kind":"deployments"},"code":409}\n')


def test_code_comes_last_also_with_causes():
    status = errors.Invalid("Service", "web", [required(Path("spec", "ports"), "")]).status()
    assert list(status) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
    assert list(status["details"]) == ["name", "kind", "causes"]
