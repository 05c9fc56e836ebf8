"""Choosing a node agent's data plane: nftables when it can work here, userspace otherwise."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from pocketkube.proxy.provider import DataPlane

log = logging.getLogger(__name__)

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


def make_data_plane(kind: str, node_name: str, node_ip: str) -> DataPlane:
    if kind not in KINDS:
        raise ValueError(f"unknown data plane {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "nftables" or (kind == "auto" and nftables_usable()):
        try:
            from pocketkube.proxy.nftables.proxier import NftablesDataPlane
        except ImportError:
            if kind == "nftables":
                raise
            log.warning("the nftables data plane is not available here; using the userspace one")
        else:
            return NftablesDataPlane(node_name, node_ip)
    from pocketkube.proxy.userspace.proxier import UserspaceDataPlane

    return UserspaceDataPlane(node_name, node_ip)
