"""host-gw pod routing between hosts: `ip route replace <podCIDR_j> via <nodeIP_j>` for every
other node j on a directly connected subnet (flannel's host-gw backend, kind's kindnetd).

Decisions are pure (`desired_routes`, `route_changes`, `render_masquerade_table`); the rest
drives `ip` and `nft`. Our routes carry their own routing protocol number (`proto 0xb0`
below), so we find them again (after a restart too) without touching anyone else's, and never
a default route: a node whose IP is not on one of this host's connected subnets gets no route
(it needs an overlay, which this backend is not).

Replies of forwarded connections: kube-proxy DNATs a NodePort or ClusterIP connection from
outside the pod range to an endpoint that may live on another host; that host would answer the
client directly (it routes the client's subnet itself), bypassing the NAT. So connections that
were DNATed here to another host's pod range, from a source outside the cluster's pod range,
are masqueraded to this host's address (kube-proxy's `--cluster-cidr` masquerade rule).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

RT_PROTO = 176  # ours: rtnetlink protocol numbers above 4 are free for routing daemons (kernel: "static")
MASQ_TABLE = "pocketkube-hostgw"


class RouteError(RuntimeError):
    """A route change failed; the message names the command and the kernel's answer."""


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    pod_cidr: str
    ip: str


def _network(value: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError):
        return None
    return net if net.version == 4 else None


def valid_cidr(value: str) -> bool:
    """An IPv4 network written exactly (no host bits), not the default route."""
    net = _network(value)
    return net is not None and net.prefixlen > 0


def _address(value: str) -> ipaddress.IPv4Address | None:
    try:
        ip = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return None
    return ip if ip.version == 4 else None


def desired_routes(peers: Iterable[Peer], self_name: str, connected: Iterable[str],
                   own_cidr: str = "") -> dict[str, str]:
    """podCIDR → gateway for every other node with a valid pod CIDR and an IP on one of the
    `connected` subnets (this host's own networks, e.g. "10.251.0.11/24"). Skipped: this node,
    malformed values, a CIDR overlapping this node's own, a default route, and any CIDR claimed
    by two nodes (ambiguous: no route rather than a wrong one)."""
    subnets = [ipaddress.ip_interface(c).network for c in connected]
    own = _network(own_cidr)
    claims: dict[str, list[str]] = {}
    for p in peers:
        if p.name == self_name:
            continue
        net, ip = _network(p.pod_cidr), _address(p.ip)
        if net is None or ip is None or net.prefixlen == 0:
            continue
        if own is not None and net.overlaps(own):
            continue
        if not any(ip in s and ip != s.network_address and ip != s.broadcast_address for s in subnets):
            continue
        claims.setdefault(str(net), []).append(str(ip))
    return {cidr: gws[0] for cidr, gws in claims.items() if len(set(gws)) == 1}


def route_changes(desired: dict[str, str], current: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(routes to replace: cidr → gateway, cidrs to delete) taking `current` to `desired`."""
    replace = {c: gw for c, gw in desired.items() if current.get(c) != gw}
    delete = sorted(c for c in current if c not in desired)
    return replace, delete


def render_masquerade_table(remote_cidrs: Iterable[str], pod_cidrs: Iterable[str]) -> str:
    """Masquerade connections DNATed to another host's pods (`remote_cidrs`, the routed ones) from
    a source outside every node's pod range (`pod_cidrs`); replaced in one transaction."""
    t = f"ip {MASQ_TABLE}"
    lines = [f"add table {t}", f"delete table {t}",
             f'add table {t} {{ comment "pocketkube host-gw: replies of forwarded Service traffic; managed" ; }}']
    for name, cidrs in (("remote-pods", sorted(set(remote_cidrs))), ("pod-ranges", sorted(set(pod_cidrs)))):
        elements = f" elements = {{ {', '.join(cidrs)} }} ;" if cidrs else ""
        lines.append(f"add set {t} {name} {{ type ipv4_addr ; flags interval ; auto-merge ;{elements} }}")
    lines += [f"add chain {t} postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}",
              f"add rule {t} postrouting ct status dnat ip daddr @remote-pods ip saddr != @pod-ranges masquerade"]
    return "\n".join(lines) + "\n"


# -- I/O -------------------------------------------------------------------------------------

def _run(argv: list[str], input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which(argv[0])
    if not binary:
        raise RouteError(f"{argv[0]} not found (apt-get install iproute2 nftables)")
    done = subprocess.run([binary, *argv[1:]], input=input_text, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RouteError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


def connected_networks() -> list[str]:
    """This host's IPv4 addresses with their prefix ("10.251.0.11/24"), loopback excluded."""
    links = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in links if link.get("ifname") != "lo"
            for a in link.get("addr_info", []) if a.get("family") == "inet" and a.get("scope") != "host"]


def current_routes() -> dict[str, str]:
    """Our routes (protocol RT_PROTO) in the main table: cidr → gateway."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "proto", str(RT_PROTO)]).stdout or "[]")
    out = {}
    for r in routes:
        dst = r.get("dst", "")
        if dst and dst != "default" and r.get("gateway"):
            out[dst if "/" in dst else f"{dst}/32"] = r["gateway"]
    return out


def apply_changes(replace: dict[str, str], delete: Iterable[str]) -> list[str]:
    """Apply route changes; returns the error of each that failed (the next sync retries them)."""
    failures = []
    for cidr, gw in replace.items():
        done = _run(["ip", "route", "replace", cidr, "via", gw, "proto", str(RT_PROTO)], check=False)
        if done.returncode != 0:
            failures.append(f"ip route replace {cidr} via {gw}: {done.stderr.strip()}")
    for cidr in delete:
        done = _run(["ip", "route", "del", cidr, "proto", str(RT_PROTO)], check=False)
        if done.returncode != 0 and "No such process" not in done.stderr:
            failures.append(f"ip route del {cidr}: {done.stderr.strip()}")
    return failures


def remove_all_routes() -> None:
    apply_changes({}, list(current_routes()))


def enable_forwarding() -> None:
    """Hosts forward packets to their pods and other hosts' pods (ip_forward=1, as every CNI host)."""
    try:
        with open("/proc/sys/net/ipv4/ip_forward", "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1")
    except OSError as e:
        raise RouteError(f"cannot set net.ipv4.ip_forward=1: {e.strerror or e}") from None


def setup_masquerade(remote_cidrs: Iterable[str], pod_cidrs: Iterable[str]) -> None:
    _run(["nft", "-f", "-"], input_text=render_masquerade_table(remote_cidrs, pod_cidrs))


def remove_masquerade() -> None:
    t = f"ip {MASQ_TABLE}"
    _run(["nft", "-f", "-"], input_text=f"add table {t}\ndelete table {t}\n", check=False)


def local_pod_range(cidr: str, add: bool = True) -> None:
    """Make every address of `cidr` local to this host (process-runtime pods bind pod IPs in the
    host's own network namespace, as 127/8 is on one machine)."""
    _run(["ip", "route", "replace" if add else "del", "local", cidr, "dev", "lo", "table", "local"], check=add)
