"""The etcd backend against a real 3-member etcd (Debian's etcd-server 3.4): CAS, read-your-writes,
a second backend (another API server) on the same etcd, watch resume across a member restart,
compaction, a leader killed under 32 writers, and quorum loss failing fast."""

import asyncio
import time

import orjson
import pytest
from aetcd.rpc import rpc_pb2 as pb

from pocketkube.storage.etcd.backend import EtcdBackend
from pocketkube.storage.interface import (
    Compacted,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    TooLarge,
    Unavailable,
)
from pocketkube.testing.etcd import HINT, EtcdCluster, etcd_cluster, have_etcd
from pocketkube.testing.requires import requires
from pocketkube.testing.waits import wait_for_async

pytestmark = [requires(have_etcd(), HINT), pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def cluster():
    with etcd_cluster(3) as c:
        yield c


@pytest.fixture
async def backend(cluster, request):
    cluster.wipe()
    b = EtcdBackend(cluster.spec(f"/t-{request.node.name}"))
    await b.start()
    yield b
    await b.close()


def obj(name: str, **extra) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "uid": name + "-uid", **extra}}


def stamped(o: dict):
    def encode(rev: int) -> bytes:
        o["metadata"]["resourceVersion"] = str(rev)
        return orjson.dumps(o)
    return encode


async def test_cas_and_read_your_writes(backend):
    p = backend.prefix
    a = await backend.create(p + "a", b"1")
    assert a.create_revision == a.mod_revision and backend.get_now(p + "a") == a
    with pytest.raises(KeyExists):
        await backend.create(p + "a", b"x")
    b = await backend.update(p + "a", b"2", a.mod_revision)
    assert b.create_revision == a.create_revision and b.mod_revision > a.mod_revision
    with pytest.raises(RevisionMismatch):
        await backend.update(p + "a", b"3", a.mod_revision)
    with pytest.raises(KeyNotFound):
        await backend.update(p + "nope", b"3", 0)
    with pytest.raises(KeyNotFound):
        await backend.delete(p + "nope")
    d = await backend.delete(p + "a", b.mod_revision)
    assert d.mod_revision > b.mod_revision and d.value == b"2"
    assert backend.get_now(p + "a") is None and backend.current_revision() >= d.mod_revision


async def test_resource_version_is_the_mod_revision(backend):
    kv = await backend.create(backend.prefix + "pod", stamped(obj("pod")))
    assert orjson.loads(kv.value)["metadata"]["resourceVersion"] == str(kv.mod_revision)
    assert backend.get_now(backend.prefix + "pod").value == kv.value
    page = await backend.range_at(backend.prefix)
    assert orjson.loads(page.kvs[0].value)["metadata"]["resourceVersion"] == str(kv.mod_revision)


async def test_range_at_pins_a_revision_and_pages(backend):
    p = backend.prefix
    for i in range(5):
        await backend.create(f"{p}k{i}", str(i).encode())
    rev = backend.current_revision()
    await backend.delete(p + "k0")
    old = await backend.range_at(p, rev, limit=2)
    assert [kv.key for kv in old.kvs] == [p + "k0", p + "k1"] and old.count == 5 and old.revision == rev
    nxt = await backend.range_at(p, rev, start=p + "k1\0", limit=2)
    assert [kv.key for kv in nxt.kvs] == [p + "k2", p + "k3"] and nxt.count == 3
    now = await backend.range_at(p)
    assert now.count == 4 and now.revision == backend.current_revision() == await backend.consistent_revision()
    with pytest.raises(FutureRevision):
        await backend.range_at(p, now.revision + 1000)


async def test_range_at_from_the_mirror_equals_etcds(backend):
    p = backend.prefix
    for i in range(6):
        await backend.create(f"{p}a/k{i}", stamped(obj(f"k{i}")))
    await backend.create(f"{p}b/x", b"other prefix")
    rev = backend.current_revision()
    await backend.delete(f"{p}b/x")  # a change under another prefix: p/a/ at rev is still the mirror's
    for revision, start, limit in [(0, "", 0), (rev, "", 2), (rev, f"{p}a/k2", 3), (rev - 3, "", 0)]:
        want = await backend.range_from_etcd(p + "a/", revision, start=start, limit=limit)
        got = await backend.range_at(p + "a/", revision, start=start, limit=limit)
        assert (got.kvs, got.count) == (want.kvs, want.count), (revision, start, limit)
    assert backend.mirror.range_at(p + "a/", rev - 3, "", 0) is None  # k3..k5 came later: etcd answers
    assert backend.mirror.range_at(p + "b/", rev, "", 0) is None  # deleted since


async def test_another_server_sees_the_writes(cluster, backend):
    other = EtcdBackend(cluster.spec(backend.prefix.rstrip("/")))
    await other.start()
    try:
        events = other.watch(backend.prefix, other.current_revision())
        kv = await backend.create(backend.prefix + "x", b"v")
        ev = await asyncio.wait_for(anext(events), 5)
        assert (ev.type, ev.kv.key, ev.revision) == ("PUT", kv.key, kv.mod_revision)
        rev = await other.consistent_revision()
        assert await other.wait_for(rev) and other.get_now(kv.key) == kv
        await other.update(kv.key, b"w", kv.mod_revision)
        assert await backend.wait_for(await backend.consistent_revision())
        assert backend.get_now(kv.key).value == b"w"
        await events.aclose()
    finally:
        await other.close()


async def test_a_new_server_serves_watches_from_before_its_start(cluster, backend):
    p = backend.prefix
    rev = backend.current_revision()
    a = await backend.create(p + "a", b"1")
    await backend.delete(p + "a")
    b = await backend.create(p + "b", b"2")
    other = EtcdBackend(cluster.spec(p.rstrip("/")))
    await other.start()  # a restarted API server: its clients come back with `rev`
    try:
        assert other.current_revision() >= b.mod_revision and [kv.key for kv in other.range_now(p)] == [b.key]
        events = other.watch(p, rev)
        got = [await asyncio.wait_for(anext(events), 5) for _ in range(3)]
        assert [(e.type, e.kv.key) for e in got] == [("PUT", a.key), ("DELETE", a.key), ("PUT", b.key)]
        assert got[1].prev.value == b"1"
        await events.aclose()
    finally:
        await other.close()


async def test_a_new_server_is_ready_only_once_it_has_replayed_to_the_present(cluster, backend):
    """An emptied prefix looks like every earlier empty state: a server starting after
    create-then-delete must not call itself ready at the first one and replay the old object
    after (seen as "already exists" on a create). Its fence key never shows."""
    p = backend.prefix
    gone = await backend.create(p + "gone", b"1")
    deleted = await backend.delete(p + "gone")
    other = EtcdBackend(cluster.spec(p.rstrip("/")))
    await other.start()
    try:
        assert other.current_revision() > deleted.mod_revision > gone.mod_revision
        assert other.get_now(p + "gone") is None and other.range_now(p) == []
        kv = await other.create(p + "gone", b"2")  # no stale copy in the way
        assert [x.key for x in other.range_now(p)] == [kv.key]
        events = other.watch(p, gone.mod_revision - 1)
        got = [await asyncio.wait_for(anext(events), 5) for _ in range(3)]
        assert [(e.type, e.kv.key) for e in got] == [("PUT", p + "gone"), ("DELETE", p + "gone"), ("PUT", p + "gone")]
        await events.aclose()
    finally:
        await other.close()


async def test_a_lost_compare_leaves_the_winner_readable(cluster, backend):
    other = EtcdBackend(cluster.spec(backend.prefix.rstrip("/")))
    await other.start()
    try:
        kv = await backend.create(backend.prefix + "x", b"v0")
        for i in range(20):
            won = await other.update(kv.key, f"b{i}".encode(), 0)
            with pytest.raises(RevisionMismatch):
                await backend.update(kv.key, f"a{i}".encode(), kv.mod_revision)
            kv = backend.get_now(kv.key)
            assert kv == won  # the retry reads the winner, not the version it lost with
    finally:
        await other.close()


async def test_too_large_value(backend):
    with pytest.raises(TooLarge):
        await backend.create(backend.prefix + "big", b"x" * (2 * 1024 * 1024))


async def test_compaction_answers_compacted(backend):
    p = backend.prefix
    kv = await backend.create(p + "c", b"0")
    for i in range(3):
        kv = await backend.update(p + "c", str(i).encode(), kv.mod_revision)
    await backend.compact(kv.mod_revision - 1)
    assert backend.compacted_revision() == kv.mod_revision - 1
    with pytest.raises(Compacted):
        await anext(backend.watch(p, kv.mod_revision - 3))
    with pytest.raises(Compacted):
        await backend.range_at(p, kv.mod_revision - 3)
    events = backend.watch(p, kv.mod_revision - 1)
    assert (await asyncio.wait_for(anext(events), 5)).revision == kv.mod_revision
    await events.aclose()


async def test_mirror_relists_when_etcd_compacted_past_it(backend):
    p = backend.prefix
    kv = await backend.create(p + "a", b"1")
    watch = backend.watch(p, backend.current_revision())
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    # The mirror's stream stops; meanwhile keys change and etcd compacts past the mirror.
    backend._feeder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await backend._feeder
    await backend.client.txn(pb.TxnRequest(success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
        key=kv.key.encode()))]))
    resp = await backend.client.txn(pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(
        key=(p + "b").encode(), value=b"2"))]))
    await backend.client.compact(resp.header.revision)
    backend._feeder = asyncio.create_task(backend._feed())
    await wait_for_async(lambda: backend.current_revision() >= resp.header.revision, timeout=10)
    assert [kv.key for kv in backend.range_now(p)] == [p + "b"]
    assert backend.compacted_revision() == resp.header.revision
    with pytest.raises(StopAsyncIteration):  # watchers end: their clients relist
        await asyncio.wait_for(pending, 5)
    with pytest.raises(Compacted):
        await anext(backend.watch(p, kv.mod_revision))


async def test_watch_resumes_after_member_restarts(cluster, backend):
    p = backend.prefix
    events = backend.watch(p, backend.current_revision())
    acked = []
    for i in range(cluster.n):  # each member restarts once: the mirror's stream is on one of them
        cluster.restart(i)
        cluster.wait_leader()
        acked.append(await backend.create(f"{p}r{i}", b"v"))
    got = [await asyncio.wait_for(anext(events), 15) for _ in acked]
    assert [e.kv.key for e in got] == [kv.key for kv in acked]
    assert sorted(backend.range_now(p), key=lambda kv: kv.key) == acked
    await events.aclose()


@pytest.mark.slow
async def test_leader_killed_under_32_writers_loses_no_acknowledged_write(cluster, backend):
    p = backend.prefix
    acked: list[str] = []
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"{p}w{w}-{i}"
            i += 1
            try:
                await backend.create(key, key.encode())
                acked.append(key)
            except (Unavailable, KeyExists):
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(writer(w)) for w in range(32)]
    await wait_for_async(lambda: len(acked) > 100, timeout=20)
    leader = cluster.leader()
    cluster.kill(leader)
    before = len(acked)
    await wait_for_async(lambda: len(acked) > before + 200, timeout=30)
    stop.set()
    await asyncio.gather(*tasks)
    cluster.start_member(leader)
    cluster.wait_leader()
    stored = {kv.key for kv in (await backend.range_at(p)).kvs}
    assert set(acked) <= stored
    assert await backend.wait_for(await backend.consistent_revision(), 10)
    assert set(acked) <= {kv.key for kv in backend.range_now(p)}


@pytest.mark.slow
async def test_quorum_lost_writes_fail_fast():
    with etcd_cluster(3) as c:
        b = EtcdBackend(c.spec("/q"))
        await b.start()
        try:
            await b.create("/q/a", b"1")
            c.kill(0)
            c.kill(1)
            t = time.monotonic()
            with pytest.raises(Unavailable):
                await b.create("/q/b", b"2")
            assert time.monotonic() - t < 10
            assert b.get_now("/q/a") is not None  # reads from the mirror go on
            c.start_member(0)
            c.start_member(1)
            c.wait_leader()
            await b.create("/q/c", b"3")
        finally:
            await b.close()


async def test_tls_cluster():
    with etcd_cluster(3, tls=True) as c:
        b = EtcdBackend(c.spec("/tls"))
        await b.start()
        try:
            kv = await b.create("/tls/a", b"1")
            assert b.get_now("/tls/a") == kv
        finally:
            await b.close()


async def test_not_etcd_fails_within_seconds():
    from pocketkube.storage.datastore import parse_etcd
    from pocketkube.storage.etcd.errors import NotEtcd

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t = time.monotonic()
        with pytest.raises(NotEtcd, match="no etcd answers"):
            await EtcdBackend(parse_etcd(f"etcd://127.0.0.1:{port}")).start()
        assert time.monotonic() - t < 8
    finally:
        server.close()
        await server.wait_closed()


assert EtcdCluster  # the helper's class is part of what these tests exercise
