"""The AtomicWriter: its layout, updates, no-op rewrites, bad paths, and readers during updates."""

from __future__ import annotations

import os
import threading

import pytest

from pocketkube.agent.kubelet.volumes.atomic_writer import (
    DATA_DIR,
    FileProjection,
    PayloadError,
    validate_path,
    write,
)


def files(d):
    return {p: (d / p).read_bytes() for p in os.listdir(d) if not p.startswith("..")}


def test_layout_timestamp_dir_data_link_and_user_visible_links(tmp_path):
    assert write(tmp_path, {"a": FileProjection(b"1", 0o644), "dir/b": FileProjection(b"2", 0o400)}, now=0.5)
    data = os.readlink(tmp_path / DATA_DIR)
    assert data == "..1970_01_01_00_00_00.500000000"
    assert os.readlink(tmp_path / "a") == "..data/a" and os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "dir" / "b").read_bytes() == b"2"
    assert (tmp_path / data / "dir" / "b").stat().st_mode & 0o777 == 0o400
    assert sorted(os.listdir(tmp_path)) == sorted([data, DATA_DIR, "a", "dir"])


def test_update_swaps_data_removes_stale_paths_and_older_versions(tmp_path):
    write(tmp_path, {"a": FileProjection(b"1", 0o644), "b": FileProjection(b"x", 0o644)}, now=1)
    first = os.readlink(tmp_path / DATA_DIR)
    assert write(tmp_path, {"a": FileProjection(b"2", 0o644), "c": FileProjection(b"y", 0o600)}, now=2)
    assert files(tmp_path) == {"a": b"2", "c": b"y"} and not (tmp_path / "b").is_symlink()
    assert (tmp_path / first).exists()  # the previous version stays for readers mid-lookup
    write(tmp_path, {"a": FileProjection(b"3", 0o644)}, now=3)
    assert not (tmp_path / first).exists() and files(tmp_path) == {"a": b"3"}
    assert len([e for e in os.listdir(tmp_path) if e.startswith("..19")]) == 2


def test_the_same_payload_writes_nothing(tmp_path):
    payload = {"a": FileProjection(b"1", 0o644)}
    write(tmp_path, payload, now=1)
    before = os.readlink(tmp_path / DATA_DIR)
    assert not write(tmp_path, payload, now=2)
    assert os.readlink(tmp_path / DATA_DIR) == before
    assert write(tmp_path, {"a": FileProjection(b"1", 0o600)}, now=3)  # a mode change is a change


def test_an_empty_payload_leaves_an_empty_volume(tmp_path):
    write(tmp_path, {"a": FileProjection(b"1", 0o644)}, now=1)
    write(tmp_path, {}, now=2)
    assert files(tmp_path) == {}


@pytest.mark.parametrize("path,message", [
    ("/abs", "must be relative path"), ("a/../b", "must not contain '..'"), ("..a", "must not start with '..'"),
    ("", "must not be empty"), ("x" * 256, "filenames must be less than or equal to 255 characters"),
])
def test_bad_paths_are_refused(tmp_path, path, message):
    with pytest.raises(PayloadError, match=message):
        validate_path(path)
    with pytest.raises(PayloadError):
        write(tmp_path, {path: FileProjection(b"", 0o644)})
    assert not (tmp_path / DATA_DIR).exists()


def test_concurrent_readers_never_see_a_partial_state(tmp_path):
    """Files of 64 KiB alternate between all-A and all-B versions while readers read them: every
    read is a whole version, and both files read through one ..data directory agree. (A lookup
    racing two updates in a row may find its version gone, ENOENT, and reads again.)"""
    size = 1 << 16
    versions = [{k: FileProjection(ch * size, 0o644) for k in ("one", "two")} for ch in (b"A", b"B")]
    write(tmp_path, versions[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader():
        while not stop.is_set():
            try:
                one = (tmp_path / "one").read_bytes()
            except FileNotFoundError:
                continue
            if one not in (b"A" * size, b"B" * size):
                bad.append(f"partial one: {len(one)} bytes")
            try:
                fd = os.open(tmp_path / DATA_DIR, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                a = os.read(f := os.open("one", os.O_RDONLY, dir_fd=fd), size + 1)
                os.close(f)
                b = os.read(f := os.open("two", os.O_RDONLY, dir_fd=fd), size + 1)
                os.close(f)
            except FileNotFoundError:
                continue  # the version was replaced and removed between the two opens: re-read
            finally:
                os.close(fd)
            if a != b or len(a) != size:
                bad.append("inconsistent pair")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(200):
        write(tmp_path, versions[i % 2 == 0])
    stop.set()
    for t in threads:
        t.join()
    assert not bad, bad[:5]
    assert reads[0] > 0
