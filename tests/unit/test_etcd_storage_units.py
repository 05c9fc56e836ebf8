"""The etcd datastore's pure parts: URLs, error mapping, key ranges, stamping, and the mirror
(state, history window, watchers, waiting for a revision)."""

import asyncio

import grpc
import orjson
import pytest

from pocketkube import cli
from pocketkube.storage.datastore import DatastoreError, TLSFiles, check, parse_etcd
from pocketkube.storage.drivers import open_backend
from pocketkube.storage.etcd.client import grpc_target, prefix_end
from pocketkube.storage.etcd.errors import NotEtcd, is_retryable, map_error
from pocketkube.storage.etcd.mirror import Mirror, stamp
from pocketkube.storage.interface import (
    Compacted,
    FutureRevision,
    KeyValue,
    StoreError,
    TooLarge,
    Unavailable,
)

# ---- URLs ----


def test_etcd_urls():
    s = parse_etcd("etcd://h1:2379,h2:2380,h3")
    assert s.endpoints == (("h1", 2379), ("h2", 2380), ("h3", 2379)) and not s.tls and s.prefix == "/registry/"
    files = TLSFiles("ca.pem", "c.pem", "k.pem")
    s = parse_etcd("https://10.0.0.1:2379,https://10.0.0.2:2379", files)
    assert s.tls and s.endpoints == (("10.0.0.1", 2379), ("10.0.0.2", 2379)) and s.files == files
    assert parse_etcd("etcds://[::1]:2379?prefix=/kube/").endpoints == (("::1", 2379),)
    assert parse_etcd("etcd://h:1?prefix=/kube").prefix == "/kube/"
    assert parse_etcd("http://h:2379").tls is False


@pytest.mark.parametrize("url, files, message", [
    ("etcd://", TLSFiles(), "names no endpoint"),
    ("etcd://h:99999", TLSFiles(), "invalid port"),
    ("etcd://h:1", TLSFiles(cafile="ca.pem"), "need a TLS datastore URL"),
    ("etcds://h:1", TLSFiles(certfile="c.pem"), "go together"),
    ("https://a:1,http://b:1", TLSFiles(), "mixes"),
    ("etcd://h:1?prefix=kube", TLSFiles(), "must start with '/'"),
    ("postgres://db/k", TLSFiles(), "accepted schemes are sqlite://..., memory://..., etcd://..."),
    ("sqlite:///x.db", TLSFiles(cafile="ca.pem"), "need a TLS datastore URL"),
])
def test_bad_urls(url, files, message):
    with pytest.raises(DatastoreError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check(url, files)


def test_open_backend_refuses_unknown_schemes():
    with pytest.raises(ValueError, match="accepted schemes"):
        open_backend("mysql://x")


def test_cli_rejects_a_bad_datastore_before_starting(tmp_path, capsys, monkeypatch):
    assert cli.main(["server", "--data-dir", str(tmp_path), "--datastore", "foo://x", "--no-control-plane"]) == 2
    assert "accepted schemes" in capsys.readouterr().err
    monkeypatch.setenv("POCKETKUBE_DATASTORE_ENDPOINT", "etcd://")
    assert cli.main(["server", "--data-dir", str(tmp_path), "--no-control-plane"]) == 2
    assert "names no endpoint" in capsys.readouterr().err


# ---- errors ----


@pytest.mark.parametrize("code, details, kind", [
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", Unavailable),
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed", Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", Unavailable),
    (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted", Compacted),
    (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision", FutureRevision),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large", TooLarge),
    (grpc.StatusCode.UNIMPLEMENTED, "Method not found", NotEtcd),
    (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied", StoreError),
])
def test_error_mapping(code, details, kind):
    err = map_error(code, details, requested=5, current=9)
    assert type(err) is kind
    if kind is Compacted:
        assert (err.requested, err.compacted) == (5, 9)


def test_only_unavailable_is_retried():
    assert is_retryable(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed")
    assert not is_retryable(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")


# ---- keys, targets, stamping ----


def test_prefix_end():
    assert prefix_end(b"/registry/") == b"/registry0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_grpc_target():
    assert grpc_target([("127.0.0.1", 1), ("127.0.0.2", 2)]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert grpc_target([("::1", 1)]) == "ipv6:[::1]:1"
    with pytest.raises(ValueError):
        grpc_target([("::1", 1), ("127.0.0.1", 1)])


def test_stamp_sets_the_resource_version_of_objects_only():
    v = orjson.dumps({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "0"}})
    assert orjson.loads(stamp(v, 42))["metadata"]["resourceVersion"] == "42"
    for other in (b"raw bytes", b'{"resourceVersion": "1"}', b"{not json \"resourceVersion\"",
                  orjson.dumps({"metadata": {"name": "x"}})):
        assert stamp(other, 42) == other


# ---- the mirror ----


async def test_mirror_state_events_and_watchers():
    m = Mirror(history=3)
    m.reset([KeyValue("/r/a", b"1", 1, 1)], 5)
    closed = asyncio.Event()
    w = m.watch("/r/", 5, closed)
    pending = asyncio.ensure_future(anext(w))
    await asyncio.sleep(0)
    e1 = m.apply_put("/r/a", b"2", 1, 6)
    m.commit([e1], 6)
    ev = await asyncio.wait_for(pending, 1)
    assert ev.type == "PUT" and ev.prev == KeyValue("/r/a", b"1", 1, 1) and m.state["/r/a"].value == b"2"
    e2 = m.apply_delete("/r/a", 7)
    m.commit([e2], 7)
    ev = await asyncio.wait_for(anext(w), 1)
    assert ev.type == "DELETE" and ev.kv.mod_revision == 7 and ev.kv.value == b"2" and "/r/a" not in m.state
    assert m.apply_delete("/r/none", 8) is None
    await w.aclose()


async def test_mirror_history_window_and_compaction():
    m = Mirror(history=2)
    m.reset([], 10)
    for rev in (11, 12, 13):
        m.commit([m.apply_put(f"/k{rev}", b"v", rev, rev)], rev)
    assert [e.revision for e in m.history_after("/", 12)] == [13]
    with pytest.raises(Compacted):
        m.history_after("/", 10)  # older than the window
    m.compacted_to(13)
    with pytest.raises(Compacted):
        m.history_after("/", 12)
    assert m.history_after("/", 13) == []


async def test_mirror_reset_ends_watchers_and_wait_for():
    m = Mirror()
    m.reset([], 1)
    w = m.watch("/", 1, asyncio.Event())
    pending = asyncio.ensure_future(anext(w))
    await asyncio.sleep(0)
    m.reset([], 9)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 1)
    assert await m.wait_for(9, 0.01)
    waiter = asyncio.ensure_future(m.wait_for(11, 2))
    await asyncio.sleep(0)
    m.commit([], 10)
    assert not waiter.done()
    m.commit([], 11)  # a progress notification
    assert await waiter
    assert not await m.wait_for(99, 0.01)
