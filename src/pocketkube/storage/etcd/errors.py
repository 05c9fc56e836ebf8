"""etcd's gRPC errors in the store's terms (storage/interface.py).

etcd answers with a gRPC status code and a message naming the cause ("etcdserver: no leader",
"mvcc: required revision has been compacted", ...): the message picks the error where the code
alone is ambiguous, as client/v3's rpctypes does.
"""

from __future__ import annotations

import grpc

from pocketkube.storage.interface import (
    Compacted,
    FutureRevision,
    LeaseNotFound,
    StoreError,
    TooLarge,
    Unavailable,
)

# Codes worth retrying: the request did not reach a leader, or the leader went away meanwhile.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
_UNAVAILABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED})


class NotEtcd(Unavailable):
    """The endpoint answers, but not as etcd (wrong port, another service)."""


def map_error(code: grpc.StatusCode, details: str, *, requested: int = 0, current: int = 0,
              lease: int = 0) -> StoreError:
    """The store error for an etcd RPC failure; `requested`/`current` fill Compacted/FutureRevision,
    `lease` LeaseNotFound."""
    text = details or code.name
    if "requested lease not found" in text:
        return LeaseNotFound(lease)
    if "required revision has been compacted" in text:
        return Compacted(requested, current)
    if "required revision is a future revision" in text:
        return FutureRevision(requested, current)
    if "request is too large" in text or code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger" in text:
        return TooLarge(f"etcd: {text}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return NotEtcd(f"the datastore endpoint does not speak etcd's v3 API: {text}")
    if code in _UNAVAILABLE_CODES:
        return Unavailable(f"etcd unavailable: {text}")
    return StoreError(f"etcd: {code.name}: {text}")


def is_retryable(code: grpc.StatusCode, details: str) -> bool:
    """UNAVAILABLE (no leader, leader changed, member down), as kube-apiserver's retry wrapper."""
    return code in RETRYABLE
