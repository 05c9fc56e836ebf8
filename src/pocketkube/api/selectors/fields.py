"""Field selectors: apimachinery's pkg/fields grammar and the field labels each kind accepts.

`FieldSelector.parse` reads `?fieldSelector=` (`=`, `==`, `!=`, terms ANDed by commas, backslash
escapes for `\\`, `,` and `=`) and converts each field label as the apiserver does for the kind:
Pod, Node, Event, Namespace and Service accept their own labels (spec.nodeName, status.phase,
involvedObject.name, ...); every other kind only metadata.name and metadata.namespace. Matching
reads the object through tolerant accessors, so an odd stored object never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _meta(obj: dict, key: str) -> Any:
    meta = obj.get("metadata")
    return meta.get(key) if isinstance(meta, dict) else None


def _at(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _pod_ip(obj: dict) -> Any:
    ips = _at(obj, "status", "podIPs")
    if isinstance(ips, list) and ips and isinstance(ips[0], dict):
        return ips[0].get("ip")
    return _at(obj, "status", "podIP")


_Accessor = Callable[[dict], Any]


def _involved(key: str) -> _Accessor:
    return lambda o: _at(o, "involvedObject", key)


_NAME: dict[str, _Accessor] = {"metadata.name": lambda o: _meta(o, "name")}
_NAMESPACED: dict[str, _Accessor] = {**_NAME, "metadata.namespace": lambda o: _meta(o, "namespace")}

# Kinds with their own field label conversion upstream; others accept only name and namespace.
_FIELDS: dict[str, dict[str, _Accessor]] = {
    "Pod": {
        **_NAMESPACED,
        "spec.nodeName": lambda o: _at(o, "spec", "nodeName"),
        "spec.restartPolicy": lambda o: _at(o, "spec", "restartPolicy"),
        "spec.schedulerName": lambda o: _at(o, "spec", "schedulerName"),
        "spec.serviceAccountName": lambda o: _at(o, "spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: bool(_at(o, "spec", "hostNetwork")),
        "status.phase": lambda o: _at(o, "status", "phase"),
        "status.podIP": _pod_ip,
        "status.podIPs": _pod_ip,
        "status.nominatedNodeName": lambda o: _at(o, "status", "nominatedNodeName"),
    },
    "Node": {**_NAME, "spec.unschedulable": lambda o: bool(_at(o, "spec", "unschedulable"))},
    "Event": {
        **_NAMESPACED,
        **{f"involvedObject.{k}": _involved(k)
           for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": lambda o: o.get("reason"),
        "reportingComponent": lambda o: o.get("reportingComponent"),
        "source": lambda o: _at(o, "source", "component"),
        "type": lambda o: o.get("type"),
    },
    "Namespace": {**_NAME, "status.phase": lambda o: _at(o, "status", "phase")},
    "Service": {
        **_NAMESPACED,
        "spec.clusterIP": lambda o: _at(o, "spec", "clusterIP"),
        "spec.type": lambda o: _at(o, "spec", "type"),
    },
}
_FIELD_ALIASES = {("Pod", "spec.host"): "spec.nodeName"}


def _field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _split_terms(s: str) -> list[str]:
    """Split on commas that are not backslash-escaped."""
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(s):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


class FieldSelector:
    """Terms (field, op, value) with op "=" or "!=", ANDed, for one kind's field labels."""

    def __init__(self, kind: str, requirements: list[tuple[str, str, str]]) -> None:
        self.kind = kind
        self.requirements = requirements
        self._accessors = _FIELDS.get(kind, _NAMESPACED)

    @classmethod
    def parse(cls, s: str, kind: str) -> FieldSelector:
        """Parse `?fieldSelector=`; ValueError with Kubernetes' message on bad syntax or field label."""
        terms = sorted(t for t in _split_terms(s) if t) if s else []
        parsed: list[tuple[str, str, str]] = []
        for term in terms:
            split = _split_term(term)
            if split is None:
                raise ValueError(f"invalid selector: '{s}'; can't understand '{term}'")
            field, op, value = split
            parsed.append((field, "!=" if op == "!=" else "=", _unescape(value)))
        return cls(kind, [(cls._convert(kind, f), op, v) for f, op, v in parsed])

    @staticmethod
    def _convert(kind: str, field: str) -> str:
        field = _FIELD_ALIASES.get((kind, field), field)
        if kind in _FIELDS:
            if field not in _FIELDS[kind]:
                raise ValueError(f"field label not supported: {field}")
        elif field not in _NAMESPACED:
            raise ValueError(f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        return field

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict) -> bool:
        for field, op, value in self.requirements:
            actual = _field_string(self._accessors[field](obj))
            if (actual == value) != (op == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{v}" for f, op, v in self.requirements)
