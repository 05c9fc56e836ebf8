"""storage.leases: the lease bookkeeping every SQLite lease call decides with (pure, clock given)."""

from __future__ import annotations

import pytest

from pocketkube.storage.interface import LeaseNotFound
from pocketkube.storage.leases import LeaseTable


def test_a_lease_lives_its_ttl_and_a_renewal_restarts_it():
    t = LeaseTable()
    t.add(7, 10, now=100.0)
    assert t.remaining(7, 105.0) == 5.0 and t.next_deadline() == 110.0
    assert t.renew(7, 109.0) == 10 and t.next_deadline() == 119.0
    assert t.expired(118.9) == [] and t.expired(119.0) == [7]
    with pytest.raises(LeaseNotFound):
        t.renew(7, 119.0)  # past its deadline: gone, even before the store deleted its keys
    with pytest.raises(LeaseNotFound):
        t.remaining(8, 0.0)


def test_keys_move_between_leases_and_leave_with_the_lease():
    t = LeaseTable()
    t.add(1, 10, 0.0)
    t.add(2, 10, 0.0)
    for key in ("/a", "/b", "/c"):
        t.attach(key, 1)
    t.attach("/b", 2)  # moved
    t.attach("/c", 0)  # detached (a put without a lease)
    assert t.keys_of(1, {}) == ["/a"] and t.keys_of(2, {}) == ["/b"]
    # attachments made earlier in the same batch count
    assert t.keys_of(1, {"/a": 0, "/d": 1}) == ["/d"]
    t.drop(1)
    assert 1 not in t.leases and "/a" not in t.key_lease and t.keys_of(1, {}) == []
    assert t.key_lease == {"/b": 2}


def test_new_ids_are_positive_and_unused():
    t = LeaseTable()
    ids = {t.new_id() for _ in range(100)}
    assert len(ids) == 100 and all(0 < i < 2**63 for i in ids)


def test_etcd_lease_errors_map_to_lease_not_found():
    import grpc

    from pocketkube.storage.etcd.errors import map_error

    err = map_error(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found", lease=0x2A)
    assert isinstance(err, LeaseNotFound) and err.lease_id == 0x2A and "2a" in str(err)


async def test_a_data_dir_from_before_leases_opens_and_takes_leases(tmp_path):
    import sqlite3

    from pocketkube.storage.sqlite import SQLiteBackend

    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE kv (id INTEGER PRIMARY KEY, name TEXT NOT NULL, deleted INTEGER NOT NULL, "
        "create_revision INTEGER NOT NULL, prev_revision INTEGER NOT NULL, value BLOB NOT NULL);"
        "INSERT INTO kv VALUES (1, '/old', 0, 1, 0, X'31');")
    db.commit()
    db.close()
    store = SQLiteBackend(path)
    await store.start()
    try:
        assert (await store.get("/old")).value == b"1"
        lease = await store.grant(60)
        await store.update("/old", b"2", 1, lease=lease)
        await store.revoke(lease)
        assert await store.get("/old") is None and store.current_revision() == 3
    finally:
        await store.close()
