"""The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go): a volume's files are replaced
all at once, so a reader never sees half of an update.

Layout of a target directory:

    ..2026_12_05_05_40_12.123456789/   this version's files, written in full first
    ..data -> ..2026_12_05_05_40_12.123456789
    key -> ..data/key                  one user-visible symlink per top-level path

An update writes a new timestamped directory, points a `..data_tmp` symlink at it and renames
that over `..data` (rename(2) is atomic), then adds and removes the user-visible symlinks.
Readers that opened `key` before the swap keep the old file; those after it see the new one.
Unlike upstream, which deletes the previous version at once, the previous version stays until the
next update: a reader that resolved `..data` just before the swap still finds its files, so a
lookup fails only across two updates.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int
    uid: int = -1  # -1: leave as the writer's (fsUser of projected tokens)
    gid: int = -1  # fsGroup


class PayloadError(ValueError):
    pass


def validate_path(path: str) -> None:
    """A payload path: relative, no `..` element, not starting with `..` (upstream validatePath)."""
    if not path:
        raise PayloadError("invalid path: must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    if path.startswith("/"):
        raise PayloadError("invalid path: must be relative path")
    if any(len(part) > MAX_FILE_NAME_LENGTH for part in path.split("/")):
        raise PayloadError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} "
                           "characters")
    if ".." in path.split("/"):
        raise PayloadError("invalid path: must not contain '..'")
    if path.startswith(".."):
        raise PayloadError("invalid path: must not start with '..'")


def clean_payload(payload: dict[str, FileProjection]) -> dict[str, FileProjection]:
    """Validated payload with normalised paths (a/./b → a/b)."""
    out = {}
    for path, proj in payload.items():
        validate_path(path)
        out[os.path.normpath(path)] = proj
    return out


def user_visible_roots(paths: list[str] | set[str]) -> set[str]:
    """The top-level names under which the payload's paths are visible."""
    return {p.split("/", 1)[0] for p in paths}


def _timestamp_dir_name(now: float) -> str:
    t = time.gmtime(now)
    return ".." + time.strftime("%Y_%m_%d_%H_%M_%S", t) + f".{int((now % 1) * 1e9):09d}"


def _read_current(target: Path) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """The current version's directory name and files (path → (data, mode)), or ("", {})."""
    try:
        old = os.readlink(target / DATA_DIR)
    except OSError:
        return "", {}
    base = target / old
    files: dict[str, tuple[bytes, int]] = {}
    for root, _dirs, names in os.walk(base):
        for name in names:
            p = Path(root) / name
            try:
                files[str(p.relative_to(base))] = (p.read_bytes(), p.stat().st_mode & 0o7777)
            except OSError:
                return old, {}
    return old, files


def _same(current: dict[str, tuple[bytes, int]], payload: dict[str, FileProjection]) -> bool:
    return current.keys() == payload.keys() and all(
        current[p] == (proj.data, proj.mode) for p, proj in payload.items())


def write(target: Path, payload: dict[str, FileProjection], now: float | None = None) -> bool:
    """Make `target` hold exactly `payload`; False when it already did (nothing written)."""
    payload = clean_payload(payload)
    target.mkdir(parents=True, exist_ok=True)
    old_dir, current = _read_current(target)
    if old_dir and _same(current, payload):
        return False
    stale = user_visible_roots(current) - user_visible_roots(payload)
    ts = target / _timestamp_dir_name(time.time() if now is None else now)
    while ts.exists():  # two writes in the same nanosecond
        ts = ts.with_name(ts.name + "_")
    ts.mkdir(mode=0o755)
    os.chmod(ts, 0o755)
    for path, proj in sorted(payload.items()):
        f = ts / path
        f.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, proj.data)
            os.fchmod(fd, proj.mode)
            if proj.uid >= 0 or proj.gid >= 0:
                os.fchown(fd, proj.uid, proj.gid)
        finally:
            os.close(fd)
    tmp = target / DATA_DIR_TMP
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(ts.name, tmp)
    os.rename(tmp, target / DATA_DIR)
    for root in user_visible_roots(payload):
        link = target / root
        if not link.is_symlink():
            os.symlink(f"{DATA_DIR}/{root}", link)
    for root in stale:
        (target / root).unlink(missing_ok=True)
    for entry in os.listdir(target):  # versions before the previous one
        if entry.startswith("..") and entry not in (DATA_DIR, DATA_DIR_TMP, ts.name, old_dir):
            shutil.rmtree(target / entry, ignore_errors=True)
    return True
