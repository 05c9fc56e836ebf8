"""Command line: `pocketkube up | server | kubectl | image`. Wiring only; the pieces live in their packages."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from pathlib import Path

from pocketkube.net import addresses

DEFAULT_DATA_DIR = Path(os.environ.get("POCKETKUBE_DATA_DIR", Path.home() / ".pocketkube"))
RUNTIMES = ("auto", "containerd", "process")
# The address plans. Process pods share the host's network namespace, so everything fits in
# 127/8; container pods have their own, in which 127/8 is their own loopback, so kind's ranges.
PROCESS_PLAN = {"node_ip_base": "127.0.1.0", "pod_cidr_base": "127.244.0.0/16",
                "service_cidr": "127.96.0.0/16", "load_balancer_pool": "127.200.0.0/24"}
CONTAINER_PLAN = {"node_ip_base": addresses.CONTAINER_NODE_IP_BASE, "pod_cidr_base": addresses.CONTAINER_POD_CIDR_BASE,
                  "service_cidr": addresses.CONTAINER_SERVICE_CIDR,
                  "load_balancer_pool": addresses.CONTAINER_LOAD_BALANCER_POOL}


def _fill_plan(args: argparse.Namespace, plan: dict[str, str]) -> None:
    """Every address flag left unset takes the plan's default."""
    for name, default in plan.items():
        if getattr(args, name, None) is None:
            setattr(args, name, default)


def _port_range(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in value.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a range like 30000-32767, got {value!r}") from None
    if not 1 <= lo <= hi <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port range {value!r}")
    return lo, hi


def _flag_bool(value: str) -> bool:
    """A Kubernetes-style boolean flag value (`--traffic-counters=false`), as Go's strconv.ParseBool."""
    v = value.strip().lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _server_urls(value: str) -> str:
    """One API server URL or several, comma-separated (the client fails over between them)."""
    from pocketkube.client.servers import parse_servers

    try:
        return ",".join(parse_servers(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _quantity(value: str) -> str:
    """A positive resource quantity (`1500m`, `2Gi`), for the node capacity flags."""
    from pocketkube.api.quantity import parse

    q = parse(value)
    if q is None or q <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive quantity like 1500m or 2Gi, got {value!r}")
    return value


def _checked(check):
    """An argparse `type` from a validator raising ValueError (its message becomes argparse's)."""
    def convert(value: str) -> str:
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = check.__name__
    return convert


def _registry_args(p: argparse.ArgumentParser) -> None:
    from pocketkube.agent.runtime.registries import check_mirror_url, check_registry_addr

    p.add_argument("--insecure-registry", action="append", default=[], type=_checked(check_registry_addr),
                   metavar="HOST:PORT", help="with containerd: pull from this registry over plain HTTP "
                                             "(repeatable; loopback registries need no flag)")
    p.add_argument("--registry-mirror", action="append", default=[], type=_checked(check_mirror_url),
                   metavar="URL", help="with containerd: pull docker.io images through this mirror first "
                                       "(repeatable, tried in order; http:// means plain HTTP)")


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="where state, certificates and the kubeconfig live (default: %(default)s)")
    p.add_argument("--bind-address", default="127.0.0.1", help="API server address (default: %(default)s)")
    p.add_argument("--port", type=int, default=6443, help="API server port (default: %(default)s)")
    p.add_argument("--datastore", "--storage", dest="datastore", default=None, metavar="URL",
                   help="datastore URL: sqlite:///PATH (default: DATA_DIR/state.db), etcd://H1:2379,H2:2379, "
                        "etcds://... or https://H1:2379,https://H2:2379 (TLS); also $POCKETKUBE_DATASTORE_ENDPOINT")
    p.add_argument("--datastore-cafile", default="", help="CA bundle that signs the etcd members' certificates")
    p.add_argument("--datastore-certfile", default="", help="client certificate for etcd (with --datastore-keyfile)")
    p.add_argument("--datastore-keyfile", default="", help="the client certificate's key")
    p.add_argument("--service-cidr", default=None,
                   help="ClusterIP range (default: 127.96.0.0/16; 10.96.0.0/16 for `up` with containers)")
    p.add_argument("--service-node-port-range", type=_port_range, default=(30000, 32767),
                   help="NodePort range (default: 30000-32767)")
    _control_plane_args(p)


def _control_plane_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--load-balancer-pool", default=None,
                   help="addresses given to LoadBalancer Services "
                        "(default: 127.200.0.0/24; 10.250.1.0/24 for `up` with containers)")
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                   help="seconds without a node heartbeat before the node is NotReady (default: %(default)s)")
    p.add_argument("--pod-eviction-timeout", type=float, default=300.0,
                   help="seconds a lost node's pods wait before eviction: the tolerationSeconds admission gives pods "
                        "for the not-ready/unreachable taints (default: %(default)s)")
    p.add_argument("--cluster-cidr", type=_checked(_cluster_cidr), default="",
                   help="the pod range of the cluster: each Node without a podCIDR gets a block of it "
                        "(node IPAM); empty: nodes bring their own (default: empty)")
    p.add_argument("--node-cidr-mask-size", type=int, default=24,
                   help="the prefix length of each Node's block of --cluster-cidr (default: %(default)s)")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                   help="terminated pods kept before the oldest are deleted; 0 or less: never "
                        "(default: %(default)s)")
    p.add_argument("--leader-elect", type=_flag_bool, nargs="?", const=True, default=True, metavar="true|false",
                   help="the controllers and the scheduler act only while holding their Leases in kube-system, "
                        "so several copies can run (default: true)")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS",
                   help="how long followers wait after the last observed renewal before taking over "
                        "(default: %(default)s)")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS",
                   help="how long the leader retries renewing before it stops acting (default: %(default)s)")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS",
                   help="between attempts to acquire or renew (default: %(default)s)")


def _cluster_cidr(value: str) -> str:
    import ipaddress

    if not value:
        return value  # off (argparse converts string defaults too)
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a CIDR: {e}") from None
    if net.version != 4:
        raise ValueError(f"{value!r}: only IPv4 cluster CIDRs are supported")
    return value


def _pod_cidr(value: str) -> str:
    """An agent's --pod-cidr: an IPv4 network ("" = the Node's spec.podCIDR)."""
    return _cluster_cidr(value)


def _node_ipam_problem(args: argparse.Namespace) -> str:
    """What is wrong with --cluster-cidr/--node-cidr-mask-size together ("" when nothing)."""
    if not getattr(args, "cluster_cidr", ""):
        return ""
    from pocketkube.controllers.nodeipam import CIDRSet

    try:
        CIDRSet(args.cluster_cidr, args.node_cidr_mask_size)
    except ValueError as e:
        return f"--node-cidr-mask-size: {e}"
    return ""


def _log_rotation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--container-log-max-size", default="10Mi",
                   help="with containerd: rotate a container's log once it reaches this size "
                        "(a quantity; negative: never) (default: %(default)s)")
    p.add_argument("--container-log-max-files", type=int, default=5,
                   help="with containerd: log files kept per container, the live one included "
                        "(default: %(default)s)")


def _ip(value: str) -> str:
    if not addresses.is_ip(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address")
    return value


def _upstream(value: str) -> str:
    from pocketkube.dns.forward import parse_upstream

    try:
        parse_upstream(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not IP[:PORT] (e.g. 192.0.2.1:53)") from None
    return value
def _port_or_zero(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port (1-65535, or 0 for none), got {value!r}")
    return port


def _ingress_port_args(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument(f"--{prefix}http-port", type=_port_or_zero, default=80,
                   help="the Ingress controller's plain HTTP port on every node IP (0: none) (default: %(default)s)")
    p.add_argument(f"--{prefix}https-port", type=_port_or_zero, default=443,
                   help="the Ingress controller's TLS port on every node IP (0: none) (default: %(default)s)")


def bootstrap_ttl_default() -> int:
    from pocketkube.api.bootstraptoken import DEFAULT_TTL

    return DEFAULT_TTL


def _duration(value: str) -> int:
    """A Go-style duration (`24h`, `90m`, `1h30m`, `45s`, `0`) in seconds."""
    import re

    if value.strip() == "0":
        return 0
    parts = re.findall(r"(\d+)(h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        raise argparse.ArgumentTypeError(f"expected a duration like 24h, 30m or 1h30m, got {value!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pocketkube", description="A small, real Kubernetes on one machine.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = p.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the API server (with the controllers and the scheduler)")
    _server_args(server)
    server.add_argument("--no-control-plane", action="store_true",
                        help="run the API server alone, without controllers and scheduler")
    # `up` binds the API port itself and hands the listening socket over (internal: no help).
    server.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    server.add_argument("--advertise-address", default="",
                        help="the address pods reach the API server at (the `kubernetes` Service's endpoint); "
                             "it listens there too, on the same port (default: the bind address)")
    server.add_argument("--advertise-listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    up = sub.add_parser("up", help="run a cluster in the foreground (Ctrl-C stops it)")
    _server_args(up)
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default: %(default)s)")
    up.add_argument("--runtime", choices=RUNTIMES, default="auto",
                    help="container runtime: containerd (real OCI images, each pod in its own network "
                         "namespace; needs root) or process (pods as host processes); auto picks containerd "
                         "when it can run (default: %(default)s)")
    up.add_argument("--container-runtime-endpoint", default="",
                    help="use this CRI runtime (unix:///path.sock) instead of starting containerd (one node only)")
    _registry_args(up)
    up.add_argument("--pod-egress", action=argparse.BooleanOptionalAction, default=True,
                    help="container pods reach beyond the machine, masqueraded behind the host (default: on)")
    up.add_argument("--node-ip-base", default=None,
                    help="node i gets this address + i (default: 127.0.1.0; 10.250.0.0 with containers, "
                         "where the API server takes .254 of its /24)")
    up.add_argument("--pod-cidr-base", default=None,
                    help="node i gets the i-th /24 of this range for its pods "
                         "(default: 127.244.0.0/16; 10.244.0.0/16 with containers)")
    up.add_argument("--node-cpu", type=_quantity, default=None,
                    help="the cpu each node offers pods, a quantity (default: the machine's CPUs split "
                         "evenly across the nodes)")
    up.add_argument("--node-memory", type=_quantity, default=None,
                    help="the memory each node offers pods, a quantity (default: the machine's memory split "
                         "evenly across the nodes)")
    up.add_argument("--dataplane", choices=("auto", "nftables", "userspace"), default="auto",
                    help="Service data plane (default: nftables when root and nft exist)")
    _log_rotation_args(up)
    up.add_argument("--traffic-counters", type=_flag_bool, nargs="?", const=True, default=True,
                    metavar="true|false", help="the data planes count connections for the live map (default: true)")
    up.add_argument("--dns", action=argparse.BooleanOptionalAction, default=True,
                    help="run the cluster DNS at the service range's .10 (default: on)")
    up.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain (default: %(default)s)")
    up.add_argument("--dns-upstream", action="append", default=[], type=_upstream, metavar="IP[:PORT]",
                    help="where the cluster DNS forwards other names (repeatable; default: /etc/resolv.conf's)")
    _ingress_port_args(up, prefix="ingress-")
    up.add_argument("--no-user-kubeconfig", action="store_true",
                    help="do not add a 'pocketkube' context to ~/.kube/config")
    agent = sub.add_parser("agent", help="run one node agent (kubelet and Service proxy), or --hollow N simulated nodes")
    agent.add_argument("--server", required=True, type=_server_urls,
                       help="API server URL, e.g. https://127.0.0.1:6443; several, comma-separated, to fail over between "
                            "(the agent also learns them from the kubernetes Service endpoints)")
    agent.add_argument("--token-file", type=Path, default=None,
                       help="file holding this node's token (an agent in the server's data dir)")
    agent.add_argument("--ca-file", type=Path, default=None, help="the cluster CA certificate (with --token-file)")
    agent.add_argument("--token", default=os.environ.get("POCKETKUBE_TOKEN", ""),
                       help="join token (K10<ca hash>::<id>.<secret>, from `pocketkube token create`): join from "
                            "another host with a node client certificate (default: $POCKETKUBE_TOKEN)")
    agent.add_argument("--node-name", help="this node's name (required unless --hollow)")
    agent.add_argument("--node-ip", required=True,
                       help="this node's IP (e.g. 127.0.1.1); with --hollow the first simulated node's")
    agent.add_argument("--pod-cidr", default="", type=_checked(_pod_cidr),
                       help="this node's pod range (e.g. 127.244.1.0/24); default: the Node's spec.podCIDR, "
                            "given by the controller manager's node IPAM (--cluster-cidr); with --hollow (required) "
                            "the pool the simulated nodes' podCIDRs are carved from")
    agent.add_argument("--routes", choices=("none", "host-gw"), default="none",
                       help="host-gw: route every other Node's pod range via its InternalIP (agents on several "
                            "hosts of one subnet); none: pods are all local already (default: %(default)s)")
    agent.add_argument("--hollow", type=int, default=0, metavar="N",
                       help="simulate N nodes (kubemark's hollow nodes): real Nodes, Leases, pod watches and "
                            "status writes, but no containers, no data plane and no sockets")
    agent.add_argument("--hollow-prefix", default="hollow-", help="simulated nodes' name prefix (default: %(default)s)")
    agent.add_argument("--data-dir", type=Path, required=True, help="where this node keeps pod state and logs")
    agent.add_argument("--dataplane", choices=("auto", "nftables", "userspace"), default="auto")
    agent.add_argument("--traffic-counters", type=_flag_bool, nargs="?", const=True, default=True,
                       metavar="true|false", help="count connections per Service entry and endpoint in the "
                       "data plane, served at /proxy/traffic and /metrics (default: true)")
    agent.add_argument("--runtime", choices=RUNTIMES, default="process",
                       help="container runtime (default: %(default)s; `up` passes what it chose)")
    agent.add_argument("--container-runtime-endpoint", default="",
                       help="a CRI runtime to use (unix:///path.sock); default with --runtime containerd: "
                            "start our own containerd under the data dir")
    _registry_args(agent)
    agent.add_argument("--node-bridge", default="",
                       help="with containerd: this node's pod bridge (`up` creates the cluster's network)")
    agent.add_argument("--pod-routes", default="",
                       help="with containerd: comma-separated ranges pods route via their gateway")
    agent.add_argument("--kubelet-port", type=int, default=10250, help="log server port (0: any free port)")
    _log_rotation_args(agent)
    agent.add_argument("--node-cpu", type=_quantity, default=None,
                       help="the cpu this node offers pods, a quantity (default: the machine's CPUs)")
    agent.add_argument("--node-memory", type=_quantity, default=None,
                       help="the memory this node offers pods, a quantity (default: the machine's memory)")
    agent.add_argument("--cluster-dns", default="",
                       help="comma-separated DNS server IPs ClusterFirst pods use (the kubelet's flag; `up` passes "
                            "kube-dns's ClusterIP); empty: pods get the host's resolvers")
    agent.add_argument("--cluster-domain", default="cluster.local",
                       help="the cluster's DNS domain, in pods' search paths (default: %(default)s)")
    agent.add_argument("--lease-interval", type=float, default=10.0,
                       help="seconds between node heartbeats (default: %(default)s)")
    token = sub.add_parser("token", help="manage join tokens (bootstrap tokens) for agents on other hosts")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a bootstrap token and print its join token")
    create.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the cluster's data dir: its CA and admin kubeconfig (default: %(default)s)")
    create.add_argument("--ttl", type=_duration, default=bootstrap_ttl_default(),
                        help="how long the token authenticates, e.g. 24h, 30m, 0 for ever (default: 24h)")
    create.add_argument("--description", default="", help="a note kept in the token's Secret")
    lb = sub.add_parser("lb", help="forward a local port to whichever of several API servers is up (for kubectl)")
    lb.add_argument("--server", required=True, type=_server_urls,
                    help="the API servers, comma-separated: https://A:6443,https://B:6443")
    lb.add_argument("--listen", default="127.0.0.1:6444", type=_checked(_listen_address),
                    help="where kubectl connects (default: %(default)s; the servers' certificates cover 127.0.0.1)")
    cm = sub.add_parser("controller-manager", help="run the controllers and the scheduler against a server")
    cm.add_argument("--server", required=True, type=_server_urls,
                    help="API server URL, e.g. https://127.0.0.1:6443; several, comma-separated, to fail over between")
    cm.add_argument("--token-file", type=Path, required=True, help="file holding the control plane's token")
    cm.add_argument("--ca-file", type=Path, required=True, help="the cluster CA certificate")
    cm.add_argument("--service-account-private-key-file", type=Path, default=None,
                    help="the key that signs service-account-token Secrets' tokens (the server's pki/sa.key)")
    cm.add_argument("--cluster-signing-cert-file", type=Path, default=None,
                    help="the CA certificate that signs approved kube-apiserver client CSRs (the server's pki/ca.crt)")
    cm.add_argument("--cluster-signing-key-file", type=Path, default=None,
                    help="that CA's key (the server's pki/ca.key); without both, CSRs are neither approved nor signed")
    cm.add_argument("--scheduler-token-file", type=Path,
                    help="file holding the scheduler's token (default: the scheduler uses --token-file's)")
    _control_plane_args(cm)
    # `up` passes one (its controller manager is the only one of its data dir); internal: no help.
    cm.add_argument("--leader-elect-identity-file", type=Path, default=None, help=argparse.SUPPRESS)
    cm.add_argument("--local-path-template", default="",
                    help="the directory where node {node} keeps provisioned volumes, e.g. "
                         "/var/lib/pocketkube/nodes/{node}/storage (`up` passes it; empty: no local-path provisioning)")
    dns = sub.add_parser("dns", help="run the cluster DNS (the cluster.local zone, other names forwarded)")
    dns.add_argument("--server", required=True, type=_server_urls,
                     help="API server URL, e.g. https://127.0.0.1:6443; several, comma-separated, to fail over between")
    dns.add_argument("--token-file", type=Path, required=True, help="file holding the DNS server's token")
    dns.add_argument("--ca-file", type=Path, required=True, help="the cluster CA certificate")
    dns.add_argument("--listen", type=_ip, required=True,
                     help="the address to serve on (kube-dns's EndpointSlice points there)")
    dns.add_argument("--port", type=int, default=53, help="UDP and TCP port (default: %(default)s)")
    dns.add_argument("--service-ip", type=_ip, required=True, help="kube-dns's ClusterIP (the service range's .10)")
    dns.add_argument("--cluster-domain", default="cluster.local", help="the zone served (default: %(default)s)")
    dns.add_argument("--upstream", action="append", default=[], type=_upstream, metavar="IP[:PORT]",
                     help="a resolver for names outside the zone (repeatable; default: --resolv-conf's nameservers)")
    dns.add_argument("--metrics-port", type=int, default=9153,
                     help="Prometheus /metrics on the listen address (default: %(default)s; -1: none)")
    dns.add_argument("--resolv-conf", default="/etc/resolv.conf",
                     help="where the default upstream resolvers are read (default: %(default)s)")
    ing = sub.add_parser("ingress-controller", help="run the built-in Ingress controller (class pocketkube)")
    ing.add_argument("--server", required=True, type=_server_urls,
                     help="API server URL, e.g. https://127.0.0.1:6443; several, comma-separated, to fail over between")
    ing.add_argument("--token-file", type=Path, required=True, help="file holding the controller's token")
    ing.add_argument("--ca-file", type=Path, required=True, help="the cluster CA certificate")
    ing.add_argument("--address", action="append", default=[], metavar="IP",
                     help="listen on this address (repeatable; `up` passes every node IP)")
    _ingress_port_args(ing, prefix="")
    ing.add_argument("--no-load-balancer", action="store_true",
                     help="do not keep the kube-system/pocketkube-ingress LoadBalancer Service")
    doctor = sub.add_parser("doctor", help="check this host for what each mode needs, and how to fix what is missing")
    from pocketkube.doctor.options import add_arguments as doctor_arguments

    doctor_arguments(doctor)
    ui = sub.add_parser("ui", help="print a one-time login link to the live cluster map (the browser page)")
    ui.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="the cluster's data dir (default: %(default)s)")
    ui.add_argument("--open", action="store_true", help="also open the link in a browser")
    ui.add_argument("--no-browser", dest="open", action="store_false", help="only print the link (the default)")
    from pocketkube.clusters.cli import register as register_clusters

    register_clusters(sub, up, ui)  # --name, up -d, down, status, list, logs
    kubectl = sub.add_parser("kubectl", add_help=False,
                             help="run kubectl against the pocketkube cluster ([--name NAME | --data-dir DIR] KUBECTL-ARGS)")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    image = sub.add_parser("image", help="load image archives into every node, list the nodes' images")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    load = image_sub.add_parser("load", help="load `docker save` or OCI archives (.tar, .tar.gz) into every node")
    load.add_argument("files", nargs="*", type=Path, metavar="FILE")
    load.add_argument("--from-host", action="append", default=[], metavar="NAME", choices=("nginx", "busybox", "python"),
                      help="build NAME (nginx, busybox, python) from this host's Debian package and load it, as "
                           "docker.io/library/NAME:latest (python:3): no registry or archive needed")
    image_ls = image_sub.add_parser("ls", help="list the images on each node")
    for q in (load, image_ls):
        q.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                       help="the cluster's data directory (default: %(default)s)")
    from pocketkube.cli_help import finish

    return finish(p)  # --version, `version`, `completion`, and every command's examples


def _tune_gc() -> None:
    """Long-lived state (stored objects, caches) is frozen out of the collector and young
    collections run less often: fewer pauses in the request path (a p99 matter)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _datastore(args: argparse.Namespace):
    """The datastore URL (flag, else $POCKETKUBE_DATASTORE_ENDPOINT, else "" = SQLite in the data
    dir) and its TLS files."""
    from pocketkube.storage.datastore import ENV_VAR, TLSFiles

    url = args.datastore or os.environ.get(ENV_VAR, "")
    return url, TLSFiles(args.datastore_cafile, args.datastore_certfile, args.datastore_keyfile)


async def _run_server(args: argparse.Namespace) -> int:
    _fill_plan(args, PROCESS_PLAN)
    if args.advertise_address and not addresses.is_ip(args.advertise_address):
        print(f"pocketkube: --advertise-address {args.advertise_address!r} is not an IP address", file=sys.stderr)
        return 2
    from pocketkube.apiserver.app import ServerConfig
    from pocketkube.registry.registry import RegistryConfig
    from pocketkube.server import api_server
    from pocketkube.storage.datastore import DatastoreError
    from pocketkube.storage.interface import StoreError

    datastore, files = _datastore(args)
    try:
        server = api_server(
            ServerConfig(data_dir=args.data_dir, host=args.bind_address, port=args.port, listen_fd=args.listen_fd,
                         advertise_address=args.advertise_address, advertise_listen_fd=args.advertise_listen_fd),
            storage=datastore, files=files,
            registry_config=RegistryConfig(service_cidr=args.service_cidr,
                                           node_port_range=args.service_node_port_range,
                                           default_toleration_seconds=max(0, int(args.pod_eviction_timeout))))
    except DatastoreError as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except StoreError as e:
        print(f"pocketkube: cannot open the datastore: {e}", file=sys.stderr)
        await server.stop()
        return 2
    except OSError as e:
        where = f"{args.bind_address}:{args.port}" + (f" and {args.advertise_address}" if args.advertise_address else "")
        print(f"pocketkube: cannot start the API server on {where}: {e.strerror or e}", file=sys.stderr)
        await server.stop()
        return 1
    from pocketkube.controlplane import ControlPlane, ControlPlaneRunner

    control_plane = None
    if not args.no_control_plane:
        # The server's own control plane is the only one using its data dir: it keeps its identity.
        settings = _control_plane_settings(args, server.pki.sa_key, (server.pki.ca_cert, server.pki.ca_key),
                                           server.data_dir / "controlplane-identity")
        control_plane = ControlPlaneRunner(lambda: ControlPlane(
            server.url, server.pki.controlplane_token(), str(server.pki.ca_cert), settings,
            server.pki.scheduler_token()))
        await control_plane.start()
    _tune_gc()
    print(f"API server: {server.url}", flush=True)
    print(f"export KUBECONFIG={server.kubeconfig_path}", flush=True)
    await _print_join_command(server)
    await stop.wait()
    if control_plane is not None:
        await control_plane.stop()
    await server.stop()
    return 0


async def _print_join_command(server) -> None:
    """A 24 h join token for agents on other hosts, written straight into the registry."""
    from pocketkube.api import bootstraptoken, errors
    from pocketkube.join_cli import join_command, join_token

    token_id, secret = bootstraptoken.generate()
    body = bootstraptoken.token_secret(token_id, secret, description="printed by pocketkube server")
    try:
        await server.registry.store("", "secrets").create(body, bootstraptoken.NAMESPACE)
    except errors.ApiError as e:
        print(f"no join token: {e.message}", flush=True)
        return
    url = server.url
    print(f"join an agent: {join_command(url, join_token(server.pki.ca_cert.read_bytes(), token_id, secret))}",
          flush=True)


async def _run_up(args: argparse.Namespace) -> int:
    from pocketkube.agent.runtime.select import RuntimeUnavailable
    from pocketkube.cluster import UpConfig, run_up
    from pocketkube.doctor.mode import decide
    from pocketkube.doctor.probes import gather

    if args.nodes < 1 or args.nodes > 200:
        print("pocketkube: --nodes must be between 1 and 200", file=sys.stderr)
        return 2
    if args.container_runtime_endpoint and args.nodes != 1:
        print("pocketkube: --container-runtime-endpoint serves one node (its CNI network is one node's); "
              "add --nodes 1", file=sys.stderr)
        return 2
    try:
        # doctor's fast pass (PATH, a few files, one `nft list tables`): the mode and its one line.
        mode = decide(args.runtime, args.dataplane, gather(), endpoint=args.container_runtime_endpoint)
    except RuntimeUnavailable as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    try:
        _fill_plan(args, _address_plan(args, mode.runtime))
    except ValueError as e:  # no free slot for a named cluster (pocketkube.clusters.plans)
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    # The agents of `up` bring their blocks of the pod range (recorded on their Nodes); node IPAM
    # tracks them and serves any other Node, so the model is the multi-host one.
    import ipaddress

    try:
        cluster_cidr = args.cluster_cidr or str(ipaddress.ip_network(args.pod_cidr_base, strict=False))
    except ValueError as e:
        print(f"pocketkube: --pod-cidr-base: {e}", file=sys.stderr)
        return 2
    control_plane = ["--cluster-cidr", cluster_cidr,
                     "--load-balancer-pool", args.load_balancer_pool,
                     "--node-monitor-grace-period", str(args.node_monitor_grace_period),
                     "--pod-eviction-timeout", str(args.pod_eviction_timeout),
                     "--terminated-pod-gc-threshold", str(args.terminated_pod_gc_threshold),
                     "--leader-elect", str(args.leader_elect).lower(),
                     "--leader-elect-lease-duration", str(args.leader_elect_lease_duration),
                     "--leader-elect-renew-deadline", str(args.leader_elect_renew_deadline),
                     "--leader-elect-retry-period", str(args.leader_elect_retry_period)]
    extra = ["--service-cidr", args.service_cidr, "--service-node-port-range",
             "{}-{}".format(*args.service_node_port_range), *control_plane]
    from pocketkube.storage import datastore

    try:
        url, files = _datastore(args)
        if url or files != datastore.TLSFiles():
            datastore.check(url, files)
    except datastore.DatastoreError as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    if args.datastore:  # from the environment it reaches the server the same way, out of `ps`
        extra += ["--datastore", args.datastore]
    for flag in ("cafile", "certfile", "keyfile"):
        if getattr(args, f"datastore_{flag}"):
            extra += [f"--datastore-{flag}", getattr(args, f"datastore_{flag}")]
    return await run_up(UpConfig(data_dir=args.data_dir, nodes=args.nodes, host=args.bind_address,
                                 node_ip_base=args.node_ip_base, pod_cidr_base=args.pod_cidr_base,
                                 port=args.port, dataplane=mode.dataplane, server_args=tuple(extra),
                                 traffic_counters=args.traffic_counters,
                                 control_plane_args=tuple(control_plane),
                                 lease_interval=min(10.0, args.node_monitor_grace_period / 4),
                                 update_user_kubeconfig=not args.no_user_kubeconfig,
                                 service_cidr=args.service_cidr, load_balancer_pool=args.load_balancer_pool,
                                 pod_egress=args.pod_egress, runtime=mode.runtime, mode_line=mode.line,
                                 container_runtime_endpoint=args.container_runtime_endpoint,
                                 insecure_registries=tuple(args.insecure_registry),
                                 registry_mirrors=tuple(args.registry_mirror),
                                 container_log_max_size=args.container_log_max_size,
                                 container_log_max_files=args.container_log_max_files,
                                 node_cpu=args.node_cpu or "", node_memory=args.node_memory or "",
                                 dns=args.dns, cluster_domain=args.cluster_domain,
                                 dns_upstreams=tuple(args.dns_upstream),
                                 ingress_http_port=args.ingress_http_port,
                                 ingress_https_port=args.ingress_https_port,
                                 context=getattr(args, "context", "pocketkube")))


def _address_plan(args: argparse.Namespace, runtime: str) -> dict:
    """The cluster's recorded or newly chosen plan (named clusters), else the runtime's defaults."""
    if hook := getattr(args, "address_plan", None):
        return hook(runtime)
    return CONTAINER_PLAN if runtime == "containerd" else PROCESS_PLAN


def _control_plane_settings(args: argparse.Namespace, sa_key: Path | None = None,
                            signing: tuple[Path, Path] | None = None, identity_file: Path | None = None):
    from pocketkube.controlplane import ControlPlaneSettings

    sa_key = sa_key or getattr(args, "service_account_private_key_file", None)
    signing = signing or (getattr(args, "cluster_signing_cert_file", None), getattr(args, "cluster_signing_key_file", None))
    return ControlPlaneSettings(node_monitor_grace_period=args.node_monitor_grace_period,
                                pod_eviction_timeout=args.pod_eviction_timeout,
                                load_balancer_pool=args.load_balancer_pool,
                                service_account_key_file=str(sa_key or ""),
                                local_path_template=getattr(args, "local_path_template", ""),
                                terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
                                cluster_signing_cert_file=str(signing[0] or ""),
                                cluster_signing_key_file=str(signing[1] or ""),
                                cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
                                leader_elect=args.leader_elect, lease_duration=args.leader_elect_lease_duration,
                                renew_deadline=args.leader_elect_renew_deadline,
                                retry_period=args.leader_elect_retry_period,
                                identity_file=str(identity_file or getattr(args, "leader_elect_identity_file", "") or ""))


async def _run_controller_manager(args: argparse.Namespace) -> int:
    _fill_plan(args, PROCESS_PLAN)
    from pocketkube.controlplane import ControlPlane, ControlPlaneRunner

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scheduler_token = args.scheduler_token_file.read_text().strip() if args.scheduler_token_file else ""
    settings = _control_plane_settings(args)
    token = args.token_file.read_text().strip()
    control_plane = ControlPlaneRunner(lambda: ControlPlane(args.server, token, str(args.ca_file), settings,
                                                            scheduler_token))
    await control_plane.start()
    print("Control plane started", flush=True)
    await stop.wait()
    await control_plane.stop()
    return 0


async def _run_ingress(args: argparse.Namespace) -> int:
    from pocketkube.client.rest import Client
    from pocketkube.ingress.controller import IngressController, IngressSettings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = Client(args.server, args.token_file.read_text().strip(), str(args.ca_file),
                    user_agent="pocketkube-ingress")
    controller = IngressController(client, IngressSettings(
        addresses=tuple(args.address), http_port=args.http_port, https_port=args.https_port,
        load_balancer=not args.no_load_balancer))
    try:
        await controller.start()
    except OSError as e:
        hint = " (ports below 1024 need root: see --ingress-http-port)" if e.errno == errno.EACCES else ""
        print(f"Ingress failed: cannot listen on {', '.join(args.address)}: {e.strerror or e}{hint}", flush=True)
        await controller.stop()
        await client.close()
        return 1
    ports = "/".join(str(p) for p in (args.http_port, args.https_port) if p)
    print(f"Ingress ready: {', '.join(args.address)} ports {ports}", flush=True)
    await stop.wait()
    await controller.stop()
    await client.close()
    return 0


async def _run_agent(args: argparse.Namespace) -> int:
    from pocketkube.nodeagent import AgentConfig, run_agent, run_hollow_agent

    if args.hollow < 0 or (not args.hollow and not args.node_name):
        print("pocketkube agent: --node-name is required (or --hollow N with N >= 1)", file=sys.stderr)
        return 2
    if args.hollow and not args.pod_cidr:
        print("pocketkube agent: --hollow needs --pod-cidr (the pool the simulated nodes' ranges come from)",
              file=sys.stderr)
        return 2
    if bool(args.token) == bool(args.token_file) or (args.token_file and not args.ca_file):
        print("pocketkube agent: give either --token (a join token) or --token-file with --ca-file", file=sys.stderr)
        return 2
    cfg = AgentConfig(
        server=args.server, token=args.token_file.read_text().strip() if args.token_file else "",
        ca_file=str(args.ca_file) if args.ca_file else None, join_token=args.token,
        node_name=args.node_name or args.hollow_prefix, node_ip=args.node_ip, pod_cidr=args.pod_cidr,
        data_dir=args.data_dir, routes=args.routes,
        dataplane=args.dataplane, kubelet_port=args.kubelet_port, lease_interval=args.lease_interval,
        traffic_counters=args.traffic_counters,
        runtime=args.runtime, container_runtime_endpoint=args.container_runtime_endpoint,
        node_bridge=args.node_bridge, pod_routes=tuple(r for r in args.pod_routes.split(",") if r),
        container_log_max_size=args.container_log_max_size, container_log_max_files=args.container_log_max_files,
        insecure_registries=tuple(args.insecure_registry), registry_mirrors=tuple(args.registry_mirror),
        node_cpu=args.node_cpu or "", node_memory=args.node_memory or "",
        cluster_dns=tuple(ip for ip in args.cluster_dns.split(",") if ip), cluster_domain=args.cluster_domain)
    if args.hollow:
        return await run_hollow_agent(cfg, args.hollow, args.hollow_prefix)
    return await run_agent(cfg)


async def _run_dns(args: argparse.Namespace) -> int:
    from pocketkube.client.rest import Client
    from pocketkube.dns.forward import parse_upstream
    from pocketkube.dns.main import DNSConfig, run_dns

    client = Client(args.server, args.token_file.read_text().strip(), str(args.ca_file), user_agent="pocketkube-dns")
    return await run_dns(DNSConfig(
        listen=args.listen, port=args.port, service_ip=args.service_ip, cluster_domain=args.cluster_domain,
        upstreams=tuple(parse_upstream(u) for u in args.upstream), resolv_conf=args.resolv_conf,
        metrics_port=args.metrics_port), client)


def _listen_address(value: str) -> tuple[str, int]:
    from pocketkube.lb_cli import parse_listen

    return parse_listen(value)


async def _run_lb(args: argparse.Namespace) -> int:
    from pocketkube.lb_cli import run

    return await run(args.listen, args.server)


async def _run_token(args: argparse.Namespace) -> int:
    from pocketkube.join_cli import create_token

    return await create_token(args.data_dir, args.ttl, args.description)


async def _run_image(args: argparse.Namespace) -> int:
    from pocketkube.images_cli import run

    return await run(args.image_command, args.data_dir, getattr(args, "files", ()),
                     from_host=getattr(args, "from_host", ()))


def _kubectl(args: list[str]) -> int:
    from pocketkube.clusters.cli import kubectl_args
    from pocketkube.kubectl import exec_kubectl

    try:
        args = kubectl_args(args, DEFAULT_DATA_DIR)
    except ValueError as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    return exec_kubectl(args, DEFAULT_DATA_DIR)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kubectl"]:
        # kubectl's own flags (`-n`, `--kubeconfig`...) go through untouched: not argparse's.
        return _kubectl(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "leader_elect_lease_duration") and not (
            args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period > 0):
        parser.error("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline, which must "
                     "be greater than --leader-elect-retry-period (> 0)")
    if (run := getattr(args, "cli_help_run", None)) is not None:
        return run(args, parser)
    if args.command in ("down", "status", "list", "logs"):
        from pocketkube.clusters.cli import run as run_clusters

        return run_clusters(args, DEFAULT_DATA_DIR)
    if args.command == "ui":
        from pocketkube.clusters.cli import data_dir_of
        from pocketkube.ui_cli import run

        return run(data_dir_of(args, DEFAULT_DATA_DIR), args.open)
    if args.command == "doctor":
        from pocketkube.doctor.command import run as doctor

        return doctor(args, DEFAULT_DATA_DIR)
    if problem := _node_ipam_problem(args):
        print(f"pocketkube: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not os.environ.get("POCKETKUBE_NO_UVLOOP"):
        import uvloop  # a dependency: a broken install must fail here, not run slower unnoticed

        uvloop.install()
    if args.command == "up":
        from pocketkube.clusters.cli import finish_up, prepare_up

        if (code := prepare_up(args, DEFAULT_DATA_DIR)) is not None:
            return code
        try:
            return asyncio.run(_run_up(args))
        finally:
            finish_up(args)
    runner = {"token": _run_token, "server": _run_server, "up": _run_up, "agent": _run_agent,
              "controller-manager": _run_controller_manager, "image": _run_image, "dns": _run_dns,
              "ingress-controller": _run_ingress, "lb": _run_lb}[args.command]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
