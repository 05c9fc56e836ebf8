"""emptyDir volumes: a directory under the pod's volume dir, or a tmpfs for medium Memory
(sized by sizeLimit, else the node's memory); the disk usage check behind sizeLimit evictions.

tmpfs mounts are mount(2)/umount2(2) calls, not mount(8): every pod mounts one (its service
account token) and mount(8) parses the whole mount table first, which on a busy node (an overlay
and a tmpfs per pod) cost ~45 ms of CPU per call, as much as the rest of the kubelet's work for a pod."""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path

from pocketkube.agent.envvars import EnvError, quantity
from pocketkube.agent.kubelet.volumes.items import MountError


def size_bytes(limit: object) -> int | None:
    if limit in (None, ""):
        return None
    try:
        return math.ceil(quantity(str(limit)))
    except EnvError:
        return None


def tmpfs_size(source: dict, node_memory: int | None) -> int | None:
    """tmpfs size= of a Memory emptyDir: its sizeLimit, capped by the node's memory."""
    limit = size_bytes(source.get("sizeLimit"))
    if limit is not None and node_memory:
        return min(limit, node_memory)
    return limit or node_memory


def exceeds(used: int, source: dict) -> bool:
    """Whether a disk emptyDir's usage breaks its sizeLimit (the eviction manager's check)."""
    limit = size_bytes(source.get("sizeLimit"))
    return (source.get("medium") or "") != "Memory" and limit is not None and used > limit


def eviction_message(volume: str, source: dict) -> str:
    return f'Usage of EmptyDir volume "{volume}" exceeds the limit "{source.get("sizeLimit")}". '


def disk_usage(path: Path) -> int:
    """Bytes allocated under `path` (as du counts them), not following symlinks."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def is_mount(path: Path) -> bool:
    return os.path.ismount(path)


MNT_DETACH = 2  # umount2's lazy unmount (umount -l)
_libc = ctypes.CDLL(None, use_errno=True)


def tmpfs_options(size: int | None, mode: str) -> str:
    return f"mode={mode}" + (f",size={size}" if size else "")


def mount_tmpfs(path: Path, size: int | None, mode: str = "0777") -> None:
    path.mkdir(parents=True, exist_ok=True)
    if is_mount(path):
        return
    opts = tmpfs_options(size, mode)
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", ctypes.c_ulong(0), opts.encode()) != 0:
        raise MountError(f"mount of tmpfs at {path} failed: {os.strerror(ctypes.get_errno())}")


def unmount(path: Path) -> None:
    if is_mount(path):
        _libc.umount2(os.fsencode(path), MNT_DETACH)


def set_up(path: Path, source: dict, node_memory: int | None, fs_group: int | None = None) -> str:
    medium = source.get("medium") or ""
    if medium == "Memory":
        mount_tmpfs(path, tmpfs_size(source, node_memory))
    elif medium == "":
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)  # every container user may write it, as upstream's emptyDir
    else:
        raise MountError(f"unsupported emptyDir medium {medium!r}")
    if fs_group is not None:  # SetVolumeOwnership: the group owns it, new files inherit the group
        os.chown(path, -1, fs_group)
        os.chmod(path, 0o2777)
    return str(path)
