"""Fixtures several unit modules share (a module's own fixture of the same name wins)."""

from __future__ import annotations

import pytest

from pocketkube.registry.registry import Registry
from pocketkube.storage.sqlite import SQLiteBackend


@pytest.fixture
async def registry(tmp_path):
    """A started Registry on a fresh SQLite file."""
    r = Registry(SQLiteBackend(str(tmp_path / "state.db")))
    await r.start()
    yield r
    await r.close()
