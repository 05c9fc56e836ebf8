"""Typed access to pod-shaped JSON, shared by every kind's validation: a wrong JSON type
becomes a FieldError on that field, never an exception. Also the checks on ports, protocols
and quantities that pods, Services, Endpoints and Nodes share."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, duplicate, invalid, not_supported, required
from pocketkube.api.validation import dns1123_label_errors, is_int, port_name_errors, wrong_type
from pocketkube.registry.validation import get_str

NEGATIVE = "must be greater than or equal to 0"
PORT_RANGE = "must be between 1 and 65535, inclusive"
PROTOCOLS = ["SCTP", "TCP", "UDP"]
QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"

# ---------------------------------------------------------------------------------------------
# Typed access: wrong JSON types become FieldErrors, never exceptions.
# ---------------------------------------------------------------------------------------------

def get_dict(parent: dict, key: str, path: Path, errs: list[FieldError]) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.append(wrong_type(path.child(key), value, "object"))
        return {}
    return value


def get_list(parent: dict, key: str, path: Path, errs: list[FieldError]) -> list:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errs.append(wrong_type(path.child(key), value, "array"))
        return []
    return value


def get_int(parent: dict, key: str, path: Path, errs: list[FieldError]) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if not is_int(value):
        errs.append(wrong_type(path.child(key), value, "integer"))
        return None
    return value


def get_bool(parent: dict, key: str, path: Path, errs: list[FieldError]) -> bool | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        errs.append(wrong_type(path.child(key), value, "boolean"))
        return None
    return value


def dict_items(items: list, path: Path, errs: list[FieldError]) -> list[tuple[int, dict]]:
    """(index, item) for the list entries that are objects; others are reported."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            errs.append(wrong_type(path.index(i), item, "object"))
    return out


def required_str(parent: dict, key: str, path: Path, errs: list[FieldError]) -> str:
    """parent[key] as a string; `Required value` when it is missing or empty (a wrong type is
    reported once, by get_str)."""
    value = get_str(parent, key, path, errs)
    if not value and not not_a_string(parent, key):
        errs.append(required(path.child(key)))
    return value


def unique_label_name(item: dict, path: Path, seen: set[str], errs: list[FieldError]) -> str:
    """item.name of a list whose names are DNS-1123 labels unique among `seen` (volumes,
    containers); adds it to `seen`."""
    name = required_str(item, "name", path, errs)
    if name:
        errs.extend(invalid(path.child("name"), name, m) for m in dns1123_label_errors(name))
        if name in seen:
            errs.append(duplicate(path.child("name"), name))
        seen.add(name)
    return name


def not_supported_ordered(path: Path, value: Any, supported: list[str]) -> FieldError:
    """NotSupported listing values in the order upstream passes them (fields.not_supported sorts)."""
    return FieldError("NotSupported", str(path), value, "supported values: " + ", ".join(f'"{s}"' for s in supported))


def nonnegative(value: int | None, path: Path) -> list[FieldError]:
    return [invalid(path, value, NEGATIVE)] if value is not None and value < 0 else []


# ---------------------------------------------------------------------------------------------
# Names, ports, quantities
# ---------------------------------------------------------------------------------------------

def port_number_errors(value: int, path: Path) -> list[FieldError]:
    return [] if 1 <= value <= 65535 else [invalid(path, value, PORT_RANGE)]


def port_num_or_name_errors(value: Any, path: Path) -> list[FieldError]:
    """An IntOrString port: a number in range or an IANA_SVC_NAME."""
    if is_int(value):
        return port_number_errors(value, path)
    if isinstance(value, str):
        return [invalid(path, value, m) for m in port_name_errors(value)]
    if value is None:
        return [invalid(path, 0, PORT_RANGE)]
    return [wrong_type(path, value, "integer or string")]


def protocol_errors(parent: dict, path: Path, errs: list[FieldError]) -> None:
    protocol = get_str(parent, "protocol", path, errs)
    if not protocol and not not_a_string(parent, "protocol"):
        errs.append(required(path.child("protocol")))
    elif protocol and protocol not in PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))


def not_a_string(parent: dict, key: str) -> bool:
    return is_wrong_type(parent, key, str)


def is_wrong_type(parent: dict, key: str, expected: type) -> bool:
    """Whether parent[key] is present with another JSON type (already reported by a get_* accessor)."""
    value = parent.get(key)
    if value is None:
        return False
    if expected is int:
        return not is_int(value)
    return not isinstance(value, expected)
