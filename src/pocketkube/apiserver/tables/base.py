"""The generic half of server-side printing: the `meta.k8s.io/v1` Table, its rows, what printers share.

A Printer is a tuple of Columns and a cells function (plus, for pods, row conditions); the
per-group modules (core, apps, discovery, coordination) define them and tables/__init__.py maps
(group, resource) to them. kubectl prints the cells exactly as given (it never recomputes an age),
so the shared helpers follow apimachinery: human_duration is duration.HumanDuration, label and
selector cells are labels.FormatLabels and metav1.FormatLabelSelector (parsed by api.selectors,
the one label-selector implementation). Cell functions read objects through the tolerant
accessors below: a stored object of an odd shape degrades one cell, never the response; a printer
that raises anyway costs its row the details (render's safety net), never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pocketkube.api.selectors import LabelSelector
from pocketkube.api.timestamps import parse_rfc3339
from pocketkube.util.durations import human_duration

Cell = str | int | bool | None
CellsFn = Callable[[dict, float], list[Cell]]

TABLE_API_VERSION = "meta.k8s.io/v1"
NONE = "<none>"
UNKNOWN = "<unknown>"
MAX_LISTED = 3  # entries shown in an endpoints cell before "+ N more..."


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    type: str = "string"
    priority: int = 0  # 1: shown only with -o wide
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: CellsFn
    row_conditions: Callable[[dict], list[dict]] | None = None


def render(printer: Printer, objects: list[dict], now: datetime | float, *,
           include_object: str = "Metadata", resource_version: str = "",
           continue_token: str = "", with_columns: bool = True, remaining: int | None = None) -> dict:
    """`objects` as a Table drawn by `printer` (lists, single GETs and watch events alike)."""
    now_epoch = _now_epoch(now)
    meta = _list_meta(resource_version, continue_token)
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    result: dict[str, Any] = {"kind": "Table", "apiVersion": TABLE_API_VERSION, "metadata": meta}
    if with_columns:
        result["columnDefinitions"] = [c.definition() for c in printer.columns]
    result["rows"] = [_row(printer, obj, now_epoch, include_object) for obj in objects]
    return result




def _list_meta(resource_version: str, continue_token: str) -> dict:
    meta = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    return meta


def _row(printer: Printer, obj: dict, now: float, include_object: str) -> dict:
    obj = as_map(obj)
    row: dict[str, Any] = {"cells": _safe_cells(printer, obj, now)}
    if printer.row_conditions is not None:
        conditions = printer.row_conditions(obj)
        if conditions:
            row["conditions"] = conditions
    if include_object == "Object":
        row["object"] = obj
    elif include_object != "None":
        row["object"] = partial_object_metadata(obj)
    return row


def _safe_cells(printer: Printer, obj: dict, now: float) -> list[Cell]:
    # Last line of defence: a printing bug must cost a row its details, never a 500.
    try:
        return printer.cells(obj, now)
    except Exception:  # noqa: BLE001
        return [name_of(obj)] + [None] * (len(printer.columns) - 1)


def partial_object_metadata(obj: dict) -> dict:
    metadata = {k: v for k, v in as_map(obj.get("metadata")).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION, "metadata": metadata}


def as_map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def maps_in(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def texts_in(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dig(obj: dict, *path: str) -> Any:
    value: Any = obj
    for key in path:
        value = as_map(value).get(key)
    return value


def name_of(obj: dict) -> str:
    return as_text(dig(obj, "metadata", "name"))


def or_none(value: str) -> str:
    return value if value else NONE


def _now_epoch(now: datetime | float) -> float:
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
    return float(now)


def since(timestamp: Any, now: float) -> str:
    moment = parse_rfc3339(timestamp)
    return UNKNOWN if moment is None else human_duration(now - moment)


def age(obj: dict, now: float) -> str:
    return since(dig(obj, "metadata", "creationTimestamp"), now)


def name_and_created_at(obj: dict, now: float) -> list[Cell]:
    """The cells of printers whose only column after NAME is "Created At" (LimitRange, Role,
    ClusterRole): the stored creationTimestamp is already RFC 3339 in UTC, as upstream prints it."""
    return [name_of(obj), as_text(dig(obj, "metadata", "creationTimestamp"))]


def with_more(shown: list[str], total: int, empty: str) -> str:
    text = ",".join(shown)
    if total > MAX_LISTED:
        return f"{text} + {total - MAX_LISTED} more..."
    return text or empty


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: `k=v,k2=v2` sorted by key, `<none>` when empty."""
    pairs = sorted((k, as_text(v)) for k, v in as_map(labels).items())
    return ",".join(f"{k}={v}" for k, v in pairs) or NONE


def selector_string(selector: Any) -> str:
    """labels.Selector.String() of a metav1.LabelSelector; ValueError when it is invalid."""
    return str(LabelSelector.from_dict(selector)) if selector is not None else ""


def format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid."""
    try:
        return selector_string(selector) or NONE
    except ValueError:
        return "<error>"


NAME = Column("Name", "Name must be unique within a namespace.", format="name")
AGE = Column("Age", "When this object was created, as a duration since then.")


def wide(name: str, description: str) -> Column:
    return Column(name, description, priority=1)


def _generic_cells(obj: dict, now: float) -> list[Cell]:
    return [name_of(obj), age(obj, now)]


DEFAULT_PRINTER = Printer((NAME, AGE), _generic_cells)
