"""The protobuf wire format: varints, field keys and length-delimited payloads, and the
`k8s\\x00` magic that starts every Kubernetes protobuf body."""

from __future__ import annotations

from collections.abc import Iterator

MAGIC = b"k8s\x00"

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
WIRE_NAMES = {VARINT: "varint", FIXED64: "64-bit", LEN: "length-delimited", FIXED32: "32-bit"}


class Malformed(ValueError):
    """The bytes are not valid protobuf for the schema; becomes a BadRequest."""


# --- wire format -----------------------------------------------------------------------------

def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Malformed("varint longer than 10 bytes")


def take(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if end > len(data):
        raise Malformed("field runs past the end of its message")
    return data[pos:end], end


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of one encoded message.

    Varints come back as unsigned ints, fixed-width fields as raw bytes, length-delimited
    fields as their payload bytes.
    """
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise Malformed("field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(data, pos)
        elif wire_type == FIXED64:
            value, pos = take(data, pos, 8)
        elif wire_type == FIXED32:
            value, pos = take(data, pos, 4)
        elif wire_type == LEN:
            size, pos = read_varint(data, pos)
            value, pos = take(data, pos, size)
        else:
            raise Malformed(f"unsupported wire type {wire_type} for field {number}")
        yield number, wire_type, value


def signed64(value: int) -> int:
    """Go's int32/int64 are varint-encoded as 64-bit two's complement."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value

