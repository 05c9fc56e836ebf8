"""Open a backend from a datastore URL (storage/datastore.py): SQLite or etcd."""

from __future__ import annotations

from pocketkube.storage import datastore
from pocketkube.storage.datastore import TLSFiles
from pocketkube.storage.interface import Backend
from pocketkube.storage.sqlite import SQLiteBackend


def open_backend(dsn: str, files: TLSFiles = TLSFiles()) -> Backend:
    datastore.check(dsn, files)
    if dsn.startswith("sqlite://"):
        return SQLiteBackend(dsn.removeprefix("sqlite://"))
    if dsn == "memory://":
        return SQLiteBackend(":memory:", synchronous="OFF")
    if dsn.startswith("memory://"):
        raise datastore.DatastoreError(f"unsupported datastore URL {dsn!r}: memory:// takes no path")
    from pocketkube.storage.etcd.backend import EtcdBackend  # grpc only when etcd is used

    return EtcdBackend(datastore.parse_etcd(dsn, files))
