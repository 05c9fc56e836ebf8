"""hostPath volumes: a node path, its type checked (pkg/volume/hostpath checkType)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pocketkube.agent.kubelet.volumes.items import MountError

TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
_WANT = {"Directory": ("directory", "a directory"), "DirectoryOrCreate": ("directory", "a directory"),
         "File": ("file", "a file"), "FileOrCreate": ("file", "a file"), "Socket": ("socket", "a socket file"),
         "CharDevice": ("char", "a character device"), "BlockDevice": ("block", "a block device")}


def kind_of(mode: int | None) -> str | None:
    """What a path is, from its lstat mode (None: it does not exist)."""
    if mode is None:
        return None
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISREG, "file"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block")):
        if test(mode):
            return kind
    return "other"


def decide(path: str, type_: str, kind: str | None) -> str | None:
    """What to do about `path` of `kind` for a volume of `type_`: "mkdir", "create" (an empty
    file), None (mount it); MountError when the type does not match."""
    if type_ == "":
        return None
    if type_ not in _WANT:
        raise MountError(f"{type_} is an invalid volume type")
    want, words = _WANT[type_]
    if kind is None and type_ == "DirectoryOrCreate":
        return "mkdir"
    if kind is None and type_ == "FileOrCreate":
        return "create"
    if kind != want:
        raise MountError(f"hostPath type check failed: {path} is not {words}")
    return None


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode  # follows symlinks, as upstream's checks do
    except FileNotFoundError:
        return None


def set_up(path: str, type_: str) -> str:
    """Check (and for the *OrCreate types create) the path; its host path to mount."""
    action = decide(path, type_, kind_of(_mode(path)))
    try:
        if action == "mkdir":
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif action == "create":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError as e:
        raise MountError(f"hostPath type check failed: {e}") from None
    return path
