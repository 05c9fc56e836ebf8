"""Accessors and small helpers on raw (dict) Kubernetes objects."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any


def now_rfc3339(t: float | None = None) -> str:
    """RFC 3339 with second precision in UTC, as Kubernetes serializes metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_rfc3339(s: str) -> float:
    return datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def new_uid() -> str:
    return str(uuid.uuid4())


def meta(obj: dict) -> dict:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def name_of(obj: dict) -> str:
    m = obj.get("metadata")
    return m.get("name", "") if isinstance(m, dict) and isinstance(m.get("name"), str) else ""


def namespace_of(obj: dict) -> str:
    m = obj.get("metadata")
    return m.get("namespace", "") if isinstance(m, dict) and isinstance(m.get("namespace"), str) else ""


def labels_of(obj: dict) -> dict[str, str]:
    m = obj.get("metadata")
    labels = m.get("labels") if isinstance(m, dict) else None
    return labels if isinstance(labels, dict) else {}


def controller_ref(obj: dict) -> dict | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def deep_get(obj: Any, *path: str | int, default: Any = None) -> Any:
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return default
        elif not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur
