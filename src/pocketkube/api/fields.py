"""Field paths and field errors, worded as Kubernetes' apimachinery words them.

A FieldError renders exactly as `field.Error.Error()` does upstream:
``<path>: <Type>: <value>: <detail>`` (value omitted for Required/Forbidden/TooLong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_OMIT = object()

# type -> (Type.String(), Status cause reason)
_TYPES = {
    "Required": ("Required value", "FieldValueRequired"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "NotFound": ("Not found", "FieldValueNotFound"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "Internal": ("Internal error", "InternalError"),
}


class Path:
    """An immutable field path: Path("spec").child("ports").index(0).child("nodePort")."""

    __slots__ = ("_s",)

    def __init__(self, *names: str) -> None:
        self._s = ".".join(names)

    @classmethod
    def _raw(cls, s: str) -> Path:
        p = cls.__new__(cls)
        p._s = s
        return p

    def child(self, *names: str) -> Path:
        s = self._s
        for n in names:
            s = f"{s}.{n}" if s else n
        return Path._raw(s)

    def index(self, i: int) -> Path:
        return Path._raw(f"{self._s}[{i}]")

    def key(self, k: str) -> Path:
        return Path._raw(f"{self._s}[{k}]")

    def __str__(self) -> str:
        return self._s

    def __repr__(self) -> str:
        return f"Path({self._s!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other._s == self._s

    def __hash__(self) -> int:
        return hash(self._s)


def render_value(v: Any) -> str:
    """Render a bad value as Kubernetes does: strings quoted, numbers bare, composites as JSON."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if v is None:
        return "null"
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        return repr(v)


@dataclass(frozen=True)
class FieldError:
    type: str  # one of _TYPES keys
    field: str
    value: Any = _OMIT
    detail: str = ""

    @property
    def reason(self) -> str:
        return _TYPES[self.type][1]

    def body(self) -> str:
        """The message without the field prefix (Status cause `message`)."""
        s = _TYPES[self.type][0]
        if self.type not in ("Required", "Forbidden", "TooLong", "Internal") and self.value is not _OMIT:
            s += ": " + render_value(self.value)
        if self.detail:
            s += ": " + self.detail
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


def required(path: Path | str, detail: str = "") -> FieldError:
    return FieldError("Required", str(path), _OMIT, detail)


def invalid(path: Path | str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid", str(path), value, detail)


def duplicate(path: Path | str, value: Any) -> FieldError:
    return FieldError("Duplicate", str(path), value, "")


def not_supported(path: Path | str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{s}"' for s in sorted(supported)) if supported else ""
    return FieldError("NotSupported", str(path), value, detail)


def not_found(path: Path | str, value: Any) -> FieldError:
    return FieldError("NotFound", str(path), value, "")


def forbidden(path: Path | str, detail: str = "") -> FieldError:
    return FieldError("Forbidden", str(path), _OMIT, detail)


def too_long(path: Path | str, max_len: int) -> FieldError:
    return FieldError("TooLong", str(path), _OMIT, f"must have at most {max_len} bytes")


ErrorList = list[FieldError]
