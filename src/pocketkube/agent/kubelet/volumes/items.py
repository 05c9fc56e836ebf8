"""What configMap, secret and projected volumes share: keys → files (pkg/volume/configmap,
pkg/volume/secret MakePayload), and the errors a mount reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection

DEFAULT_MODE = 0o644


class MountError(Exception):
    """MountVolume.SetUp failed: the message follows `MountVolume.SetUp failed for volume "x" : `."""


class Sources(Protocol):
    """Objects a volume reads, from the kubelet's watches (None: the object does not exist)."""

    def configmap(self, namespace: str, name: str) -> dict | None: ...

    def secret(self, namespace: str, name: str) -> dict | None: ...

    def token(self, audience: str, expiration_seconds: int) -> str:
        """A token of the pod's ServiceAccount, requested beforehand; MountError if there is none."""
        ...


def file_mode(item_mode: object, default_mode: object) -> int:
    for m in (item_mode, default_mode):
        if isinstance(m, int) and not isinstance(m, bool):
            return m
    return DEFAULT_MODE


def map_keys(data: dict[str, bytes], items: list | None, default_mode: object, optional: bool,
             missing_key: Callable[[str], str], fs_group: int | None = None) -> dict[str, FileProjection]:
    """Every key as a file named after it, or only `items` (key → path, mode); a missing item key
    fails the mount unless the volume is optional."""
    def proj(value: bytes, mode: int) -> FileProjection:
        if fs_group is None:
            return FileProjection(value, mode)
        return FileProjection(value, mode | 0o440, gid=fs_group)  # SetVolumeOwnership: the group reads

    if not items:
        return {k: proj(v, file_mode(None, default_mode)) for k, v in data.items()}
    out: dict[str, FileProjection] = {}
    for item in items:
        key, path = item.get("key", ""), item.get("path", "")
        if key not in data:
            if optional:
                continue
            raise MountError(missing_key(key))
        out[path] = proj(data[key], file_mode(item.get("mode"), default_mode))
    return out


def object_payload(pod: dict, source: dict, name: str, kind: str, lookup: Callable[[str, str], dict | None],
                   data_of: Callable[[dict], dict[str, bytes]], missing_key: Callable[[str], str],
                   default_mode: object = None, group: int | None = None) -> dict[str, FileProjection]:
    """The files of a volume (or projected source) backed by the object `name` of the pod's namespace
    (a ConfigMap or a Secret): a missing object fails the mount unless the source is optional;
    default_mode and group, when given, are the projected volume's."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    optional = bool(source.get("optional"))
    obj = lookup(ns, name)
    if obj is None:
        if optional:
            return {}
        raise MountError(f'{kind} "{name}" not found')
    mode = source.get("defaultMode") if default_mode is None else default_mode
    return map_keys(data_of(obj), source.get("items"), mode, optional, missing_key,
                    fs_group(pod) if group is None else group)


def fs_group(pod: dict) -> int | None:
    g = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return g if isinstance(g, int) and not isinstance(g, bool) else None
