"""subPath: a path inside a volume, resolved on the host without letting a symlink inside the
volume lead out of it (upstream's safe subpath preparation)."""

from __future__ import annotations

import os
from pathlib import Path

from pocketkube.agent.kubelet.volumes.items import MountError


def check_relative(sub_path: str) -> list[str]:
    """The subPath's components; MountError when it is absolute or climbs with `..`."""
    if sub_path.startswith("/"):
        raise MountError(f"subpath {sub_path!r} must be a relative path")
    parts = [p for p in sub_path.split("/") if p and p != "."]
    if ".." in parts:
        raise MountError(f"subpath {sub_path!r} must not contain '..'")
    return parts


def within(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def resolve(volume_path: str, sub_path: str) -> str:
    """The real host path of `sub_path` inside the volume (created as a directory when absent,
    as the kubelet does); MountError when symlinks resolve to outside the volume."""
    parts = check_relative(sub_path)
    base = os.path.realpath(volume_path)
    target = os.path.realpath(os.path.join(base, *parts)) if parts else base
    if not within(base, target):
        raise MountError(f"subpath {sub_path!r} not within volume path {volume_path!r}")
    if not os.path.lexists(target):
        Path(target).mkdir(parents=True, exist_ok=True, mode=0o755)
        # A symlink created inside the volume meanwhile must not win either.
        target = os.path.realpath(target)
        if not within(base, target):
            raise MountError(f"subpath {sub_path!r} not within volume path {volume_path!r}")
    return target
