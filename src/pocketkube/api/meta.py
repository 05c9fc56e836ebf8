"""Accessors and small helpers on raw (dict) Kubernetes objects."""

from __future__ import annotations

import uuid
from typing import Any


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
