"""The node's CNI network config for containerd: one bridge per node, host-local IPAM, portmap.

`render_conflist` is pure; `write_conflist` puts it in place atomically (containerd watches its
conf dir and loads the first `.conf`/`.conflist`/`.json` file by name, so a half-written file
must never be visible under such a name).

Choices (containers.md §4): `isGateway` puts the gateway address on the host's bridge (and turns
on ip_forward); `ipMasq` is off, nothing is masqueraded onto real interfaces; `hairpinMode` lets a
pod reach itself through its Service; `forceAddress` replaces a stale gateway address left on the
bridge by an older config with another subnet. host-local `routes` are only the cluster's ranges
(never a default route unless the caller passes one), so nothing from a pod leaves the host.
`loopback` is not listed: containerd sets up `lo` itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path

# Debian's containernetworking-plugins path (upstream's default is /opt/cni/bin).
DEBIAN_CNI_BIN_DIR = "/usr/lib/cni"
CNI_VERSION = "1.0.0"
NETWORK_NAME = "pocketkube"
CONFLIST_NAME = "10-pocketkube.conflist"
_MAX_IFNAME = 15


def render_conflist(*, bridge: str, subnet: str, ipam_dir: str | Path, routes: Sequence[str] = (),
                    gateway: str | None = None, name: str = NETWORK_NAME, mtu: int | None = None,
                    hairpin: bool = True, snat: bool = True) -> str:
    """The conflist (JSON text) for pods on `bridge` with addresses from `subnet` (gateway: its
    first address unless given), their IP state under `ipam_dir`, and a route to each of
    `routes` via the gateway. ValueError for a bad name, subnet, gateway or route."""
    if not bridge or len(bridge) > _MAX_IFNAME or any(c in bridge for c in "/: \t\n\0") or bridge in (".", ".."):
        raise ValueError(f"bridge name {bridge!r} must be 1-{_MAX_IFNAME} characters without '/', ':' or spaces")
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise ValueError(f"pod subnet {subnet!r}: {e}") from None
    if net.num_addresses < 4:
        raise ValueError(f"pod subnet {subnet!r} is too small for a gateway and pods")
    gw = ipaddress.ip_address(gateway) if gateway else net.network_address + 1
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise ValueError(f"gateway {gw} is not a host address of {subnet}")
    if not os.path.isabs(str(ipam_dir)):
        raise ValueError(f"IPAM data dir {str(ipam_dir)!r} must be an absolute path")
    route_list = []
    for r in routes:
        try:
            dst = ipaddress.ip_network(r, strict=True)
        except ValueError as e:
            raise ValueError(f"pod route {r!r}: {e}") from None
        if dst.version != net.version:
            raise ValueError(f"pod route {r} is not of the subnet's IP version")
        route_list.append({"dst": str(dst)})
    bridge_conf: dict = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "isDefaultGateway": False,
        "forceAddress": True,
        "ipMasq": False,
        "hairpinMode": hairpin,
        "ipam": {
            "type": "host-local",
            "dataDir": str(ipam_dir),
            "ranges": [[{"subnet": str(net), "gateway": str(gw)}]],
            "routes": route_list,
        },
    }
    if mtu is not None:
        bridge_conf["mtu"] = int(mtu)
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": snat}
    return json.dumps({"cniVersion": CNI_VERSION, "name": name, "plugins": [bridge_conf, portmap]}, indent=2) + "\n"


def write_conflist(conf_dir: str | Path, text: str, filename: str = CONFLIST_NAME) -> Path:
    """Write `text` as `conf_dir`/`filename` atomically (a hidden temp file, then rename)."""
    directory = Path(conf_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    tmp = directory / f".{filename}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target
