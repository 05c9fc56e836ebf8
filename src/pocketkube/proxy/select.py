"""Choosing a node agent's data plane: nftables when it can work here, userspace otherwise.

Both planes are plain imports: neither needs an optional package (the nftables one drives
libnftables through ctypes, or the `nft` binary), so an import that fails is a bug and must
fail loudly. Whether nftables can work is decided by probing the host, never by an ImportError.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pocketkube.proxy.nftables.proxier import NftablesDataPlane, remove_leftover_table
from pocketkube.proxy.provider import DataPlane
from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
from pocketkube.proxy.userspace.proxier import remove_leftovers as remove_userspace_leftovers

KINDS = ("auto", "nftables", "userspace")


def nftables_usable() -> bool:
    """Root, an `nft` binary, and a kernel that lets us list rulesets (not just a binary on PATH)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return False
    try:
        done = subprocess.run(["nft", "list", "tables"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_kind(kind: str, *, nftables_ok: bool) -> str:
    """The plane to run for a requested `kind`: `auto` is nftables when usable, else userspace."""
    if kind not in KINDS:
        raise ValueError(f"unknown data plane {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "auto":
        return "nftables" if nftables_ok else "userspace"
    return kind


def make_data_plane(kind: str, node_name: str, node_ip: str, bridged_pods: bool = False,
                    count_traffic: bool = True) -> DataPlane:
    """`bridged_pods`: the node's pods live in their own network namespaces behind a bridge (the
    containerd runtime); the nftables plane then adds hairpin masquerade and the forward/output
    no-endpoint checks. `count_traffic`: the nftables plane's named counters (the userspace
    plane's counts are plain ints, always kept)."""
    chosen = choose_kind(kind, nftables_ok=kind == "auto" and nftables_usable())
    if chosen == "nftables":
        return NftablesDataPlane(node_name, node_ip, bridged_pods=bridged_pods, count_traffic=count_traffic)
    return UserspaceDataPlane(node_name, node_ip)


def remove_leftovers(node_name: str, node_ip: str) -> None:
    """Remove what a node's data plane left in the kernel when its agent died without stopping it.

    Every plane is asked, whatever the node ran: which one it chose (`auto`) is not recorded.
    """
    remove_leftover_table(node_name, node_ip)
    remove_userspace_leftovers(node_name, node_ip)
