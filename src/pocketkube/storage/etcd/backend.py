"""The etcd backend: writes as kube-apiserver makes them, reads and watches from a mirror.

Every write is a one-key Txn guarded by the key's mod_revision (create: == 0), as upstream's
etcd3 store; the acknowledged revision is the Txn header's, and the write returns only once the
mirror has applied it, so get_now/range_now read this server's own writes. The mirror is one
watch on the whole prefix, resumed at last+1 after a stream error (a member restart, a leader
change) and rebuilt from a fresh listing when etcd has compacted past it. Previous values come
from the mirror's own state, so the watch asks etcd for no prev_kv.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable

import grpc
from aetcd.rpc import kv_pb2
from aetcd.rpc import rpc_pb2 as pb

from pocketkube.storage.datastore import EtcdSpec
from pocketkube.storage.etcd.client import EtcdClient, prefix_end
from pocketkube.storage.etcd.errors import map_error
from pocketkube.storage.etcd.mirror import Mirror, stamp
from pocketkube.storage.interface import (
    Compacted,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    RangeResult,
    RevisionMismatch,
    StoreError,
    Unavailable,
)

log = logging.getLogger(__name__)
Value = bytes | Callable[[int], bytes]
PAGE = 5_000  # keys per Range of the initial listing
APPLY_TIMEOUT = 10.0  # how long a write waits for the mirror to show it (a watch reconnect included)
REPLAY_TIMEOUT = 30.0  # replaying history at start: then start from the current listing instead
CONFLICT_WAIT = 2.0  # how long a lost compare waits for the mirror to show the winner
# A key of no resource's range that a starting server writes and deletes to know when its replay
# of history has reached the present; the mirror neither keeps nor forwards it.
FENCE = "pocketkube.io/mirror-fence/"
Cmp = pb.Compare


def _kv(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key.decode(), stamp(kv.value, kv.mod_revision), kv.create_revision, kv.mod_revision)


class EtcdBackend:
    shared = True  # every API server on this etcd writes it (storage/interface.py)

    def __init__(self, spec: EtcdSpec, *, history: int = 50_000, watcher_buffer: int = 100_000,
                 retry_budget: float | None = None) -> None:
        self.spec = spec
        self.prefix = spec.prefix
        self._fence_prefix = spec.prefix + FENCE
        self.client = EtcdClient(spec) if retry_budget is None else EtcdClient(spec, retry_budget=retry_budget)
        self.mirror = Mirror(history=history, watcher_buffer=watcher_buffer)
        self._closed = asyncio.Event()
        self._feeder: asyncio.Task | None = None
        self._fence_revision = 0  # while replaying at start: the revision of our fence's delete
        self._caught_up = asyncio.Event()
        self.version = ""

    # ---- lifecycle ----
    async def start(self) -> None:
        """Connect, then fill the mirror. It starts from an older revision that etcd still keeps
        (up to `history` revisions back) and replays the events since, so that a restarted API
        server serves watches from the resourceVersions its clients already hold, as SQLite's log
        does; it is ready once it has replayed up to a fence written after the listing (comparing
        states is not enough: an empty prefix also matches every earlier empty state)."""
        status = await self.client.connect()
        self.version = status.version
        now, rev = await self._list_all(0)
        start = await self._oldest_kept(rev)
        if start is None:
            self.mirror.reset(now, rev)
        else:
            self.mirror.reset((await self._list_all(start))[0], start)
            self._caught_up = asyncio.Event()
            self._fence_revision = await self._fence()
        self._feeder = asyncio.create_task(self._feed(), name="etcd-mirror")
        if start is not None:
            try:
                await asyncio.wait_for(self._caught_up.wait(), REPLAY_TIMEOUT)
            except TimeoutError:
                log.warning("etcd: replaying history since revision %d took too long: starting from now", start)
                await self._stop_feeder()
                self.mirror.reset(now, rev)
                self._feeder = asyncio.create_task(self._feed(), name="etcd-mirror")
            self._fence_revision = 0

    async def _oldest_kept(self, rev: int) -> int | None:
        """The oldest revision worth replaying from that etcd has not compacted (None: none)."""
        for back in (self.mirror.history.maxlen or 0, 10_000, 1_000):
            start = max(1, rev - back)
            if start >= rev:
                continue
            try:
                await self.client.range(pb.RangeRequest(key=self.prefix.encode(), revision=start, count_only=True))
                return start
            except Compacted:
                continue
        return None

    async def _fence(self) -> int:
        """Put and delete a key of our own; the delete's revision. etcd sends a prefix's events
        in revision order, so once the mirror has seen it, it has replayed all history before."""
        key = f"{self.prefix}{FENCE}{secrets.token_hex(8)}".encode()
        await self.client.txn(pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=key))]))
        resp = await self.client.txn(pb.TxnRequest(success=[pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=key))]))
        return resp.header.revision

    async def _stop_feeder(self) -> None:
        if self._feeder is not None:
            self._feeder.cancel()
            try:
                await self._feeder
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
            self._feeder = None

    async def close(self) -> None:
        self._closed.set()
        await self._stop_feeder()
        self.mirror.end_watchers()
        await self.client.close()

    # ---- the mirror's feed ----
    async def _list(self, prefix: str, revision: int = 0, start: str = "", limit: int = 0) -> pb.RangeResponse:
        key = (start or prefix).encode()
        req = pb.RangeRequest(key=key, range_end=prefix_end(prefix.encode()), revision=revision, limit=limit)
        current = self.mirror.revision

        def on_error(code: grpc.StatusCode, details: str) -> StoreError:
            return map_error(code, details, requested=revision,
                             current=self.mirror.compacted if "compacted" in details else current)
        return await self.client.range(req, on_error=on_error)

    async def _list_all(self, rev: int) -> tuple[list[KeyValue], int]:
        """The whole prefix at one revision (0: latest), in pages."""
        kvs: list[KeyValue] = []
        start = ""
        while True:
            resp = await self._list(self.prefix, rev, start, PAGE)
            rev = rev or resp.header.revision
            kvs.extend(_kv(kv) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return kvs, rev
            start = resp.kvs[-1].key.decode() + "\0"

    async def _relist(self) -> None:
        self.mirror.reset(*await self._list_all(0))

    async def _feed(self) -> None:
        delay = 0.1
        while not self._closed.is_set():
            try:
                await self._watch_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Compacted:
                log.warning("etcd compacted past the mirror (revision %d): relisting", self.mirror.revision)
                await self._retrying(self._relist)
            except (grpc.aio.AioRpcError, StoreError, grpc.aio.UsageError) as e:
                log.info("etcd watch ended (%s); resuming at revision %d", e, self.mirror.revision + 1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception:  # noqa: BLE001 - the mirror must never stop feeding
                log.exception("etcd watch failed; resuming at revision %d", self.mirror.revision + 1)
                await asyncio.sleep(1.0)

    async def _retrying(self, fn: Callable) -> None:
        while not self._closed.is_set():
            try:
                return await fn()
            except StoreError as e:
                log.info("etcd relist failed (%s): retrying", e)
                await asyncio.sleep(0.5)

    async def _watch_once(self) -> None:
        call = self.client.watch_call()
        try:
            create = pb.WatchCreateRequest(key=self.prefix.encode(), range_end=prefix_end(self.prefix.encode()),
                                           start_revision=self.mirror.revision + 1, progress_notify=True)
            await call.write(pb.WatchRequest(create_request=create))
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise Unavailable("etcd closed the watch stream")
                if resp.compact_revision:
                    self.mirror.compacted_to(resp.compact_revision)
                    raise Compacted(self.mirror.revision + 1, resp.compact_revision)
                if resp.canceled:
                    raise Unavailable(f"etcd canceled the watch: {resp.cancel_reason}")
                if resp.created and not resp.events:
                    continue
                self._apply(resp)
        finally:
            call.cancel()

    def _apply(self, resp: pb.WatchResponse) -> None:
        events: list[Event] = []
        last = self.mirror.revision
        for ev in resp.events:
            kv = ev.kv
            if kv.mod_revision <= self.mirror.revision:
                continue  # already applied (a resumed watch may repeat its start)
            key = kv.key.decode()
            last = max(last, kv.mod_revision)
            if key.startswith(self._fence_prefix):
                continue
            if ev.type == kv_pb2.Event.PUT:
                events.append(self.mirror.apply_put(key, kv.value, kv.create_revision, kv.mod_revision))
            else:
                e = self.mirror.apply_delete(key, kv.mod_revision)
                if e is not None:
                    events.append(e)
        # An empty response is a progress notification: everything up to the header is sent.
        self.mirror.commit(events, last if resp.events else resp.header.revision)
        if self._fence_revision and self.mirror.revision >= self._fence_revision:
            self._caught_up.set()

    # ---- reads ----
    def current_revision(self) -> int:
        return self.mirror.revision

    def compacted_revision(self) -> int:
        return self.mirror.compacted

    async def get(self, key: str) -> KeyValue | None:
        return self.mirror.state.get(key)

    def get_now(self, key: str) -> KeyValue | None:
        return self.mirror.state.get(key)

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.mirror.range(prefix), self.mirror.revision

    def range_now(self, prefix: str) -> list[KeyValue]:
        return self.mirror.range(prefix)

    def count(self, prefix: str) -> int:
        return sum(1 for k in self.mirror.state if k.startswith(prefix))

    async def range_at(self, prefix: str, revision: int = 0, *, start: str = "", limit: int = 0) -> RangeResult:
        """Keys under prefix at `revision` (0: the mirror's latest, as kube's cacher serves
        resourceVersion=0). From the mirror when nothing under prefix changed since `revision`
        (the usual consistent LIST: quorum revision, wait_for, then this), else from etcd."""
        if revision and revision < self.mirror.compacted:
            raise Compacted(revision, self.mirror.compacted)
        local = self.mirror.range_at(prefix, revision, start, limit)
        if local is not None:
            kvs, count, rev = local
            return RangeResult(kvs, count, rev)
        return await self.range_from_etcd(prefix, revision, start=start, limit=limit)

    async def range_from_etcd(self, prefix: str, revision: int = 0, *, start: str = "",
                              limit: int = 0) -> RangeResult:
        """range_at read from etcd itself (0: latest, linearizable)."""
        try:
            resp = await self._list(prefix, revision, start, limit)
        except Compacted as e:
            raise Compacted(revision, max(e.compacted, self.mirror.compacted)) from None
        except FutureRevision:
            current = await self.consistent_revision()
            raise FutureRevision(revision, current) from None
        return RangeResult([_kv(kv) for kv in resp.kvs], resp.count, revision or resp.header.revision)

    async def consistent_revision(self) -> int:
        """etcd's latest revision, from a quorum read (kube's consistent-read-from-cache step)."""
        req = pb.RangeRequest(key=self.prefix.encode(), range_end=prefix_end(self.prefix.encode()),
                              count_only=True)
        resp = await self.client.range(req)
        return resp.header.revision

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        return await self.mirror.wait_for(revision, timeout)

    # ---- writes ----
    async def create(self, key: str, value: Value, *, lease: int = 0) -> KeyValue:
        data = value(0) if callable(value) else value
        ok, resp, cur = await self._txn(key, Cmp(key=key.encode(), target=Cmp.MOD, result=Cmp.EQUAL, mod_revision=0),
                                        pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=data,
                                                                               lease=lease)), lease)
        if ok:
            return await self._written(key, value, data, resp.header.revision, resp.header.revision)
        if cur is not None and cur.value == data:  # our own create, retried after a lost answer
            return await self._written(key, value, data, cur.create_revision, cur.mod_revision)
        await self._seen(key, cur)
        raise KeyExists(key)

    async def update(self, key: str, value: Value, expected_mod_revision: int = 0, *, lease: int = 0) -> KeyValue:
        """lease 0 detaches the key from its lease, as etcd's Put without one."""
        data = value(0) if callable(value) else value
        cmp = self._guard(key, expected_mod_revision)
        ok, resp, cur = await self._txn(key, cmp, pb.RequestOp(request_put=pb.PutRequest(
            key=key.encode(), value=data, prev_kv=True, lease=lease)), lease)
        if ok:
            prev = resp.responses[0].response_put.prev_kv
            return await self._written(key, value, data, prev.create_revision, resp.header.revision)
        if cur is None:
            raise KeyNotFound(key)
        if cur.value == data:  # our own write, retried after a lost answer (or an identical one)
            return await self._written(key, value, data, cur.create_revision, cur.mod_revision)
        await self._seen(key, cur)
        raise RevisionMismatch(key)

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        cmp = self._guard(key, expected_mod_revision)
        ok, resp, cur = await self._txn(key, cmp, pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
            key=key.encode(), prev_kv=True)))
        if not ok:
            if cur is None:
                raise KeyNotFound(key)
            await self._seen(key, cur)
            raise RevisionMismatch(key)
        prevs = resp.responses[0].response_delete_range.prev_kvs
        if not prevs:
            raise KeyNotFound(key)
        prev, rev = prevs[0], resp.header.revision
        if key.startswith(self.prefix):
            await self.mirror.wait_for(rev, APPLY_TIMEOUT)
        return KeyValue(key, stamp(prev.value, prev.mod_revision), prev.create_revision, rev)

    async def _seen(self, key: str, cur: kv_pb2.KeyValue | None) -> None:
        """After a lost compare, until the mirror shows the version that won: the caller's
        retry reads it (get_now) instead of the stale one it just failed with."""
        if cur is not None and key.startswith(self.prefix):
            await self.mirror.wait_for(cur.mod_revision, CONFLICT_WAIT)

    @staticmethod
    def _guard(key: str, expected: int) -> pb.Compare:
        if expected:
            return Cmp(key=key.encode(), target=Cmp.MOD, result=Cmp.EQUAL, mod_revision=expected)
        return Cmp(key=key.encode(), target=Cmp.VERSION, result=Cmp.GREATER, version=0)  # exists

    async def _txn(self, key: str, cmp: pb.Compare, op: pb.RequestOp, lease: int = 0
                   ) -> tuple[bool, pb.TxnResponse, kv_pb2.KeyValue | None]:
        """If cmp then op else get: (succeeded, response, the current kv when not succeeded)."""
        if self._closed.is_set():
            raise Unavailable("store is closed")
        req = pb.TxnRequest(compare=[cmp], success=[op],
                            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key.encode()))])
        try:
            resp = await self.client.txn(req)
        except LeaseNotFound:
            raise LeaseNotFound(lease) from None
        if resp.succeeded:
            return True, resp, None
        kvs = resp.responses[0].response_range.kvs
        return False, resp, (kvs[0] if kvs else None)

    async def _written(self, key: str, value: Value, data: bytes, create_rev: int, rev: int) -> KeyValue:
        """The acknowledged write, once the mirror shows it (read-your-writes on this server)."""
        if key.startswith(self.prefix):  # (a key outside the prefix is never mirrored)
            await self.mirror.wait_for(rev, APPLY_TIMEOUT)
        stamped = value(rev) if callable(value) else stamp(data, rev)
        return KeyValue(key, stamped, create_rev, rev)

    # ---- leases ----
    async def grant(self, ttl_seconds: int) -> int:
        return (await self.client.lease_grant(max(1, int(ttl_seconds)))).ID

    async def keep_alive(self, lease_id: int) -> int:
        resp = await self.client.lease_keep_alive(lease_id)
        if resp.TTL <= 0:
            raise LeaseNotFound(lease_id)
        return resp.TTL

    async def time_to_live(self, lease_id: int) -> int:
        resp = await self.client.lease_time_to_live(lease_id)
        if resp.TTL < 0:  # etcd answers -1 for a lease it does not know
            raise LeaseNotFound(lease_id)
        return resp.TTL

    async def revoke(self, lease_id: int) -> None:
        """etcd deletes the attached keys in one transaction; returns once the mirror shows it."""
        resp = await self.client.lease_revoke(lease_id)
        await self.mirror.wait_for(resp.header.revision, APPLY_TIMEOUT)

    # ---- watch ----
    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events after from_revision from the mirror's history, then live ones; Compacted when
        older than the history (the client relists). Ends when the mirror relists."""
        return self.mirror.watch(prefix, from_revision, self._closed)

    # ---- compaction ----
    async def compact(self, revision: int) -> None:
        """etcd Compact at `revision` (bounded by the mirror's). With several API servers the
        caller decides who compacts (the CAS on compact_rev_key, kube's compact.go): this is the
        step the winner runs."""
        revision = min(revision, self.mirror.revision)
        if revision <= self.mirror.compacted:
            return
        try:
            await self.client.compact(revision)
        except Compacted:
            pass  # someone compacted further already
        self.mirror.compacted_to(revision)

    async def status(self) -> pb.StatusResponse:
        return await self.client.status()
