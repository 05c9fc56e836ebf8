"""The CNI portmap plugin's shared chains in table `ip nat`: removed once no pod on the host maps
a port.

portmap (containernetworking-plugins 1.1.1, through `iptables`, iptables-nft on Debian) programs
hostPorts in table `nat` (plugins/meta/portmap/portmap.go):
- per sandbox a chain `CNI-DN-<hash of network name and container id>` with the DNAT rules, which
  its CNI DEL removes together with its jump;
- shared by every portmap user on the host (every node of every cluster, podman...):
  `CNI-HOSTPORT-DNAT`, jumped to from PREROUTING and OUTPUT for local destinations, holding one
  jump per sandbox; with `snat` (our conflist), `CNI-HOSTPORT-SETMARK` (marks hairpin and
  localhost connections with bit 13) and `CNI-HOSTPORT-MASQ`, jumped to from POSTROUTING
  (masquerades what is marked). portmap never removes these.

Once the last mapping is gone they match nothing, but they stay. `remove_idle_chains` removes
them in one iptables-restore transaction that commits only if they are idle: each rule is
deleted by portmap's exact spec (a missing one fails the batch), and deleting a chain that still
holds a rule (a sandbox's jump, or anyone's rule of their own) or that a rule still jumps to
fails with EBUSY when the kernel commits — and then nothing of the batch is applied. So nothing
another user still needs is touched. A portmap ADD racing with the removal finds its chain gone
and fails; the kubelet retries the sandbox, whose ADD then creates the chains again.

Then what iptables-nft made to hold them goes too, but only if nothing else is in it: table
`ip nat` with its base chains (if they hold no rule and the table nothing else) and the empty
`ip6 nat` that portmap's IPv6 teardown leaves, each in one non-recursive transaction
(net.nftnl): a table someone else uses (Docker, kube-proxy...) keeps everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from pocketkube.net.nftnl import delete_table_if_empty

DNAT_CHAIN = "CNI-HOSTPORT-DNAT"
SETMARK_CHAIN = "CNI-HOSTPORT-SETMARK"
MASQ_CHAIN = "CNI-HOSTPORT-MASQ"
DEFAULT_MARK_BIT = 13  # portmap's markMasqBit default; our conflist leaves it


def render_idle_chain_removal(mark_bit: int = DEFAULT_MARK_BIT) -> str:
    """The iptables-restore batch (for `--noflush`) removing portmap's shared chains, exactly as
    portmap made them; it fails as a whole if any of them is still in use."""
    mark = f"{1 << mark_bit:#x}/{1 << mark_bit:#x}"
    return "\n".join([
        "*nat",
        f"-D PREROUTING -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"-D OUTPUT -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f'-D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j {MASQ_CHAIN}',
        f"-D {MASQ_CHAIN} -m mark --mark {mark} -j MASQUERADE",
        f'-D {SETMARK_CHAIN} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {mark}',
        f"-X {DNAT_CHAIN}",
        f"-X {MASQ_CHAIN}",
        f"-X {SETMARK_CHAIN}",
        "COMMIT",
        "",
    ])


def idle_base_chains(listing: dict) -> list[str] | None:
    """The chains of an `nft -j list table` listing if all are base chains without rules and the
    table holds nothing else; None otherwise (the table is someone's, leave it)."""
    objects = [next(iter(o.items())) for o in listing.get("nftables", []) if isinstance(o, dict) and o]
    objects = [(kind, body) for kind, body in objects if kind not in ("metainfo", "table")]
    if any(kind != "chain" or "hook" not in body for kind, body in objects):
        return None
    return [body["name"] for _kind, body in objects]


def _remove_empty_nat_tables() -> list[str]:
    """Table `ip nat` (with its empty base chains) and `ip6 nat`, each only if nothing else is in it."""
    removed = []
    nft = shutil.which("nft")
    if nft is None:
        return removed
    for family in ("ip", "ip6"):
        listed = subprocess.run([nft, "-j", "list", "table", family, "nat"], capture_output=True, text=True,
                                timeout=30, check=False)
        if listed.returncode != 0:
            continue
        try:
            chains = idle_base_chains(json.loads(listed.stdout))
        except ValueError:
            chains = None
        if chains is not None and delete_table_if_empty(family, "nat", chains) == "deleted":
            removed.append(f"{family} nat")
    return removed


def _chain_exists(iptables: str, chain: str) -> bool:
    done = subprocess.run([iptables, "-t", "nat", "-S", chain], capture_output=True, text=True, check=False)
    return done.returncode == 0


def remove_idle_chains(mark_bit: int = DEFAULT_MARK_BIT) -> str:
    """Remove portmap's shared chains if no sandbox on the host uses them. Returns what happened:
    "removed", "absent", "in use" (with iptables' reason) or why it was not tried; never raises."""
    if os.geteuid() != 0:
        return "not root"
    # The same `iptables` alternative portmap runs (go-iptables looks it up on PATH), so the same backend.
    iptables, restore = shutil.which("iptables"), shutil.which("iptables-restore")
    if not iptables or not restore:
        return "no iptables"
    try:
        if not _chain_exists(iptables, DNAT_CHAIN):
            # Another node's teardown removed the chains first; portmap's own DEL may still have
            # left `ip nat`/`ip6 nat` behind, empty (gone only if nothing at all is in them).
            _remove_empty_nat_tables()
            return "absent"
        done = subprocess.run([restore, "--noflush"], input=render_idle_chain_removal(mark_bit), capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"failed: {e}"
    if done.returncode != 0:
        return f"in use: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    try:
        _remove_empty_nat_tables()
    except (OSError, subprocess.TimeoutExpired):
        pass  # the chains are gone; an empty table left behind does nothing
    return "removed"
