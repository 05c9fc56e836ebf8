"""The backends the storage conformance suite runs on.

Every backend of storage/interface.py must pass tests/conformance/storage. A backend joins by
adding a factory to FACTORIES: an async context manager that yields a started, empty Backend and
closes it (and whatever runs it) afterwards. It may take `pytest.param(..., marks=requires(...))`
for its prerequisites, e.g. the etcd backend:

    @contextlib.asynccontextmanager
    async def etcd_backend(tmp_path):
        async with etcd_cluster(tmp_path, members=1) as endpoints:   # pocketkube.testing.etcd
            backend = EtcdBackend(endpoints, prefix=f"/t{uuid4().hex}/")
            await backend.start()
            try:
                yield backend
            finally:
                await backend.close()

    FACTORIES.append(pytest.param(etcd_backend, id="etcd", marks=requires(ETCD)))

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


@contextlib.asynccontextmanager
async def sqlite_backend(path: Path) -> AsyncIterator[Backend]:
    backend = SQLiteBackend(str(path / "state.db"))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


FACTORIES: list = [pytest.param(sqlite_backend, id="sqlite")]


@pytest.fixture(params=FACTORIES)
def backend_factory(request):
    return request.param


@pytest.fixture
async def backend(backend_factory, tmp_path):
    async with backend_factory(tmp_path) as b:
        yield b
