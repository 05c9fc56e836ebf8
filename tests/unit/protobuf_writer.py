"""A minimal protobuf writer for the tests' hand-built request bodies (k8s.io/api field numbers):
what kubectl's generator commands send, built field by field."""

from __future__ import annotations

from pocketkube.apiserver.protobuf import MAGIC


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative ints are sent as 64-bit two's complement, like Go does
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def num(number: int, value: int | bool) -> bytes:
    return key(number, 0) + varint(int(value))


def sub(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(data)) + data


def entry(number: int, k: str, v: bytes | str) -> bytes:
    """One map entry (key 1, value 2) of the map field `number`."""
    return sub(number, sub(1, k) + sub(2, v))


def body(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    """The k8s protobuf envelope: magic, runtime.Unknown's TypeMeta and raw object (and any extra fields)."""
    type_meta = sub(1, sub(1, api_version) + sub(2, kind))
    return MAGIC + type_meta + sub(2, raw) + b"".join(extra)
