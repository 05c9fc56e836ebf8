"""fieldValidation: unknown- and duplicate-field detection for `Strict` and `Warn`, with Kubernetes' texts.

The apiserver decodes request bodies with a strict JSON decoder and reports every field the
kind's schema does not know (`unknown field "spec.ports[0].bogus"`) and every key given twice
(`duplicate field "metadata.name"`). We compile the upstream schema of a kind (apiserver/schemas.py)
once into a small tree of structs, maps and lists, then walk the decoded body against it; bodies
are decoded as key/value pairs so duplicates survive. handlers.py decides what to do with the
findings: `Strict` rejects (400, or 422 for PATCH), `Warn` answers with Warning headers, `Ignore`
skips the walk. The message helpers below word the results as the apiserver does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from pocketkube.apiserver.schemas import Definitions, definitions, names_by_gvk

# The strict decoder stops collecting after this many errors.
MAX_STRICT_ERRORS = 100

_UPSTREAM_REF = "#/$defs/"


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# ----------------------------------------------------------------------------------------------
# Field validation: the schema compiled into a walk-friendly tree


class _Struct:
    """An object with known properties; any other key is an unknown field."""
    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, _Node] = {}


class _Map:
    """An object whose keys are free (labels, resources.limits); values share one schema."""
    __slots__ = ("value",)

    def __init__(self, value: _Node) -> None:
        self.value = value


class _List:
    __slots__ = ("item",)

    def __init__(self, item: _Node) -> None:
        self.item = item


# None stands for a scalar or an opaque value (IntOrString, FieldsV1, RawExtension): not walked.
_Node = _Struct | _Map | _List | None


class _Compiler:
    def __init__(self, schemas: Definitions) -> None:
        self.definitions = schemas
        self.compiled: dict[str, _Node] = {}

    def definition(self, name: str) -> _Node:
        if name not in self.compiled:
            schema = self.definitions.get(name, {})
            if "properties" in schema:
                # Registered before its fields are compiled, so recursive schemas terminate.
                struct = self.compiled[name] = _Struct()
                struct.fields = {key: self.node(prop) for key, prop in schema["properties"].items()}
            else:
                self.compiled[name] = self.node(schema)
        return self.compiled[name]

    def node(self, schema: dict[str, Any]) -> _Node:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.definition(ref.removeprefix(_UPSTREAM_REF))
        if "properties" in schema:
            struct = _Struct()
            struct.fields = {key: self.node(prop) for key, prop in schema["properties"].items()}
            return struct
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return _Map(self.node(values))
        items = schema.get("items")
        if isinstance(items, dict):
            item = self.node(items)
            return None if item is None else _List(item)
        return None


def _compiled_kind(api_version: Any, kind: Any) -> _Node:
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    name = names_by_gvk().get((*_split_api_version(api_version), kind))
    return None if name is None else _compiler().definition(name)


@cache
def _compiler() -> _Compiler:
    return _Compiler(definitions())


class _Pairs(list):
    """A JSON object decoded as its (key, value) pairs, so duplicate keys survive."""


_UNKNOWN, _DUPLICATE = "unknown field", "duplicate field"


class _Walker:
    """Walks a decoded body against a compiled schema, like Kubernetes' strict JSON decoder.

    Problems are collected in document order as (kind, path), deduplicated and capped like the
    decoder's. Values of the wrong JSON type are not descended into (that is a different error).
    """

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def report(self, problem: str, path: str) -> None:
        key = (problem, path)
        if len(self.problems) < MAX_STRICT_ERRORS and key not in self._seen:
            self._seen.add(key)
            self.problems.append(key)

    def walk(self, node: _Node, value: Any, path: str) -> None:
        kind = type(node)
        if kind is _Struct:
            self._struct(node.fields, value, path)  # type: ignore[union-attr]
        elif kind is _Map:
            self._map(node.value, value, path)  # type: ignore[union-attr]
        elif kind is _List and type(value) is list:
            item = node.item  # type: ignore[union-attr]
            for index, element in enumerate(value):
                if element is not None:
                    self.walk(item, element, f"{path}[{index}]")

    def _struct(self, fields: dict[str, _Node], value: Any, path: str) -> None:
        entries, seen = _entries(value), _seen_keys(value)
        if entries is None:
            return
        prefix = path + "." if path else ""
        for key, sub in entries:
            if key not in fields:
                self.report(_UNKNOWN, prefix + key)
                continue
            if seen is not None:
                if key in seen:
                    self.report(_DUPLICATE, prefix + key)
                seen.add(key)
            child = fields[key]
            if child is not None and sub is not None:
                self.walk(child, sub, prefix + key)

    def _map(self, child: _Node, value: Any, path: str) -> None:
        entries, seen = _entries(value), _seen_keys(value)
        if entries is None:
            return
        prefix = path + "." if path else ""
        for key, sub in entries:
            if seen is not None:
                if key in seen:
                    self.report(_DUPLICATE, prefix + key)
                seen.add(key)
            if child is not None and sub is not None:
                self.walk(child, sub, prefix + key)


def _entries(value: Any) -> Iterable[tuple[str, Any]] | None:
    kind = type(value)
    if kind is dict:
        return value.items()
    if kind is _Pairs:
        return value
    return None


def _seen_keys(value: Any) -> set[str] | None:
    """A fresh duplicate tracker for pair-decoded objects; plain dicts cannot hold duplicates."""
    return set() if type(value) is _Pairs else None


def unknown_fields(obj: dict[str, Any], api_version: str, kind: str) -> list[str]:
    """Paths (`spec.ports[0].bogus`) of the fields in obj that the kind's schema does not know.

    Unknown kinds give []; values of an unexpected type are skipped, never raised on.
    """
    node = _compiled_kind(api_version, kind)
    if node is None:
        return []
    walker = _Walker()
    walker.walk(node, obj, "")
    return [path for _, path in walker.problems]


def field_errors(body: bytes | str, api_version: str, kind: str) -> list[str]:
    """Strict-decoding error texts for a raw JSON body, unknown and duplicate fields together,
    in the decoder's order: `unknown field "spec.x"`, `duplicate field "metadata.name"`.

    A body that is not JSON (e.g. YAML) or a kind we do not know gives [].
    """
    node = _compiled_kind(api_version, kind)
    if node is None:
        return []
    try:
        decoded = json.loads(body, object_pairs_hook=_Pairs)
    except (ValueError, TypeError, RecursionError):
        return []
    walker = _Walker()
    walker.walk(node, decoded, "")
    return [f"{problem} {go_quote(path)}" for problem, path in walker.problems]


# ----------------------------------------------------------------------------------------------
# Messages, as the apiserver words them


def go_quote(text: str) -> str:
    """Go's strconv.Quote: double quotes, Go escapes, printable Unicode kept as is."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def warning_texts(fields: Sequence[str]) -> list[str]:
    """One `unknown field "<path>"` text per field: the Warning headers of fieldValidation=Warn."""
    return [f"{_UNKNOWN} {go_quote(path)}" for path in fields[:MAX_STRICT_ERRORS]]


def strict_decoding_error(errors: Sequence[str]) -> str:
    """`strict decoding error: <e1>, <e2>`: the whole message of a rejected strict PATCH."""
    return "strict decoding error: " + ", ".join(errors)


def cannot_handle_message(kind: str, api_version: str, detail: str) -> str:
    """How create and update wrap a decoding error: `Service in version "v1" cannot be ...`."""
    version = _split_api_version(api_version)[1]
    return f"{kind} in version {go_quote(version)} cannot be handled as a {kind}: {detail}"


def strict_error_message(kind: str, api_version: str, fields: Sequence[str]) -> str:
    """The BadRequest message of fieldValidation=Strict on create/update for unknown fields."""
    return cannot_handle_message(kind, api_version, strict_decoding_error(warning_texts(fields)))
