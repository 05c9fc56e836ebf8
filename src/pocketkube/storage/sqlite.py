"""SQLite backend: an append-only revision log (kine's data model) with group commit.

Every write is a row whose id is its revision; a delete appends a tombstone carrying the last
value. The live state and recent history are kept in memory, so reads and watches never touch
the database; SQLite is written once per batch, in a worker thread, and a write is acknowledged
only after its batch has committed (synchronous=FULL in WAL mode: it survives kill -9 and power
loss). Concurrent writers share one transaction and one fsync (group commit).

Leases (storage/leases.py keeps them in memory): a `leases` table holds each lease's TTL, every
row of `kv` the lease its key was attached to. A revoke, or an expiry found by a task of its own,
is a write in the same queue: one transaction deletes the lease and each attached key, every
delete with its own revision, so watchers see ordinary DELETE events.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sortedcontainers import SortedList

from pocketkube.storage import snapshot
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
    TooLarge,
    Unavailable,
    prefix_end,
)
from pocketkube.storage.leases import LeaseTable
from pocketkube.storage.sqlite_leases import SQLiteLeases

Value = bytes | Callable[[int], bytes]  # a callable gets the revision the write will have
BUSY_TIMEOUT_MS = 1000
# etcd's default --max-request-bytes: both backends refuse the same values (kube answers 413).
MAX_REQUEST_BYTES = 1536 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
"""



@dataclass(slots=True)
class _Op:
    kind: str  # create | update | delete | revoke | grant (key: "", expected: the lease id; grant: value = ttl)
    key: str
    value: Value | None
    expected: int
    future: asyncio.Future
    lease: int = 0


class _Watcher:
    __slots__ = ("prefix", "queue", "overflow", "wake")

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.queue: collections.deque[Event] = collections.deque()
        self.overflow = limit
        self.wake = asyncio.Event()


class SQLiteBackend(SQLiteLeases):
    shared = False  # one API server process owns the file (storage/interface.py)

    def __init__(self, path: str, *, history: int = 50_000, watcher_buffer: int = 100_000,
                 synchronous: str = "FULL", max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.path = path
        self._max_request = max_request_bytes
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._watcher_buffer = watcher_buffer
        self._synchronous = synchronous
        self._state: dict[str, KeyValue] = {}
        self._keys: SortedList = SortedList()  # the live keys in order: ranges and pages by prefix
        self._rev = 0
        self._compact_rev = 0
        self._queue: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._watchers: set[_Watcher] = set()
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._closed = False
        self._leases = LeaseTable()
        self._lease_wake: asyncio.Event | None = None
        self._expirer: asyncio.Task | None = None

    # ---- lifecycle ----
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._open)
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._lease_wake = asyncio.Event()
        self._expirer = asyncio.create_task(self._expire_loop(), name="sqlite-lease-expiry")

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        # Another process holding the database (a backup, the sqlite3 shell) makes writes fail with
        # 503 after this long instead of stalling every writer behind it.
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.executescript(_SCHEMA)
        if "lease" not in {row[1] for row in db.execute("PRAGMA table_info(kv)")}:  # a data dir from before leases
            db.execute("ALTER TABLE kv ADD COLUMN lease INTEGER NOT NULL DEFAULT 0")
        now = time.monotonic()
        for lease_id, ttl in db.execute("SELECT id, ttl FROM leases").fetchall():
            self._leases.add(lease_id, ttl, now)  # the whole TTL again (etcd's Promote)
        self._load(db)
        max_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM kv").fetchone()[0]
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        self._rev = max(max_id, meta.get("last_rev", 0))
        self._compact_rev = meta.get("compact_rev", 0)
        self._db_compact_rev = self._compact_rev  # as the worker thread last committed it
        self._db = db

    def _load(self, db: sqlite3.Connection) -> None:
        rows = db.execute(
            "SELECT k.name, k.value, k.create_revision, k.id, k.lease FROM kv k "
            "JOIN (SELECT name, MAX(id) AS id FROM kv GROUP BY name) m ON k.id = m.id "
            "WHERE k.deleted = 0").fetchall()
        self._state = {name: KeyValue(name, bytes(value), crev, rev) for name, value, crev, rev, _ in rows}
        self._keys = SortedList(self._state)
        self._leases.key_lease.clear()
        self._leases.lease_keys.clear()
        for name, _, _, _, lease_id in rows:
            if lease_id in self._leases.leases:  # (a lease gone with its keys cannot be missing)
                self._leases.attach(name, lease_id)

    async def rename_prefixes(self, renames: dict[str, str]) -> int:
        """Move keys from old prefixes to new ones (a key layout change), history included, in one
        transaction: revisions keep their meaning, so clients' resourceVersions stay valid."""
        loop = asyncio.get_running_loop()
        moved = await loop.run_in_executor(self._pool, self._rename, renames)
        if moved:
            await loop.run_in_executor(self._pool, self._load, self._db)
            self._history.clear()  # it holds the old names; the log has the new ones
        return moved

    def _rename(self, renames: dict[str, str]) -> int:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            moved = 0
            for old, new in renames.items():
                moved += db.execute("UPDATE kv SET name = ? || substr(name, ?) WHERE name >= ? AND name < ?",
                                    (new, len(old) + 1, old, prefix_end(old))).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return moved

    async def close(self) -> None:
        self._closed = True
        for task in (self._expirer, self._writer):
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        for w in list(self._watchers):
            w.wake.set()
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)

    # ---- reads (memory only) ----
    def current_revision(self) -> int:
        return self._rev

    def compacted_revision(self) -> int:
        return self._compact_rev

    async def get(self, key: str) -> KeyValue | None:
        return self._state.get(key)

    def get_now(self, key: str) -> KeyValue | None:
        return self._state.get(key)

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.range_now(prefix), self._rev

    def _live_keys(self, prefix: str, start: str = ""):
        return self._keys.irange(max(prefix, start), prefix_end(prefix) or None, inclusive=(True, False))

    def range_now(self, prefix: str) -> list[KeyValue]:
        state = self._state
        return [state[k] for k in self._live_keys(prefix)]

    def count(self, prefix: str, start: str = "") -> int:
        end = self._keys.bisect_left(prefix_end(prefix)) if prefix else len(self._keys)
        return end - self._keys.bisect_left(max(prefix, start))

    async def consistent_revision(self) -> int:
        return self._rev  # one process owns the file: memory is the committed state

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        return revision <= self._rev  # writes apply in memory when they commit

    async def range_at(self, prefix: str, revision: int = 0, *, start: str = "", limit: int = 0) -> RangeResult:
        current = self._rev
        if revision == 0 or revision == current:
            return self._range_latest(prefix, start, limit)
        if revision > current:
            raise FutureRevision(revision, current)
        if revision < self._compact_rev:
            raise Compacted(revision, self._compact_rev)
        if self._history and self._history[0].revision <= revision + 1:
            return snapshot.range_then(self._state, self._live_keys(prefix, start), self.count(prefix, start),
                                       self._history, revision, prefix, start, limit)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._range_log, prefix, revision, start, limit)

    def _range_latest(self, prefix: str, start: str, limit: int) -> RangeResult:
        keys = self._live_keys(prefix, start)
        if limit:
            keys = itertools.islice(keys, limit)
        return RangeResult([self._state[k] for k in keys], self.count(prefix, start), self._rev)

    def _range_log(self, prefix: str, revision: int, start: str, limit: int) -> RangeResult:
        """The range as of an older revision, from the log (newest row of each key up to it)."""
        assert self._db is not None
        if revision < self._db_compact_rev:  # compacted while this read waited for the thread
            raise Compacted(revision, self._db_compact_rev)
        rows = self._db.execute(
            "SELECT k.name, k.value, k.create_revision, k.id FROM kv k JOIN "
            "(SELECT MAX(id) AS id FROM kv WHERE name >= ? AND (? = '' OR name < ?) AND id <= ? GROUP BY name) m "
            "ON k.id = m.id WHERE k.deleted = 0 ORDER BY k.name",
            (max(prefix, start), prefix_end(prefix), prefix_end(prefix), revision)).fetchall()
        kvs = [KeyValue(name, bytes(value), crev, rev) for name, value, crev, rev in rows]
        return RangeResult(kvs[:limit] if limit else kvs, len(kvs), revision)

    # ---- writes (group commit) ----
    async def create(self, key: str, value: Value, *, lease: int = 0) -> KeyValue:
        return await self._submit("create", key, value, 0, lease)

    async def update(self, key: str, value: Value, expected_mod_revision: int = 0, *, lease: int = 0) -> KeyValue:
        return await self._submit("update", key, value, expected_mod_revision, lease)

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        return await self._submit("delete", key, None, expected_mod_revision)

    async def _submit(self, kind: str, key: str, value: Value | None, expected: int, lease: int = 0):
        if self._closed or self._wake is None:
            raise Unavailable("store is closed")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(kind, key, value, expected, fut, lease))
        self._wake.set()
        return await fut

    async def _write_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit_batch(loop, batch)

    async def _commit_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Op]) -> None:
        overlay: dict[str, KeyValue | None] = {}
        attached: dict[str, int] = {}  # key -> lease (0: none), as this batch leaves it
        revoked: list[int] = []
        granted: list[tuple[int, int]] = []  # (lease id, ttl)
        rows: list[tuple] = []
        events: list[Event] = []
        done: list[tuple[asyncio.Future, KeyValue | None]] = []
        rev = self._rev

        def delete(key: str, cur: KeyValue) -> KeyValue:
            nonlocal rev
            rev += 1
            kv = KeyValue(key, cur.value, cur.create_revision, rev)
            overlay[key] = None
            attached[key] = 0
            rows.append((rev, key, 1, cur.create_revision, cur.mod_revision, cur.value, 0))
            events.append(Event("DELETE", kv, cur))
            return kv

        for op in batch:
            if op.future.done():  # caller went away
                continue
            if op.kind == "grant":
                granted.append((op.expected, int(op.value)))  # type: ignore[arg-type]
                done.append((op.future, None))
                continue
            if op.kind == "revoke":
                if op.expected not in self._leases.leases or op.expected in revoked:
                    op.future.set_exception(LeaseNotFound(op.expected))
                    continue
                revoked.append(op.expected)
                for key in self._leases.keys_of(op.expected, attached):
                    cur = overlay[key] if key in overlay else self._state.get(key)
                    if cur is not None:
                        delete(key, cur)
                done.append((op.future, None))
                continue
            cur = overlay[op.key] if op.key in overlay else self._state.get(op.key)
            try:
                if op.kind == "create":
                    if cur is not None:
                        raise KeyExists(op.key)
                elif cur is None:
                    raise KeyNotFound(op.key)
                elif op.expected and cur.mod_revision != op.expected:
                    raise RevisionMismatch(op.key)
                if op.lease and (op.lease not in self._leases.leases or op.lease in revoked):
                    raise LeaseNotFound(op.lease)
                if op.kind == "delete":
                    assert cur is not None
                    kv = delete(op.key, cur)
                else:
                    next_rev = rev + 1
                    value = op.value(next_rev) if callable(op.value) else op.value
                    assert isinstance(value, bytes)
                    if len(value) + len(op.key) > self._max_request:
                        raise TooLarge(f"request is too large: {len(value)} bytes, limit {self._max_request}")
                    crev = next_rev if cur is None else cur.create_revision
                    kv = KeyValue(op.key, value, crev, next_rev)
                    overlay[op.key] = kv
                    attached[op.key] = op.lease
                    rows.append((next_rev, op.key, 0, crev, cur.mod_revision if cur else 0, value, op.lease))
                    events.append(Event("PUT", kv, cur))
                    rev = next_rev
                done.append((op.future, kv))
            except Exception as exc:  # noqa: BLE001 - delivered to the caller that caused it
                op.future.set_exception(exc)
        if not rows and not revoked and not granted:
            return
        try:
            await loop.run_in_executor(self._pool, self._insert, rows, revoked, granted)
        except Exception as exc:  # noqa: BLE001 - disk full, locked, I/O error
            err = Unavailable(f"storage write failed: {exc}")
            for fut, _ in done:
                if not fut.done():
                    fut.set_exception(err)
            return
        for key, kv in overlay.items():
            if kv is None:
                if self._state.pop(key, None) is not None:
                    self._keys.remove(key)
            else:
                if key not in self._state:
                    self._keys.add(key)
                self._state[key] = kv
        for key, lease_id in attached.items():
            self._leases.attach(key, lease_id)
        for lease_id in revoked:
            self._leases.drop(lease_id)
        now = time.monotonic()
        for lease_id, ttl in granted:
            self._leases.add(lease_id, ttl, now)
        self._rev = rev
        self._history.extend(events)
        for fut, result in done:
            if not fut.done():
                fut.set_result(result)
        self._broadcast(events)

    def _insert(self, rows: list[tuple], revoked: list[int] = (),  # type: ignore[assignment]
                granted: list[tuple[int, int]] = ()) -> None:  # type: ignore[assignment]
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO leases (id, ttl) VALUES (?, ?)", granted)
            db.executemany(
                "INSERT INTO kv (id, name, deleted, create_revision, prev_revision, value, lease) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany("DELETE FROM leases WHERE id = ?", [(lid,) for lid in revoked])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- watch ----
    def _broadcast(self, events: list[Event]) -> None:
        for w in list(self._watchers):
            queued = len(w.queue)
            for ev in events:
                if ev.kv.key.startswith(w.prefix):
                    w.queue.append(ev)
            if len(w.queue) > w.overflow:
                self._watchers.discard(w)  # too slow: end its stream, the client relists
            elif len(w.queue) == queued:
                continue  # nothing under its prefix: waking it would only cost a task switch
            w.wake.set()

    async def _history_after(self, prefix: str, revision: int) -> list[Event]:
        if revision < self._compact_rev:
            raise Compacted(revision, self._compact_rev)
        if revision >= self._rev:
            return []
        if self._history and self._history[0].revision <= revision + 1:
            return [e for e in self._history if e.revision > revision and e.kv.key.startswith(prefix)]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_log, prefix, revision, self._rev)

    def _read_log(self, prefix: str, after: int, upto: int) -> list[Event]:
        assert self._db is not None
        # The previous version of an update is joined in: watchers need it to tell MODIFIED from
        # ADDED and to see an object leave their selector. Compaction keeps it (it is the newest
        # version at or below any compaction point this event survived).
        rows = self._db.execute(
            "SELECT k.id, k.name, k.deleted, k.create_revision, k.prev_revision, k.value, p.value, "
            "p.create_revision FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision "
            "WHERE k.id > ? AND k.id <= ? ORDER BY k.id", (after, upto)).fetchall()
        out = []
        for rid, name, deleted, crev, prev_rev, value, prev_value, prev_crev in rows:
            if not name.startswith(prefix):
                continue
            value = bytes(value)
            if deleted:
                out.append(Event("DELETE", KeyValue(name, value, crev, rid), KeyValue(name, value, crev, prev_rev)))
                continue
            prev = KeyValue(name, bytes(prev_value), prev_crev, prev_rev) if prev_value is not None else None
            out.append(Event("PUT", KeyValue(name, value, crev, rid), prev))
        return out

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Events after from_revision under prefix; ends (returns) if the watcher falls behind."""
        w = _Watcher(prefix, self._watcher_buffer)
        self._watchers.add(w)
        try:
            last = from_revision
            for ev in await self._history_after(prefix, from_revision):
                last = ev.revision
                yield ev
            while not self._closed and w in self._watchers:
                while w.queue:
                    ev = w.queue.popleft()
                    if ev.revision > last:
                        last = ev.revision
                        yield ev
                if w not in self._watchers:
                    return
                w.wake.clear()
                await w.wake.wait()
        finally:
            self._watchers.discard(w)

    # ---- compaction ----
    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compact_rev:
            return
        await asyncio.get_running_loop().run_in_executor(self._pool, self._compact, revision, self._rev)
        self._compact_rev = revision

    def _compact(self, revision: int, last_rev: int) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Drop every row superseded by a newer row of the same key at or below `revision`,
            # and tombstones at or below it: what etcd's compaction forgets.
            db.execute(
                "DELETE FROM kv WHERE id <= ? AND (deleted = 1 OR id < "
                "(SELECT MAX(k2.id) FROM kv k2 WHERE k2.name = kv.name AND k2.id <= ?))",
                (revision, revision))
            db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                           [("compact_rev", revision), ("last_rev", last_rev)])
            db.execute("COMMIT")
            self._db_compact_rev = revision
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def database_size(self) -> int:
        assert self._db is not None
        with self._db_lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return pages * size
