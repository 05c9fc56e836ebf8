"""range_at at every past revision equals the state the writes had made by then: rebuilt from
memory (recent events) and from the log (older ones) alike, over random write sequences."""

from __future__ import annotations

import random

import pytest

from pocketkube.storage.interface import KeyExists, KeyNotFound
from pocketkube.storage.sqlite import SQLiteBackend


async def _random_history(backend: SQLiteBackend, rng: random.Random, writes: int) -> dict[int, dict[str, bytes]]:
    """Random creates, updates and deletes; the model: the whole state after each revision."""
    model: dict[str, bytes] = {}
    states = {backend.current_revision(): {}}
    keys = [f"/r/{c}" for c in "abcdefgh"] + ["/q/x", "/s/y"]
    for i in range(writes):
        key, value = rng.choice(keys), f"v{i}".encode()
        try:
            if key not in model or rng.random() < 0.2:
                kv = await backend.create(key, value)
                model[key] = value
            elif rng.random() < 0.4:
                kv = await backend.delete(key)
                del model[key]
            else:
                kv = await backend.update(key, value, 0)
                model[key] = value
        except (KeyExists, KeyNotFound):
            continue
        states[kv.mod_revision] = dict(model)
    return states


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("history", [100_000, 7])  # everything in memory / most from the log
async def test_range_at_every_revision_matches_the_model(tmp_path, seed, history):
    backend = SQLiteBackend(str(tmp_path / "db.sqlite"), history=history)
    await backend.start()
    try:
        rng = random.Random(seed)
        states = await _random_history(backend, rng, 60)
        for rev, state in states.items():
            if rev == 0:
                continue
            want = sorted((k, v) for k, v in state.items() if k.startswith("/r/"))
            got = await backend.range_at("/r/", rev)
            assert [(kv.key, kv.value) for kv in got.kvs] == want and got.count == len(want), rev
            start = rng.choice("abcdefgh")
            tail = [kv for kv in want if kv[0] >= f"/r/{start}"]
            page = await backend.range_at("/r/", rev, start=f"/r/{start}", limit=2)
            assert [(kv.key, kv.value) for kv in page.kvs] == tail[:2] and page.count == len(tail), rev
    finally:
        await backend.close()
