"""Decoding: wire fields + message schemas → the exact dict the JSON API would have received."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from pocketkube.api.errors import BadRequest
from pocketkube.apiserver.protobuf.messages import (
    EXPECTED_WIRE,
    INT_OR_STRING,
    QUANTITY,
    SCHEMAS,
    TIMESTAMP,
    UNKNOWN,
    Field,
    Kind,
    Message,
)
from pocketkube.apiserver.protobuf.wire import (
    LEN,
    MAGIC,
    VARINT,
    WIRE_NAMES,
    Malformed,
    iter_fields,
    read_varint,
    signed64,
)


def decode_message(data: bytes, schema: Message) -> dict[str, Any]:
    """Decode one message into its JSON dict; unknown field numbers are skipped."""
    collected: dict[int, Any] = {}
    for number, wire_type, raw in iter_fields(data):
        field = schema.by_number.get(number)
        if field is None:
            continue
        for value in _field_values(field, wire_type, raw, schema):
            if field.repeated:
                collected.setdefault(number, []).append(value)
            elif field.kind in (Kind.STRING_MAP, Kind.QUANTITY_MAP, Kind.BYTES_MAP):
                collected.setdefault(number, {}).update([value])
            else:
                collected[number] = value  # proto: the last occurrence wins
    return _to_json(schema, collected)


def _field_values(field: Field, wire_type: int, raw: int | bytes, schema: Message) -> list[Any]:
    expected = EXPECTED_WIRE.get(field.kind, LEN)
    if field.repeated and expected == VARINT and wire_type == LEN:
        return [_scalar(field, v) for v in _packed_varints(raw)]  # type: ignore[arg-type]
    if wire_type != expected:
        raise Malformed(f"{schema.name}.{field.json_name or field.schema.name}: wire type "
                         f"{WIRE_NAMES.get(wire_type)}, expected {WIRE_NAMES[expected]}")
    if expected == VARINT:
        return [_scalar(field, raw)]  # type: ignore[arg-type]
    return [_decode_payload(field, raw)]  # type: ignore[arg-type]


def _packed_varints(data: bytes) -> Iterator[int]:
    pos = 0
    while pos < len(data):
        value, pos = read_varint(data, pos)
        yield value


def _scalar(field: Field, value: int) -> int | bool:
    return value != 0 if field.kind is Kind.BOOL else signed64(value)


def _decode_payload(field: Field, data: bytes) -> Any:
    kind = field.kind
    if kind is Kind.STRING:
        return _text(data)
    if kind is Kind.BYTES:
        return data
    if kind is Kind.BASE64:
        return base64.b64encode(data).decode()
    if kind in (Kind.MESSAGE, Kind.INLINE):
        assert field.schema is not None
        return decode_message(data, field.schema)
    if kind is Kind.STRING_MAP:
        return _map_entry(data, _text)
    if kind is Kind.QUANTITY_MAP:
        return _map_entry(data, _decode_quantity)
    if kind is Kind.BYTES_MAP:
        return _map_entry(data, lambda raw: base64.b64encode(raw).decode())
    if kind is Kind.INT_OR_STRING:
        return _decode_int_or_string(data)
    if kind is Kind.QUANTITY:
        return _decode_quantity(data)
    if kind is Kind.TIME:
        return _decode_time(data)
    return _decode_fields_v1(data)


def _text(data: bytes) -> str:
    # Go keeps invalid UTF-8 in strings and encoding/json replaces it with U+FFFD; do the same.
    return data.decode("utf-8", errors="replace")


def _map_entry(data: bytes, decode_value: Any) -> tuple[str, Any]:
    """A proto map entry is a message {1: key, 2: value}; missing parts are zero values."""
    key, value = "", decode_value(b"")
    for number, wire_type, raw in iter_fields(data):
        if number in (1, 2) and wire_type != LEN:
            raise Malformed(f"map entry field {number}: wire type {WIRE_NAMES.get(wire_type)}")
        if number == 1:
            key = _text(raw)  # type: ignore[arg-type]
        elif number == 2:
            value = decode_value(raw)
    return key, value


def _decode_int_or_string(data: bytes) -> int | str:
    value = decode_message(data, INT_OR_STRING)
    if value.get("type", 0) == 1:
        return value.get("strVal", "")
    return value.get("intVal", 0)


def _decode_quantity(data: bytes) -> str:
    # A zero Quantity serialises as "0" in JSON.
    return decode_message(data, QUANTITY).get("string") or "0"


_GO_ZERO_TIME_SECONDS = -62135596800  # 0001-01-01T00:00:00Z as Unix seconds


def _decode_time(data: bytes) -> str | None:
    """metav1.Time as RFC 3339 in whole seconds, or None for Go's zero time (JSON null).

    An empty message is how Go encodes the zero time; nanoseconds never reach JSON.
    """
    seconds = decode_message(data, TIMESTAMP).get("seconds", 0) if data else None
    if seconds is None or seconds == _GO_ZERO_TIME_SECONDS:
        return None
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise Malformed(f"timestamp {seconds} out of range") from e
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def _decode_fields_v1(data: bytes) -> Any:
    raw = b""
    for number, wire_type, value in iter_fields(data):
        if number == 1 and wire_type == LEN:
            raw = value  # type: ignore[assignment]
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as e:
        raise Malformed("managedFields fieldsV1 is not valid JSON") from e


def _to_json(schema: Message, collected: dict[int, Any]) -> dict[str, Any]:
    """Lay the decoded fields out in Go struct order, dropping what omitempty would drop."""
    out: dict[str, Any] = {}
    for field in schema.fields:
        if field.number not in collected:
            continue
        value = collected[field.number]
        if field.kind is Kind.INLINE:
            out.update(value)
        elif _emitted(field, value):
            out[field.json_name] = value
    return out


def _emitted(field: Field, value: Any) -> bool:
    if field.repeated or field.kind in (Kind.MESSAGE, Kind.STRING_MAP, Kind.QUANTITY_MAP, Kind.BYTES_MAP,
                                        Kind.INT_OR_STRING, Kind.QUANTITY):
        return True
    if field.kind is Kind.TIME:
        return value is not None
    return field.keep_zero or bool(value)


# --- entry point -----------------------------------------------------------------------------

def decode_body(data: bytes) -> dict[str, Any]:
    """Decode a `application/vnd.kubernetes.protobuf` request body into its JSON object.

    Raises BadRequest for anything that is not a well-formed protobuf Namespace, Service, Pod,
    Deployment or ReplicaSet.
    """
    if not data.startswith(MAGIC):
        raise BadRequest("the protobuf body does not start with the Kubernetes magic prefix "
                         "k8s\\x00")
    try:
        envelope = decode_message(data[len(MAGIC):], UNKNOWN)
        api_version, kind = _type_of(envelope)
        schema = SCHEMAS.get((api_version, kind))
        if schema is None:
            raise BadRequest(f'protobuf bodies of kind "{kind}" in "{api_version}" are not '
                             "supported; send the object as application/json")
        obj = decode_message(envelope.get("raw", b""), schema)
    except Malformed as e:
        raise BadRequest(f"the protobuf body could not be decoded: {e}") from None
    return {"kind": kind, "apiVersion": api_version, **obj}


def _type_of(envelope: dict[str, Any]) -> tuple[str, str]:
    if envelope.get("contentEncoding"):
        raise BadRequest(f'protobuf content encoding "{envelope["contentEncoding"]}" is not '
                         "supported")
    type_meta = envelope.get("typeMeta", {})
    return type_meta.get("apiVersion", ""), type_meta.get("kind", "")

