"""Fixtures for tests that talk HTTPS to a `pocketkube server` subprocess directly."""

import pytest
from apiclient import Api

from pocketkube.testing.procs import ServerProcess


@pytest.fixture
def connect():
    """connect(server) -> Api; closed at the end of the test."""
    clients: list[Api] = []

    def make(server: ServerProcess) -> Api:
        clients.append(Api(server))
        return clients[-1]
    yield make
    for c in clients:
        c.close()


@pytest.fixture
def api(server, connect) -> Api:
    return connect(server)
