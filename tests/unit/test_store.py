"""The generic object store (registry/store.py) over a real SQLite backend in tmp_path."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend


class _DeletedBeforeWrite:
    """A backend whose next update finds its key deleted by someone else: the race of two deletes."""

    def __init__(self, inner: SQLiteBackend) -> None:
        self.inner = inner
        self.armed = False

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def update(self, key: str, value: bytes, expected_mod_revision: int = 0):
        if self.armed:
            self.armed = False
            await self.inner.delete(key)
        return await self.inner.update(key, value, expected_mod_revision)


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "state.db"))
    await b.start()
    yield b
    await b.close()


def _pod(name: str = "p", node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def test_graceful_delete_losing_to_another_delete_is_not_found(backend):
    racing = _DeletedBeforeWrite(backend)
    pods = Registry(racing).store("", "pods")
    await pods.create(_pod(node="node-1"), "default")
    racing.armed = True
    with pytest.raises(errors.NotFound):
        await pods.delete("default", "p")
