"""The backends the storage conformance suite runs on.

Every backend of storage/interface.py must pass tests/conformance/storage. A backend joins by
adding a factory to FACTORIES: an async context manager that yields a started, empty Backend and
closes it (and whatever runs it) afterwards. It may take `pytest.param(..., marks=requires(...))`
for its prerequisites, as the etcd backend below does (pocketkube.testing.etcd runs a real
etcd member per factory call).

`backend_factory` is the factory itself (a test that restarts a backend calls it twice on one
path); `backend` is one started backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pocketkube.storage.interface import Backend
from pocketkube.storage.sqlite import SQLiteBackend
from pocketkube.testing.etcd import HINT as ETCD_HINT
from pocketkube.testing.etcd import etcd_backend, have_etcd
from pocketkube.testing.requires import requires


@contextlib.asynccontextmanager
async def sqlite_backend(path: Path) -> AsyncIterator[Backend]:
    backend = SQLiteBackend(str(path / "state.db"))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


FACTORIES: list = [pytest.param(sqlite_backend, id="sqlite"),
                   pytest.param(etcd_backend, id="etcd", marks=requires(have_etcd(), ETCD_HINT))]


@pytest.fixture(params=FACTORIES)
def backend_factory(request):
    return request.param


@pytest.fixture
async def backend(backend_factory, tmp_path):
    async with backend_factory(tmp_path) as b:
        yield b
