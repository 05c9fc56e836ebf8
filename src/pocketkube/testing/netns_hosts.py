"""Hosts as network namespaces, for multi-host tests on one machine (root only).

    with netns_hosts(3) as hosts:
        hosts.run(1, ["ip", "addr"])           # in host 1's namespace
        agent = hosts.spawn(2, [...])           # a process in host 2 (stopped at the end)
        hosts.link(2, up=False)                 # host 2 loses its link

Layout (distributed.md §4.4): a bridge in the root namespace holding the base address's .1
(10.251.0.1/24: the API server listens there), one namespace `<prefix>-<run>-h<i>` per host,
joined to the bridge by a veth (`eth0` inside, `<prefix><run>h<i>` outside) with address
.1<i> (host 1 = 10.251.0.11), loopback up and forwarding on. No namespace has a default route
and the bridge has no physical port; `blackholes` (the cluster's pod, Service and LoadBalancer
ranges) are blackholed in the root namespace, so none of them can follow its default route out
of the machine. Bridged frames skip the host's netfilter hooks (the bridge's nf_call_* off).
Everything is removed in `finally` — processes, namespaces (their veths go with them), the
bridge and the routes — also when the block fails.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Host", "NetnsHosts", "leftovers", "netns_hosts"]

PREFIX = "pkh"


@dataclass(frozen=True)
class Host:
    index: int
    netns: str
    veth: str  # the root namespace's end, a port of the bridge
    ip: str


@dataclass
class NetnsHosts:
    run_id: str
    bridge: str
    gateway: str  # the bridge's address: the root namespace as the hosts see it
    prefixlen: int
    hosts: list[Host]
    blackholes: tuple[str, ...] = ()
    procs: list[subprocess.Popen] = field(default_factory=list)

    def host(self, i: int) -> Host:
        return self.hosts[i - 1]

    def argv(self, i: int, argv: Sequence[str], cgroups: bool = False) -> list[str]:
        """`argv` in host i's namespace. `ip netns exec` mounts a sysfs of that namespace on /sys,
        which hides the cgroup mounts under it; `cgroups` mounts the same hierarchies again there
        (for container runtimes: runc needs them)."""
        if not cgroups:
            return ["ip", "netns", "exec", self.host(i).netns, *argv]
        script = " && ".join([*cgroup_mounts(), 'exec "$@"'])
        return ["ip", "netns", "exec", self.host(i).netns, "sh", "-c", script, "sh", *argv]

    def run(self, i: int, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            **kw: Any) -> subprocess.CompletedProcess:
        """Run a command in host i's namespace to completion (text output captured)."""
        return subprocess.run(self.argv(i, argv), check=check, timeout=timeout, capture_output=True, text=True, **kw)

    def spawn(self, i: int, argv: Sequence[str], cgroups: bool = False, **kw: Any) -> subprocess.Popen:
        """Start a process in host i's namespace, in a session of its own; stopped on exit."""
        proc = subprocess.Popen(self.argv(i, argv, cgroups), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def link(self, i: int, up: bool) -> None:
        """Host i's cable: its veth's root end up or down."""
        _ip("link", "set", "dev", self.host(i).veth, "up" if up else "down")


def cgroup_mounts(mountinfo: str | None = None) -> list[str]:
    """Shell commands mounting this host's cgroup hierarchies (/sys/fs/cgroup...) again, in order:
    a hierarchy mounted twice with the same options is the same hierarchy."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    cmds = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[4].startswith("/sys/fs/cgroup"):
            continue
        sep = fields.index("-")
        point, fstype, source, opts = fields[4], fields[sep + 1], fields[sep + 2], fields[sep + 3]
        kept = ",".join(o for o in opts.split(",") if o not in ("rw", "ro")) or "defaults"
        cmds.append(f"mkdir -p {point} && mount -t {fstype} -o {kept} {source} {point}")
    return cmds


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_all(procs: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM every process group at once (agents stop their pods in parallel), SIGKILL laggards."""
    for proc in procs:
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait(5)


def _kill_netns_pids(netns: str) -> None:
    done = _ip("netns", "pids", netns, check=False)
    for pid in done.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def leftovers(prefix: str = PREFIX) -> list[str]:
    """Namespaces and links of ours still present (for tests' cleanup checks)."""
    names = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show", check=False).stdout.splitlines()
             if len(line.split(":")) > 1]
    return [n for n in names if n.startswith(f"{prefix}-")] + [n for n in links if n.startswith(prefix)]


@contextmanager
def netns_hosts(n: int, *, base: str = "10.251.0.0/24", bridge: str = f"{PREFIX}-br0",
                blackholes: Sequence[str] = (), run_id: str = "", stop_timeout: float = 40.0) -> Iterator[NetnsHosts]:
    """n hosts (1 ≤ n ≤ 9) as network namespaces on a bridge of `base`; see the module doc."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise RuntimeError("netns_hosts needs root and iproute2")
    if not 1 <= n <= 9:
        raise ValueError("netns_hosts: 1 to 9 hosts (host i is the base's .1<i>)")
    net = ipaddress.ip_network(base)
    run_id = run_id or secrets.token_hex(2)
    gateway = str(net.network_address + 1)
    hosts = [Host(i, f"{PREFIX}-{run_id}-h{i}", f"{PREFIX}{run_id}h{i}", str(net.network_address + 10 + i))
             for i in range(1, n + 1)]
    env = NetnsHosts(run_id, bridge, gateway, net.prefixlen, hosts, tuple(blackholes))
    try:
        _ip("link", "add", "name", bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
            "nf_call_arptables", "0")
        _ip("addr", "add", f"{gateway}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", "dev", bridge, "up")
        for cidr in blackholes:
            _ip("route", "replace", "blackhole", cidr)
        for h in hosts:
            _ip("netns", "add", h.netns)
            _ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns)
            _ip("link", "set", "dev", h.veth, "master", bridge, "up")
            _ip("-n", h.netns, "addr", "add", f"{h.ip}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", h.netns, "link", "set", "dev", "eth0", "up")
            _ip("-n", h.netns, "link", "set", "dev", "lo", "up")
            subprocess.run(["ip", "netns", "exec", h.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                           check=True, capture_output=True)
        yield env
    finally:
        _stop_all(env.procs, stop_timeout)
        for h in hosts:
            _kill_netns_pids(h.netns)
            _ip("netns", "del", h.netns, check=False)
            _ip("link", "del", "dev", h.veth, check=False)
        _ip("link", "del", "dev", bridge, check=False)
        for cidr in blackholes:
            _ip("route", "del", "blackhole", cidr, check=False)
