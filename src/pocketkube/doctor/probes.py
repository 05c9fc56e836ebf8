"""Gathering the facts (I/O). Every source is a parameter so tests can stand in for the host;
every subprocess has a timeout; a probe that fails yields "unknown", never an exception.

`gather(full=False)` is `up`'s pass: PATH lookups, a few stat()s and — as root with nft — one
`nft list tables`; tens of milliseconds. `full=True` adds the kernel, cgroups, sysctls, listening
ports and the host's addresses and routes (what `pocketkube doctor` shows).
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent.runtime.cni import DEBIAN_CNI_BIN_DIR
from pocketkube.agent.runtime.images import NGINX
from pocketkube.agent.runtime.pause import BUSYBOX
from pocketkube.agent.runtime.select import CNI_PLUGINS
from pocketkube.doctor.facts import (
    KERNEL_FEATURES,
    UPSTREAM_CNI_BIN_DIR,
    Binary,
    Facts,
    NftProbe,
    elf_is_static,
    kernel_feature,
    module_names,
    parse_cgroups,
    parse_kernel_config,
    parse_proc_net_tcp,
)

TIMEOUT = 3.0  # seconds for any one subprocess
PROGRAMS = ("containerd", "runc", "crun", "nft", "ip", "kubectl")
SYSTEM_CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


@dataclass
class Host:
    """Where the probes look; the defaults are the real host."""
    which: Callable[[str], str | None] = shutil.which
    root: Path = Path("/")  # prefix for every absolute path read
    euid: Callable[[], int] = os.geteuid
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run
    kubectl_bundled: Callable[[], str | None] = lambda: _bundled_kubectl()

    def path(self, p: str | Path) -> Path:
        return self.root / str(p).lstrip("/")

    def read(self, p: str | Path, limit: int = 1 << 20) -> str | None:
        try:
            with open(self.path(p), "rb") as f:
                return f.read(limit).decode(errors="replace")
        except OSError:
            return None


def _bundled_kubectl() -> str | None:
    from pocketkube.kubectl import find_kubectl

    return find_kubectl()


def _executable(host: Host, p: str | Path) -> bool:
    return os.access(host.path(p), os.X_OK)


def _busybox(host: Host) -> Binary:
    path = host.path(BUSYBOX)
    if not os.access(path, os.X_OK):
        return Binary()
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return Binary(str(BUSYBOX))
    return Binary(str(BUSYBOX), elf_is_static(head))


def probe_nft(host: Host, nft: str) -> NftProbe:
    try:
        done = host.run([nft, "list", "tables"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return NftProbe(False, f"nft list tables did not answer in {TIMEOUT:.0f}s")
    except OSError as e:
        return NftProbe(False, str(e))
    return NftProbe(done.returncode == 0, (done.stderr or "").strip().splitlines()[-1] if done.returncode else "")


def _kernel(host: Host) -> dict[str, str]:
    release = platform.release()
    loaded = {line.split()[0] for line in (host.read("/proc/modules") or "").splitlines() if line.strip()}
    try:
        loaded |= {p.name for p in host.path("/sys/module").iterdir()}
    except OSError:
        pass
    builtin = module_names(host.read(f"/lib/modules/{release}/modules.builtin") or "")
    available = module_names(host.read(f"/lib/modules/{release}/modules.dep", limit=8 << 20) or "")
    config_text = host.read(f"/boot/config-{release}", limit=8 << 20)
    if config_text is None:
        try:
            config_text = gzip.decompress(host.path("/proc/config.gz").read_bytes()).decode(errors="replace")
        except (OSError, EOFError, gzip.BadGzipFile):
            config_text = None
    config = parse_kernel_config(config_text) if config_text is not None else None
    filesystems = {line.split()[-1] for line in (host.read("/proc/filesystems") or "").splitlines() if line.strip()}
    out = {name: kernel_feature(module, option, loaded=loaded, builtin=builtin, available=available,
                                config=config, filesystems=filesystems)
           for name, (module, option, _) in KERNEL_FEATURES.items()}
    if host.path("/proc/self/ns/net").exists():
        out["network namespaces"] = "builtin"
    if host.path("/proc/sys/net/bridge").is_dir():
        out["br_netfilter"] = "loaded"
    return out


def _ip_json(host: Host, ip: str, *args: str) -> list[dict] | None:
    try:
        done = host.run([ip, "-j", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False)
        return json.loads(done.stdout or "[]") if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _network(host: Host, ip: str) -> tuple[tuple | None, tuple | None]:
    addrs = _ip_json(host, ip, "addr", "show")
    routes = _ip_json(host, ip, "-4", "route", "show", "table", "main")
    addresses = None if addrs is None else tuple(
        (link["ifname"], f"{a['local']}/{a['prefixlen']}")
        for link in addrs for a in link.get("addr_info", []) if a.get("family") == "inet")
    dests = None if routes is None else tuple(
        (r["dst"] if "/" in r["dst"] else f"{r['dst']}/32", r.get("dev", ""))
        for r in routes if r.get("dst") and r.get("dst") != "default")
    return addresses, dests


def gather(full: bool = False, host: Host | None = None) -> Facts:
    host = host or Host()
    programs = {p: host.which(p) or "" for p in PROGRAMS}
    euid = host.euid()
    nft = probe_nft(host, programs["nft"]) if euid == 0 and programs["nft"] else None
    facts = dict(
        euid=euid, programs=programs, cni_dir=DEBIAN_CNI_BIN_DIR,
        cni_present=tuple(p for p in CNI_PLUGINS if _executable(host, f"{DEBIAN_CNI_BIN_DIR}/{p}")),
        cni_elsewhere=tuple(p for p in CNI_PLUGINS if _executable(host, f"{UPSTREAM_CNI_BIN_DIR}/{p}")),
        busybox=_busybox(host), nginx=NGINX if _executable(host, NGINX) else "",
        containerd_socket=SYSTEM_CONTAINERD_SOCKET if host.path(SYSTEM_CONTAINERD_SOCKET).is_socket() else "",
        nft=nft)
    if not full:
        return Facts(**facts)
    facts["kubectl_bundled"] = "" if programs["kubectl"] else (host.kubectl_bundled() or "")
    v2 = host.read("/sys/fs/cgroup/cgroup.controllers")
    facts["cgroups"] = parse_cgroups(host.read("/proc/mounts") or "", v2)
    facts["kernel"] = _kernel(host)
    forward = host.read("/proc/sys/net/ipv4/ip_forward")
    facts["ip_forward"] = forward.strip() if forward is not None else None
    start = host.read("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    facts["unprivileged_port_start"] = int(start) if start and start.strip().isdigit() else None
    listeners = parse_proc_net_tcp(host.read("/proc/net/tcp", limit=16 << 20) or "")
    listeners += parse_proc_net_tcp(host.read("/proc/net/tcp6", limit=16 << 20) or "", v6=True)
    facts["listeners"] = tuple(listeners)
    if programs["ip"]:
        facts["host_addresses"], facts["host_routes"] = _network(host, programs["ip"])
    return Facts(**facts)
