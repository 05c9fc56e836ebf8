"""The host side of the container-mode pod network: bridges, addresses, routes, and a cluster
nftables table, so that every cluster range is routed to a local device and nothing leaves the
machine.

Who calls what (in this order):

- the cluster (`up`), before the agents: `check_host(plan)` (a PlanError naming the flag to
  change), then `setup_cluster_network(plan, pod_egress)`: the kernel prerequisites, the
  cluster bridge `pk<id>c` holding every node IP and the API server's address, the Service
  CIDR, the LoadBalancer pool and the whole pod range routed via that bridge (a pod CIDR of an absent node ends there too,
  never on the default route), and the `ip pocketkube-net-<id>` table;
- each agent, before its runtime's first pod: `setup_node_bridge(bridge, pod_cidr)`: its
  bridge with the gateway address, so its pod CIDR is routed locally before the first pod
  (the CNI bridge plugin finds and reuses it); on exit, after its pods are gone,
  `teardown_node_bridge(bridge)`;
- the cluster, after the agents stopped: `teardown_cluster_network(cluster_id)`; after a crash
  (or before a start), `remove_leftovers(cluster_id)` removes whatever of that cluster remains.

Rendering is pure (`render_cluster_table`); the rest drives `ip` and `nft` (no netlink library
is a dependency). All of it is idempotent.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

from pocketkube.net.addresses import (
    BRIDGE_PREFIX,
    ContainerPlan,
    PlanError,
    cluster_bridge,
    cluster_id,
    host_conflicts,
    is_cluster_device,
)

TABLE_PREFIX = "pocketkube-net-"
PROC_SYS = Path("/proc/sys")


class HostNetError(RuntimeError):
    """A host network change failed; the message names the command and the kernel's answer."""


def cluster_id_of(data_dir: str | os.PathLike) -> str:
    """The cluster id of a cluster data dir (resolved first, so any spelling of it agrees)."""
    return cluster_id(str(Path(data_dir).resolve()))


def cluster_table(cid: str) -> str:
    return f"{TABLE_PREFIX}{cid}"


# -- pure rendering --------------------------------------------------------------------------

def render_delete_table(cid: str) -> str:
    """Delete the cluster table; succeeds whether or not it exists."""
    t = f"ip {cluster_table(cid)}"
    return f"add table {t}\ndelete table {t}\n"


def render_cluster_table(plan: ContainerPlan, pod_egress: bool) -> str:
    """The cluster's own table, replaced in one transaction.

    `forward` accepts what goes between the cluster's bridges (pod↔pod, pod→Service→pod, pod→
    node IP and LoadBalancer IP, all on this host) and drops any other forwarded packet from or
    to a cluster range: a pod cannot reach out (nor be reached from) the machine's real
    interfaces. With `pod_egress`, pods may reach non-cluster destinations, masqueraded behind
    the host (as kind does), and the replies come back; cluster ranges still never go out.
    Other tables' forward chains still apply (an `accept` here does not override their drop).
    """
    t = f"ip {cluster_table(plan.cluster_id)}"
    ours = f'"{BRIDGE_PREFIX}{plan.cluster_id}*"'  # every bridge of this cluster, none of another's
    ranges = ", ".join(plan.pod_routes())
    lines = render_delete_table(plan.cluster_id).splitlines() + [
        f'add table {t} {{ comment "pocketkube pod network of cluster {plan.cluster_id}; managed, do not edit" ; }}',
        f"add set {t} cluster-ranges {{ type ipv4_addr ; flags interval ; elements = {{ {ranges} }} ; }}",
        f"add chain {t} forward {{ type filter hook forward priority 0 ; policy accept ; }}",
        f"add rule {t} forward iifname {ours} oifname {ours} accept",
    ]
    if pod_egress:
        lines += [
            f"add rule {t} forward iifname {ours} ip saddr {plan.pod_cidr} ip daddr != @cluster-ranges accept",
            f"add rule {t} forward oifname {ours} ip daddr {plan.pod_cidr} ct state established,related accept",
            f"add chain {t} postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}",
            f"add rule {t} postrouting ip saddr {plan.pod_cidr} ip daddr != @cluster-ranges "
            f"oifname != {ours} masquerade",
        ]
    lines += [f"add rule {t} forward ip saddr @cluster-ranges drop",
              f"add rule {t} forward ip daddr @cluster-ranges drop"]
    return "\n".join(lines) + "\n"


# -- I/O -------------------------------------------------------------------------------------

def _run(argv: list[str], input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which(argv[0])
    if not binary:
        raise HostNetError(f"{argv[0]} not found (apt-get install iproute2 nftables)")
    done = subprocess.run([binary, *argv[1:]], input=input_text, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise HostNetError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


def _ip_json(*args: str) -> list[dict]:
    return json.loads(_run(["ip", "-j", *args]).stdout or "[]")


def _nft(script: str) -> None:
    _run(["nft", "-f", "-"], input_text=script)


def _write_sysctl(name: str, value: str) -> None:
    path = PROC_SYS / name.replace(".", "/")
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as err:
        raise HostNetError(f"cannot set {name}={value}: {err.strerror or err}") from None


def ensure_kernel_prerequisites() -> None:
    """ip_forward=1, br_netfilter loaded, net.bridge.bridge-nf-call-iptables=1.

    These are host-global, and left set on teardown (another user of the host may rely on them,
    and we cannot tell who set them first). They are acceptable because they are exactly what
    every CNI host has (the bridge plugin's `isGateway` sets ip_forward itself at the first pod;
    Docker, kind and k3s set all three): ip_forward routes between the node bridges and the
    cluster bridge; without br_netfilter a reply from a pod to a pod on the same bridge, reached
    through a Service, is bridged past conntrack and never un-DNATed. The cluster table's forward
    chain keeps forwarding from carrying any cluster address off the machine.
    """
    _write_sysctl("net.ipv4.ip_forward", "1")
    if not (PROC_SYS / "net/bridge").is_dir():
        modprobe = shutil.which("modprobe")
        if modprobe:
            subprocess.run([modprobe, "br_netfilter"], capture_output=True, check=False)
        if not (PROC_SYS / "net/bridge").is_dir():
            raise HostNetError("the br_netfilter kernel module is not loaded and could not be loaded "
                               "(run: modprobe br_netfilter)")
    _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")


def host_addresses() -> list[tuple[str, str]]:
    """(interface, network) of every IPv4 address on this host."""
    return [(link["ifname"], f"{a['local']}/{a['prefixlen']}")
            for link in _ip_json("addr", "show") for a in link.get("addr_info", []) if a.get("family") == "inet"]


def host_routes() -> list[tuple[str, str]]:
    """(destination, device) of every IPv4 route in the main table, default routes excluded."""
    routes = []
    for r in _ip_json("-4", "route", "show", "table", "main"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            routes.append((dst if "/" in dst else f"{dst}/32", r.get("dev", "")))
    return routes


def check_host(plan: ContainerPlan) -> None:
    """PlanError listing every way the plan collides with this host's networks or routes."""
    problems = host_conflicts(plan, host_addresses(), host_routes())
    if problems:
        raise PlanError("; ".join(problems))


def _link_exists(name: str) -> bool:
    return _run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def _ensure_bridge(name: str) -> None:
    if not _link_exists(name):
        done = _run(["ip", "link", "add", "name", name, "type", "bridge"], check=False)
        if done.returncode != 0 and not _link_exists(name):  # lost a race with the CNI plugin: fine
            raise HostNetError(f"ip link add {name} type bridge: {done.stderr.strip()}")
    _pin_mac(name)
    _run(["ip", "link", "set", "dev", name, "up"])


_MAC_SET_BY_USER = "3"  # /sys/class/net/*/addr_assign_type: NET_ADDR_SET


def _pin_mac(name: str) -> None:
    """Make the bridge keep its MAC address. A bridge whose address nobody set takes the lowest
    of its ports' (each pod's veth) and changes it as pods come and go: the pods' ARP entries for
    their gateway then point at a MAC that is gone, and their replies are lost for seconds until
    they resolve it again. Setting the current address explicitly pins it."""
    sysfs = Path("/sys/class/net") / name
    try:
        if (sysfs / "addr_assign_type").read_text().strip() == _MAC_SET_BY_USER:
            return
        mac = (sysfs / "address").read_text().strip()
    except OSError as e:
        raise HostNetError(f"cannot read {name}'s MAC address: {e}") from None
    _run(["ip", "link", "set", "dev", name, "address", mac])


def _delete_link(name: str) -> bool:
    return _run(["ip", "link", "del", "dev", name], check=False).returncode == 0


def setup_cluster_network(plan: ContainerPlan, pod_egress: bool = True, local_vips: bool = False) -> None:
    """Everything the cluster's pods need on the host but their node bridges (idempotent).

    `local_vips` (the userspace data plane): the Service CIDR and the LoadBalancer pool become
    local addresses of the host, as 127/8 is in process mode, through a `local` route on the
    cluster bridge (it goes with the bridge): the plane binds any VIP, and a packet to a VIP,
    from the host or from a pod through its gateway, is delivered to that listener instead of
    being forwarded. kube-proxy's ipvs mode does the same one address at a time on kube-ipvs0;
    a whole range needs no change per Service, so agents sharing the host never race over one.
    Without it (the nftables plane DNATs before routing) such routes are removed."""
    if not plan.nodes:
        raise HostNetError("a cluster network needs at least one node")
    ensure_kernel_prerequisites()
    bridge = plan.cluster_bridge
    _ensure_bridge(bridge)
    prefix = ipaddress.ip_network(plan.node_cidr).prefixlen
    # The node IPs and the API server's address, which pods reach through the `kubernetes` Service.
    for ip in (*(node.ip for node in plan.nodes), plan.apiserver_ip):
        _run(["ip", "addr", "replace", f"{ip}/{prefix}", "dev", bridge])
    # Routed via the bridge, not `unreachable`: the host's connect() to a VIP must get as far as
    # the nat hook that rewrites it. Node bridges' connected /24s are more specific than the pod
    # range; the rest of it (absent nodes) ends on this bridge too, never on the default route.
    src = plan.nodes[0].ip
    for cidr in (plan.service_cidr, plan.load_balancer_pool, plan.pod_cidr):
        _run(["ip", "route", "replace", cidr, "dev", bridge, "src", src])
    for cidr in (plan.service_cidr, plan.load_balancer_pool):
        local = ["ip", "route", "replace" if local_vips else "del", "local", cidr, "dev", bridge, "table", "local"]
        _run(local, check=local_vips)  # deleting what is absent: fine
    _nft(render_cluster_table(plan, pod_egress))


def teardown_cluster_network(cid: str) -> None:
    """Remove the cluster bridge (its addresses and routes go with it) and the cluster table."""
    _nft(render_delete_table(cid))
    _delete_link(cluster_bridge(cid))


def setup_node_bridge(bridge: str, pod_cidr: str) -> str:
    """The node's bridge with its gateway (the pod CIDR's first address), up; returns the gateway."""
    net = ipaddress.ip_network(pod_cidr)
    gateway = f"{net.network_address + 1}/{net.prefixlen}"
    _ensure_bridge(bridge)
    _run(["ip", "addr", "replace", gateway, "dev", bridge])
    return gateway.split("/")[0]


def teardown_node_bridge(bridge: str) -> None:
    """Delete the node's bridge (and its connected route); no error if it is gone."""
    _delete_link(bridge)


def cluster_links(cid: str) -> list[str]:
    """The names of this cluster's bridges present on the host."""
    return [link["ifname"] for link in _ip_json("link", "show") if is_cluster_device(link["ifname"], cid)]


def cluster_table_exists(cid: str) -> bool:
    return _run(["nft", "list", "table", "ip", cluster_table(cid)], check=False).returncode == 0


def remove_leftovers(cid: str) -> list[str]:
    """Remove every bridge and the table of cluster `cid` (a crashed run); returns what was removed."""
    removed = []
    if os.geteuid() != 0:  # nothing of ours can exist without root
        return removed
    if shutil.which("nft") and cluster_table_exists(cid):
        _nft(render_delete_table(cid))
        removed.append(f"nftables table ip {cluster_table(cid)}")
    for name in cluster_links(cid):
        if _delete_link(name):
            removed.append(f"bridge {name}")
    return removed
