"""emptyDir volumes: a directory under the pod's volume dir, or a tmpfs for medium Memory
(sized by sizeLimit, else the node's memory); the disk usage check behind sizeLimit evictions."""

from __future__ import annotations

import math
import os
import subprocess
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


def mount_tmpfs(path: Path, size: int | None, mode: str = "0777") -> None:
    path.mkdir(parents=True, exist_ok=True)
    if is_mount(path):
        return
    opts = f"mode={mode}" + (f",size={size}" if size else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise MountError(f"mount of tmpfs at {path} failed: {r.stderr.strip() or r.returncode}")


def unmount(path: Path) -> None:
    if is_mount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


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
