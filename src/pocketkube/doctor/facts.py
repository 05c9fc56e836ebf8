"""What the doctor observed on the host, as plain data, and pure parsers of the kernel's text."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Where Debian's containernetworking-plugins puts the plugins (the containerd config points there)
# and upstream's default, which pocketkube does not read but a user may have installed into.
UPSTREAM_CNI_BIN_DIR = "/opt/cni/bin"

KERNEL_FEATURES = {  # feature: (module, kernel config option, what uses it)
    "network namespaces": ("", "CONFIG_NET_NS", "a network namespace per pod (containerd mode)"),
    "veth": ("veth", "CONFIG_VETH", "the CNI bridge plugin's pod interfaces"),
    "bridge": ("bridge", "CONFIG_BRIDGE", "the node and cluster bridges"),
    "br_netfilter": ("br_netfilter", "CONFIG_BRIDGE_NETFILTER",
                     "Service replies between pods on one bridge (up loads it: modprobe br_netfilter)"),
    "overlay": ("overlay", "CONFIG_OVERLAY_FS", "containerd's overlayfs snapshotter (image layers)"),
    "nf_tables": ("nf_tables", "CONFIG_NF_TABLES", "the nftables data plane and the pod network's filter"),
}


@dataclass(frozen=True)
class Binary:
    path: str = ""  # "" when absent
    static: bool | None = None  # None: not an ELF we could read


@dataclass(frozen=True)
class NftProbe:
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class Cgroups:
    version: int = 0  # 2 (unified), 1 (legacy or hybrid), 0 (none mounted)
    controllers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    euid: int
    programs: dict[str, str] = field(default_factory=dict)  # name -> path on PATH ("" when absent)
    cni_dir: str = ""
    cni_present: tuple[str, ...] = ()  # plugins found in cni_dir
    cni_elsewhere: tuple[str, ...] = ()  # plugins found in UPSTREAM_CNI_BIN_DIR
    busybox: Binary = Binary()
    nginx: str = ""
    kubectl_bundled: str = ""  # the kubectl `pocketkube kubectl` runs when none is on PATH
    containerd_socket: str = ""  # a system containerd's socket, if one exists
    nft: NftProbe | None = None  # None: not probed (not root, or no nft)
    # The slow facts: None when not gathered (up's fast pass).
    kernel: dict[str, str] | None = None  # feature -> "loaded" | "builtin" | "module" | "missing" | "unknown"
    cgroups: Cgroups | None = None
    ip_forward: str | None = None
    unprivileged_port_start: int | None = None
    listeners: tuple[tuple[str, int], ...] | None = None  # TCP (address, port) in LISTEN
    host_addresses: tuple[tuple[str, str], ...] | None = None  # (interface, cidr)
    host_routes: tuple[tuple[str, str], ...] | None = None  # (destination cidr, device)

    def has(self, program: str) -> bool:
        return bool(self.programs.get(program))


# -- pure parsers --------------------------------------------------------------------------

def parse_kernel_config(text: str) -> dict[str, str]:
    """CONFIG_X -> "y" | "m" from a kernel .config (/proc/config.gz, /boot/config-*)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip()
    return out


def kernel_feature(module: str, option: str, *, loaded: set[str], builtin: set[str], available: set[str],
                   config: dict[str, str] | None, filesystems: set[str]) -> str:
    """How the kernel offers a feature: "loaded", "builtin", "module" (loadable), "missing" or
    "unknown" (no module list nor config to tell). `builtin`/`available` are module names from
    modules.builtin and modules.dep; `filesystems` is /proc/filesystems' (overlay shows there)."""
    if module and (module in loaded or (module == "overlay" and "overlay" in filesystems)):
        return "loaded"
    if module and module in builtin:
        return "builtin"
    if config is not None and option in config:
        return "builtin" if config[option] == "y" else "module"
    if module and module in available:
        return "module"
    if config is not None or builtin or available:
        return "missing"
    return "unknown"


def module_names(listing: str) -> set[str]:
    """Module names from modules.builtin / modules.dep lines (kernel/net/bridge/br_netfilter.ko.xz: ...)."""
    names = set()
    for line in listing.splitlines():
        path = line.split(":", 1)[0].strip()
        if path:
            base = path.rsplit("/", 1)[-1]
            names.add(base.split(".ko", 1)[0].replace("-", "_"))
    return names


def parse_cgroups(mounts: str, v2_controllers: str | None) -> Cgroups:
    """The cgroup setup from /proc/mounts and /sys/fs/cgroup/cgroup.controllers (None if absent).
    A hybrid host (v1 controllers, an empty v2 at /sys/fs/cgroup/unified) counts as v1, as runc does."""
    if v2_controllers is not None:
        return Cgroups(2, tuple(v2_controllers.split()))
    controllers: list[str] = []
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            controllers += [o for o in parts[3].split(",") if o in ("cpu", "cpuacct", "memory", "pids", "cpuset",
                                                                        "blkio", "devices", "freezer", "hugetlb")]
    return Cgroups(1, tuple(sorted(set(controllers)))) if controllers else Cgroups(0, ())


def parse_proc_net_tcp(text: str, v6: bool = False) -> list[tuple[str, int]]:
    """(address, port) of every LISTEN socket (state 0A) in /proc/net/tcp or tcp6."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        addr_hex, port_hex = parts[1].split(":")
        raw = bytes.fromhex(addr_hex)
        if v6:  # four little-endian 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
            addr = ipaddress.IPv6Address(raw)
            address = str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
        else:
            address = str(ipaddress.IPv4Address(raw[::-1]))
        out.append((address, int(port_hex, 16)))
    return out


def elf_is_static(head: bytes) -> bool | None:
    """Whether an ELF file (its first bytes, program headers included) has no PT_INTERP, i.e. needs
    no dynamic loader — so it runs alone in an image. None when `head` is not a readable ELF64/32."""
    if len(head) < 52 or head[:4] != b"\x7fELF":
        return None
    is64, order = head[4] == 2, "little" if head[5] == 1 else "big"

    def num(off: int, size: int) -> int:
        return int.from_bytes(head[off:off + size], order)

    phoff, phentsize, phnum = (num(32, 8), num(54, 2), num(56, 2)) if is64 else (num(28, 4), num(42, 2), num(44, 2))
    if phoff + phentsize * phnum > len(head):
        return None
    return all(num(phoff + i * phentsize, 4) != 3 for i in range(phnum))  # 3: PT_INTERP
