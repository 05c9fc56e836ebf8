"""The doctor's parsers of kernel text and its probes against a stand-in host."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess

import pytest

from pocketkube.doctor.facts import (
    elf_is_static,
    kernel_feature,
    module_names,
    parse_cgroups,
    parse_kernel_config,
    parse_proc_net_tcp,
)
from pocketkube.doctor.probes import Host, gather

pytestmark = pytest.mark.unit

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:9C40 0100007F:192B 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 0A 0
"""


def test_listening_sockets_v4_and_v6():
    assert parse_proc_net_tcp(TCP) == [("127.0.0.1", 6443), ("0.0.0.0", 80)]
    assert parse_proc_net_tcp(TCP6, v6=True) == [("::", 443), ("127.0.0.1", 53)]


def test_kernel_config_and_module_lists():
    config = parse_kernel_config("# comment\nCONFIG_VETH=m\nCONFIG_NET_NS=y\n# CONFIG_X is not set\n")
    assert config == {"CONFIG_VETH": "m", "CONFIG_NET_NS": "y"}
    assert module_names("kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n"
                        "kernel/fs/overlayfs/overlay.ko\n") == {"br_netfilter", "overlay"}


@pytest.mark.parametrize("kw, expected", [
    (dict(loaded={"veth"}), "loaded"),
    (dict(builtin={"veth"}), "builtin"),
    (dict(config={"CONFIG_VETH": "m"}), "module"),
    (dict(config={"CONFIG_VETH": "y"}), "builtin"),
    (dict(available={"veth"}), "module"),
    (dict(config={}), "missing"),
    (dict(), "unknown"),
])
def test_kernel_feature(kw, expected):
    args = dict(loaded=set(), builtin=set(), available=set(), config=None, filesystems=set())
    args.update(kw)
    assert kernel_feature("veth", "CONFIG_VETH", **args) == expected


def test_overlay_shows_in_proc_filesystems():
    assert kernel_feature("overlay", "CONFIG_OVERLAY_FS", loaded=set(), builtin=set(), available=set(),
                          config=None, filesystems={"overlay", "ext4"}) == "loaded"


def test_cgroups_v2_hybrid_and_none():
    assert parse_cgroups("", "cpuset cpu io memory pids\n").controllers == ("cpuset", "cpu", "io", "memory", "pids")
    hybrid = ("cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
              "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
    cg = parse_cgroups(hybrid, None)
    assert cg.version == 1 and cg.controllers == ("cpu", "memory")
    assert parse_cgroups("proc /proc proc rw 0 0\n", None).version == 0


def _elf(interp: bool) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<QHH", header, 32, 64, 0, 0)  # e_phoff
    struct.pack_into("<HH", header, 54, 56, 2)  # e_phentsize, e_phnum
    load = struct.pack("<I", 1) + bytes(52)
    second = struct.pack("<I", 3 if interp else 1) + bytes(52)
    return bytes(header) + load + second


def test_elf_static_or_dynamic():
    assert elf_is_static(_elf(False)) is True
    assert elf_is_static(_elf(True)) is False
    assert elf_is_static(b"#!/bin/sh\n") is None


def fake_root(tmp_path, *, busybox_static=True):
    def put(path, data, mode=0o644):
        p = tmp_path / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.chmod(p, mode)

    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        put(f"/usr/lib/cni/{plugin}", "#!/bin/sh\n", 0o755)
    put("/bin/busybox", _elf(not busybox_static), 0o755)
    put("/proc/mounts", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    put("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")
    put("/proc/sys/net/ipv4/ip_forward", "0\n")
    put("/proc/net/tcp", TCP)
    put("/proc/config.gz", gzip.compress(b"CONFIG_VETH=m\nCONFIG_OVERLAY_FS=m\nCONFIG_BRIDGE=y\n"))
    return tmp_path


class Runs:
    def __init__(self, nft_rc=0):
        self.calls, self.nft_rc = [], nft_rc

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        assert kw.get("timeout"), "every probe is bounded"
        if argv[1:] == ["list", "tables"]:
            return subprocess.CompletedProcess(argv, self.nft_rc, "", "Error: Operation not supported\n")
        if "addr" in argv:
            return subprocess.CompletedProcess(argv, 0, '[{"ifname":"eth0","addr_info":[{"family":"inet",'
                                                        '"local":"192.168.1.5","prefixlen":24}]}]', "")
        return subprocess.CompletedProcess(argv, 0, '[{"dst":"10.244.0.0/16","dev":"wg0"},{"dst":"default"}]', "")


def test_gather_fast_reads_programs_and_files_and_tries_nft_once(tmp_path):
    runs = Runs(nft_rc=1)
    f = gather(host=Host(which=lambda p: f"/usr/bin/{p}" if p in ("nft", "containerd") else None,
                         root=fake_root(tmp_path), euid=lambda: 0, run=runs))
    assert f.programs["nft"] == "/usr/bin/nft" and f.programs["runc"] == ""
    assert f.cni_present == ("bridge", "host-local", "portmap", "loopback") and f.busybox.static is True
    assert f.nft is not None and not f.nft.ok and "Operation not supported" in f.nft.error
    assert runs.calls == [["/usr/bin/nft", "list", "tables"]]
    assert f.kernel is None and f.listeners is None  # no slow probes for up


def test_gather_full_as_a_user_never_runs_nft(tmp_path):
    runs = Runs()
    f = gather(full=True, host=Host(which=lambda p: f"/usr/bin/{p}", root=fake_root(tmp_path, busybox_static=False),
                                    euid=lambda: 1000, run=runs, kubectl_bundled=lambda: None))
    assert f.nft is None and f.busybox.static is False
    assert ["/usr/bin/nft", "list", "tables"] not in runs.calls
    assert f.cgroups is not None and f.cgroups.version == 2 and f.ip_forward == "0"
    assert f.kernel is not None and f.kernel["veth"] == "module" and f.kernel["bridge"] == "builtin"
    assert ("0.0.0.0", 80) in (f.listeners or ())
    assert f.host_addresses == (("eth0", "192.168.1.5/24"),) and f.host_routes == (("10.244.0.0/16", "wg0"),)
