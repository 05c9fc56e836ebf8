"""hostPath type checks, subPath resolution (no symlink escapes), emptyDir sizes, PVC → path."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from pocketkube.agent.kubelet.volumes import emptydir, hostpath, pvc, subpath
from pocketkube.agent.kubelet.volumes.items import MountError
from pocketkube.agent.kubelet.volumes.manager import container_mounts
from pocketkube.agent.runtime.interface import Mount
from pocketkube.testing.requires import ROOT, is_root, requires


@pytest.mark.parametrize("type_,kind,result", [
    ("", None, None), ("", "file", None),
    ("DirectoryOrCreate", None, "mkdir"), ("DirectoryOrCreate", "directory", None),
    ("FileOrCreate", None, "create"), ("FileOrCreate", "file", None),
    ("Directory", "directory", None), ("File", "file", None), ("Socket", "socket", None),
    ("CharDevice", "char", None), ("BlockDevice", "block", None),
])
def test_hostpath_decisions(type_, kind, result):
    assert hostpath.decide("/x", type_, kind) == result


@pytest.mark.parametrize("type_,kind,message", [
    ("Directory", None, "hostPath type check failed: /x is not a directory"),
    ("Directory", "file", "hostPath type check failed: /x is not a directory"),
    ("DirectoryOrCreate", "file", "hostPath type check failed: /x is not a directory"),
    ("File", "directory", "hostPath type check failed: /x is not a file"),
    ("FileOrCreate", "directory", "hostPath type check failed: /x is not a file"),
    ("Socket", "file", "hostPath type check failed: /x is not a socket file"),
    ("CharDevice", "block", "hostPath type check failed: /x is not a character device"),
    ("BlockDevice", "char", "hostPath type check failed: /x is not a block device"),
    ("Sideways", "file", "Sideways is an invalid volume type"),
])
def test_hostpath_wrong_types(type_, kind, message):
    with pytest.raises(MountError) as e:
        hostpath.decide("/x", type_, kind)
    assert str(e.value) == message


def test_hostpath_set_up_on_the_host(tmp_path):
    d, f = tmp_path / "new" / "dir", tmp_path / "sub" / "file"
    assert hostpath.set_up(str(d), "DirectoryOrCreate") == str(d) and d.is_dir()
    hostpath.set_up(str(f), "FileOrCreate")
    assert f.is_file()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    try:
        hostpath.set_up(str(tmp_path / "sock"), "Socket")
    finally:
        s.close()
    hostpath.set_up("/dev/null", "CharDevice")
    with pytest.raises(MountError, match="is not a directory"):
        hostpath.set_up(str(f), "Directory")
    assert hostpath.kind_of(stat.S_IFIFO) == "other"


def test_subpath_resolves_inside_and_creates_missing_dirs(tmp_path):
    vol = tmp_path / "vol"
    (vol / "..data").mkdir(parents=True)
    (vol / "..data" / "key").write_text("v")
    os.symlink("..data/key", vol / "key")
    assert subpath.resolve(str(vol), "key") == str(vol / "..data" / "key")  # the file, not the link
    assert subpath.resolve(str(vol), "a/b") == str(vol / "a" / "b") and (vol / "a" / "b").is_dir()
    assert subpath.resolve(str(vol), "") == str(vol)


def test_subpath_refuses_escapes(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    os.symlink("/etc", vol / "out")
    os.symlink("../../", vol / "up")
    for bad in ("out", "out/passwd", "up", "../x", "/etc"):
        with pytest.raises(MountError):
            subpath.resolve(str(vol), bad)


def test_container_mounts_resolve_subpaths_and_flags(tmp_path):
    (tmp_path / "f").write_text("x")
    pod = {"metadata": {"uid": "u"}, "spec": {"volumes": [{"name": "v", "emptyDir": {}},
                                                          {"name": "cm", "configMap": {"name": "x"}}]}}
    c = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/a", "readOnly": True},
                                       {"name": "v", "mountPath": "/b/f", "subPath": "f"},
                                       {"name": "cm", "mountPath": "rel"}]}
    assert container_mounts(pod, c, {"v": str(tmp_path), "cm": "/cm"}) == [
        Mount(str(tmp_path), "/a", read_only=True), Mount(str(tmp_path / "f"), "/b/f", sub_path=True),
        Mount("/cm", "/rel", read_only=True)]  # API data volumes are read-only; a relative path made absolute
    with pytest.raises(MountError, match="cannot find volume"):
        container_mounts(pod, {"name": "c", "volumeMounts": [{"name": "w", "mountPath": "/w"}]}, {})


def test_empty_dir_sizes_and_limits(tmp_path):
    assert emptydir.tmpfs_size({"medium": "Memory", "sizeLimit": "64Mi"}, 1 << 30) == 64 << 20
    assert emptydir.tmpfs_size({"medium": "Memory"}, 1 << 30) == 1 << 30
    assert emptydir.tmpfs_size({"medium": "Memory", "sizeLimit": "2Gi"}, 1 << 30) == 1 << 30
    assert emptydir.exceeds(2 << 20, {"sizeLimit": "1Mi"}) and not emptydir.exceeds(1 << 19, {"sizeLimit": "1Mi"})
    assert not emptydir.exceeds(2 << 20, {"sizeLimit": "1Mi", "medium": "Memory"})
    assert not emptydir.exceeds(2 << 20, {})
    assert emptydir.eviction_message("cache", {"sizeLimit": "1Mi"}) == \
        'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '
    (tmp_path / "big").write_bytes(b"x" * (1 << 20))
    assert emptydir.disk_usage(tmp_path) >= 1 << 20


def test_pvc_resolution():
    claim = {"metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
             "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}
    assert pvc.claim_volume_name(claim) == "pv1"
    with pytest.raises(MountError, match='PVC ns/data has non-bound phase \\("Pending"\\)'):
        pvc.claim_volume_name({**claim, "spec": {}, "status": {"phase": "Pending"}})
    pv = {"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c1"}, "local": {"path": "/data/pv1"}}}
    assert pvc.host_path(pv, claim) == "/data/pv1"
    with pytest.raises(MountError, match="bound to another claim"):
        pvc.host_path({**pv, "spec": {"claimRef": {"uid": "other"}, "hostPath": {"path": "/x"}}}, claim)
    with pytest.raises(MountError, match="no hostPath or local path"):
        pvc.host_path({"metadata": {"name": "pv1"}, "spec": {"nfs": {}}}, claim)


@requires(is_root(), ROOT)
def test_empty_dir_on_disk_with_fs_group(tmp_path):
    d = tmp_path / "v"
    assert emptydir.set_up(d, {}, None, fs_group=2000) == str(d)
    st = d.stat()
    assert st.st_gid == 2000 and st.st_mode & 0o7777 == 0o2777
    with pytest.raises(MountError, match="unsupported emptyDir medium 'HugePages'"):
        emptydir.set_up(tmp_path / "h", {"medium": "HugePages"}, None)


def test_tmpfs_options():
    assert emptydir.tmpfs_options(None, "0755") == "mode=0755"
    assert emptydir.tmpfs_options(64 << 20, "0777") == "mode=0777,size=67108864"


@requires(is_root(), ROOT)
def test_tmpfs_mount_and_lazy_unmount_by_syscall(tmp_path):
    d = tmp_path / "token"
    emptydir.mount_tmpfs(d, 1 << 20, "0755")
    try:
        assert os.path.ismount(d)
        line = next(ln for ln in open("/proc/self/mounts") if ln.split()[1] == str(d))
        assert line.split()[2] == "tmpfs" and "size=1024k" in line and "mode=755" in line
        emptydir.mount_tmpfs(d, 1 << 20, "0755")  # mounted already: nothing stacks on it
        assert sum(ln.split()[1] == str(d) for ln in open("/proc/self/mounts")) == 1
    finally:
        emptydir.unmount(d)
    assert not os.path.ismount(d)
    emptydir.unmount(d)  # not a mount point: nothing to do


@requires(is_root(), ROOT)
def test_tmpfs_mount_failure_is_a_mount_error(tmp_path):
    with pytest.raises(MountError, match=r"mount of tmpfs at .* failed: Invalid argument"):
        emptydir.mount_tmpfs(tmp_path / "bad", None, "not-a-mode")
    assert not os.path.ismount(tmp_path / "bad")
