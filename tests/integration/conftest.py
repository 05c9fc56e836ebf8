"""Fixtures for tests that talk HTTPS to a `pocketkube server` subprocess directly."""

import shutil
import tempfile
from pathlib import Path

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


@pytest.fixture
def compacting_server(monkeypatch):
    """A server that compacts every 0.2 s down to the current revision (410 Expired tests)."""
    monkeypatch.setenv("POCKETKUBE_COMPACT_INTERVAL", "0.2")
    monkeypatch.setenv("POCKETKUBE_COMPACT_KEEP", "0")
    root = Path(tempfile.mkdtemp(prefix="pk-compact-"))
    srv = ServerProcess(root / "data")
    srv.data_dir.mkdir()
    srv.start(port=0)
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)
