"""Pods and containers as CRI messages, and CRI state as container records: the kubelet's
translation (pkg/kubelet/kuberuntime), pure functions only.

Inputs are the pod as the API serves it (a dict) and the runtime interface's ContainerConfig;
outputs are cri-api v1 messages for containerd 1.6 (cri-api v0.25). Choices and quirks:
- Labels and annotations are the kubelet's (kuberuntime/labels.go), so that a restarted agent
  rebuilds its state from ListPodSandbox/ListContainers alone.
- `hostname` is empty for hostNetwork pods: runc refuses a hostname without a UTS namespace.
- Namespace options go in the sandbox's config and again in each container's: containerd takes a
  container's from its own config, and the enum's zero value (pid = POD) would share the pause
  container's PID namespace.
- DNS (`dns_config`, which becomes the pod's resolv.conf): kubelet semantics. ClusterFirst (the
  default) uses the cluster DNS servers with the cluster search path and ndots:5; with no cluster
  DNS configured it falls back to Default, as the kubelet does. Default uses the host's
  resolv.conf, minus loopback nameservers (inside the pod's network namespace 127/8 is the pod's
  own loopback); None uses only the pod's dnsConfig, which is merged last in every case. An
  empty DNSConfig is still sent: without one containerd copies the host's file verbatim.
- runAsUser unset: the image's user (uid, or username), as the kubelet passes it explicitly.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from fractions import Fraction

from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    ContainerRecord,
    InvalidImageName,
    Mount,
    RegistryAuth,
)
from pocketkube.agent.runtime.reference import parse_reference
from pocketkube.api import quantity
from pocketkube.api.timestamps import now_rfc3339

# Kubelet label and annotation keys (pkg/kubelet/types/labels.go, kuberuntime/labels.go).
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
CONTAINER_HASH = "io.kubernetes.container.hash"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
CLUSTER_DOMAIN = "cluster.local"
# cgroup CPU figures (pkg/kubelet/cm/helpers_linux.go).
CPU_PERIOD = 100_000
MIN_QUOTA = 1_000
MIN_SHARES = 2
SHARES_PER_CPU = 1024
# Caps on what resolv.conf may hold (kubelet's validation: 3 servers, 32 searches).
MAX_DNS_SERVERS = 3
MAX_DNS_SEARCHES = 32
MAX_DNS_SEARCH_CHARS = 2048  # the whole search line, spaces included (kubelet's expanded limits)
MAX_DNS_NAME = 253  # longer search paths abort some resolvers (glibc 2.28): dropped
# What the kubelet reads of a termination message file.
MAX_TERMINATION_MESSAGE = 4096


class ConfigError(Exception):
    """The pod's spec cannot be run as given (the kubelet's CreateContainerConfigError)."""


# ---------------------------------------------------------------------------------------------
# Image references (distribution's reference grammar, as Docker normalizes short names)
# ---------------------------------------------------------------------------------------------

def auth_config(auth: RegistryAuth | None) -> api.AuthConfig | None:
    """An image pull secret's credentials as the CRI PullImage request carries them.

    server_address stays empty: the kubelet chose these credentials for this image's registry
    already, and containerd 1.7 url.Parse()s the address, which fails for a schemeless
    "host:port" ("first path segment in URL cannot contain colon") and fails the pull."""
    if auth is None:
        return None
    return api.AuthConfig(username=auth.username, password=auth.password, auth=auth.auth,
                          identity_token=auth.identity_token, registry_token=auth.registry_token)


def normalize_image(ref: str) -> str:
    """`ref` fully qualified as Docker and containerd name it (nginx → docker.io/library/nginx:latest,
    a digest kept, `:latest` added only when there is neither tag nor digest); InvalidImageName
    with distribution's message for anything that is not a reference (agent.runtime.reference)."""
    if not isinstance(ref, str):
        raise InvalidImageName(f"couldn't parse image reference {ref!r}: invalid reference format")
    return parse_reference(ref).normalized()


def image_id(image: api.Image) -> str:
    """What the pod status calls imageID: the repo digest when the image has one, else its id."""
    return image.repo_digests[0] if image.repo_digests else image.id


# Substrings of containerd's pull errors meaning that no registry answered at all (dial, DNS,
# routing, timeouts), as opposed to an answer such as "not found" or "401 Unauthorized".
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "no route to host",
                "network is unreachable", "server misbehaving", "temporary failure in name resolution",
                "tls handshake timeout", "connection reset by peer", "context deadline exceeded",
                "dial tcp", "dial udp")
# (Status codes by their phrases: bare numbers also occur in ports and digests.)
_ANSWERED = ("not found", "unauthorized", "denied", "forbidden", "http response to https client")


def pull_unreachable(message: str) -> bool:
    """Whether a failed pull's message says that the registry could not be reached at all."""
    text = message.lower()
    if any(s in text for s in _ANSWERED):
        return False
    return any(s in text for s in _UNREACHABLE)


def grpc_error_text(code: str, message: str) -> str:
    """As Go's gRPC prints an error ("rpc error: code = NotFound desc = ..."), which is what the
    kubelet's events show for pull and sandbox failures."""
    camel = "".join(part.capitalize() for part in code.split("_"))
    return f"rpc error: code = {camel} desc = {message}"


# ---------------------------------------------------------------------------------------------
# Quantities and resources
# ---------------------------------------------------------------------------------------------

def parse_quantity(value: object) -> Fraction:
    """A resource.Quantity ("500m", "128Mi", "1e3", 2) as an exact number; ConfigError if invalid."""
    number = quantity.parse(value)
    if number is None:
        raise ConfigError(f"invalid quantity {value!r}")
    return number


def _milli(value: object) -> int:
    return int(-(-parse_quantity(value) * 1000 // 1))  # rounded up, as Quantity.MilliValue


def linux_resources(container: dict) -> api.LinuxContainerResources:
    """cgroup limits from the container's resources: CPU shares from the request (else the
    limit), CFS quota from the limit, the memory limit in bytes."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    out = api.LinuxContainerResources()
    cpu_request = requests.get("cpu", limits.get("cpu"))
    milli = _milli(cpu_request) if cpu_request is not None else 0
    out.cpu_shares = max(MIN_SHARES, milli * SHARES_PER_CPU // 1000)
    if "cpu" in limits:
        limit = _milli(limits["cpu"])
        out.cpu_period = CPU_PERIOD
        out.cpu_quota = max(MIN_QUOTA, limit * CPU_PERIOD // 1000)
    if "memory" in limits:
        out.memory_limit_in_bytes = int(-(-parse_quantity(limits["memory"]) // 1))
    return out


# ---------------------------------------------------------------------------------------------
# Pod sandbox
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvConf:
    """The parts of a resolv.conf the pod's DNS config is made of."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    servers, searches, options = [], [], []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            servers.append(values[0])
        elif key in ("search", "domain"):
            searches = list(values)  # the last search/domain line wins, as in the resolver
        elif key == "options":
            options += values
    return ResolvConf(tuple(servers), tuple(searches), tuple(options))


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _merge_options(base: list[str], extra: list[dict]) -> list[str]:
    """resolv.conf options with the pod's dnsConfig.options (name, value) overriding by name."""
    merged: dict[str, str] = {}
    for opt in base:
        name, _, value = opt.partition(":")
        merged[name] = opt
    for opt in extra:
        name = opt.get("name", "")
        if name:
            merged[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    return list(merged.values())


def dns_config(pod: dict, *, host: ResolvConf, cluster_dns: tuple[str, ...] | list[str] = (),
               cluster_domain: str = CLUSTER_DOMAIN) -> api.DNSConfig:
    """The pod's resolv.conf as the kubelet computes it (pkg/kubelet/network/dns); see the module
    docstring for the policies."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirst" and host_network:
        policy = "Default"  # ClusterFirstWithHostNet is how a host-network pod asks for cluster DNS
    elif policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not cluster_dns:
        policy = "Default"  # the kubelet's fallback when no cluster DNS is configured
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy == "ClusterFirst":
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        servers = list(cluster_dns)
        searches = list(dict.fromkeys([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                                       *(s.rstrip(".") for s in host.searches)]))
        options = ["ndots:5"]
    elif policy == "Default":
        servers = [s for s in host.servers if not is_loopback(s)]
        searches = list(host.searches)
        options = list(host.options)
    elif policy != "None":
        raise ConfigError(f"unsupported dnsPolicy {policy!r}")
    custom = spec.get("dnsConfig") or {}
    servers += [s for s in custom.get("nameservers") or [] if s not in servers]
    searches += [s for s in custom.get("searches") or [] if s not in searches]
    options = _merge_options(options, custom.get("options") or [])
    return api.DNSConfig(servers=servers[:MAX_DNS_SERVERS], searches=fit_search_paths(searches)[0],
                         options=options)


def fit_search_paths(searches: list[str]) -> tuple[list[str], bool]:
    """(the search paths the pod gets, whether some were omitted), as the kubelet's
    formDNSSearchFitsLimits: the first 32, without names over 253 characters, then cut from the
    end until the line fits in 2048 characters."""
    kept = [s for s in searches[:MAX_DNS_SEARCHES] if len(s) <= MAX_DNS_NAME]
    exceeded = len(kept) != len(searches)
    while kept and len(" ".join(kept)) > MAX_DNS_SEARCH_CHARS:
        kept.pop()
        exceeded = True
    return kept, exceeded


_PROTOCOLS = {"TCP": api.TCP, "UDP": api.UDP, "SCTP": api.SCTP}


def port_mappings(pod: dict, node_ip: str = "") -> list[api.PortMapping]:
    """hostPort mappings of every container (portmap's input). A hostPort without a hostIP is on
    every address of the node; with several nodes on one host that is `node_ip` (portmap would
    otherwise map it on every address of the host, and two nodes' pods with the same hostPort,
    which the scheduler allows, would collide). An explicit hostIP, 0.0.0.0 too, is kept."""
    out = []
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for p in c.get("ports") or []:
            if not p.get("hostPort"):
                continue
            protocol = p.get("protocol") or "TCP"
            if protocol not in _PROTOCOLS:
                raise ConfigError(f"unsupported port protocol {protocol!r}")
            out.append(api.PortMapping(protocol=_PROTOCOLS[protocol], container_port=int(p["containerPort"]),
                                       host_port=int(p["hostPort"]), host_ip=p.get("hostIP") or node_ip))
    return out


def namespace_options(pod: dict) -> api.NamespaceOption:
    spec = pod.get("spec") or {}
    if spec.get("hostPID"):
        pid = api.NODE
    elif spec.get("shareProcessNamespace"):
        pid = api.POD
    else:
        pid = api.CONTAINER
    return api.NamespaceOption(network=api.NODE if spec.get("hostNetwork") else api.POD,
                               pid=pid, ipc=api.NODE if spec.get("hostIPC") else api.POD)


def pod_labels(pod: dict) -> dict[str, str]:
    meta = pod.get("metadata") or {}
    return {**(meta.get("labels") or {}), POD_NAME: meta.get("name", ""),
            POD_NAMESPACE: meta.get("namespace") or "default", POD_UID: meta.get("uid", "")}


def pod_hostname(pod: dict) -> str:
    """The pod's hostname: spec.hostname, else its name cut to a DNS label (63 characters)."""
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or (pod.get("metadata") or {}).get("name", "")
    return name[:63].rstrip("-.")


def cgroup_parent(root: str, node_name: str, pod_uid: str) -> str:
    """The pod's cgroup (cgroupfs path): `<root>/<node>/pod<uid>`."""
    for part, what in ((node_name, "node name"), (pod_uid, "pod uid")):
        if not part or "/" in part or part in (".", "..") or "\0" in part:
            raise ConfigError(f"invalid {what} for a cgroup path: {part!r}")
    return f"{root.rstrip('/')}/{node_name}/pod{pod_uid}"


def _any_privileged(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    return any(((c.get("securityContext") or {}).get("privileged")) for c in
               (spec.get("initContainers") or []) + (spec.get("containers") or []))


def _seccomp(profile: dict | None) -> api.SecurityProfile | None:
    if not profile:
        return None  # unset: containerd runs it unconfined (the kubelet's default without SeccompDefault)
    kind = profile.get("type")
    if kind == "RuntimeDefault":
        return api.SecurityProfile(profile_type=api.SecurityProfile.RuntimeDefault)
    if kind == "Unconfined":
        return api.SecurityProfile(profile_type=api.SecurityProfile.Unconfined)
    raise ConfigError(f"seccomp profile type {kind!r} is not supported")


def sandbox_config(pod: dict, *, log_directory: str, cgroup_parent: str, attempt: int = 0,
                   host: ResolvConf = ResolvConf(), cluster_dns: tuple[str, ...] | list[str] = (),
                   cluster_domain: str = CLUSTER_DOMAIN, node_ip: str = "") -> api.PodSandboxConfig:
    """The pod's PodSandboxConfig (kuberuntime_sandbox.go generatePodSandboxConfig)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    sc = spec.get("securityContext") or {}
    security = api.LinuxSandboxSecurityContext(
        namespace_options=namespace_options(pod),
        supplemental_groups=[int(g) for g in sc.get("supplementalGroups") or []]
        + ([int(sc["fsGroup"])] if sc.get("fsGroup") is not None else []),
        privileged=_any_privileged(pod))
    if sc.get("runAsUser") is not None:
        security.run_as_user.value = int(sc["runAsUser"])
    if sc.get("runAsGroup") is not None:
        security.run_as_group.value = int(sc["runAsGroup"])
    seccomp = _seccomp(sc.get("seccompProfile"))
    if seccomp is not None:
        security.seccomp.CopyFrom(seccomp)
    sysctls = {}
    for s in sc.get("sysctls") or []:
        if not s.get("name"):
            raise ConfigError("a sysctl without a name")
        sysctls[s["name"]] = str(s.get("value", ""))
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=meta.get("name", ""), uid=meta.get("uid", ""),
                                        namespace=meta.get("namespace") or "default", attempt=attempt),
        hostname="" if spec.get("hostNetwork") else pod_hostname(pod),
        log_directory=log_directory,
        dns_config=dns_config(pod, host=host, cluster_dns=cluster_dns, cluster_domain=cluster_domain),
        port_mappings=port_mappings(pod, node_ip),
        labels=pod_labels(pod),
        annotations=dict(meta.get("annotations") or {}),
        linux=api.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=security,
                                        sysctls=sysctls))


# The kubelet's managed /etc/hosts (pkg/kubelet/kubelet_pods.go managedHostsFileContent).
_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
_HOSTS_DEFAULTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                   "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def etc_hosts(pod: dict, pod_ip: str, *, host_file: str = "", cluster_domain: str = CLUSTER_DOMAIN) -> str:
    """The /etc/hosts the pod's containers mount: localhost and the pod's own name on its IP (the
    host's file for hostNetwork pods), then spec.hostAliases."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        text = _HOSTS_HEADER_HOST_NETWORK + host_file
        if text and not text.endswith("\n"):
            text += "\n"
    else:
        hostname = pod_hostname(pod)
        subdomain = spec.get("subdomain")
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        names = f"{hostname}.{subdomain}.{ns}.svc.{cluster_domain}\t{hostname}" if subdomain else hostname
        text = _HOSTS_HEADER + _HOSTS_DEFAULTS + (f"{pod_ip}\t{names}\n" if pod_ip else "")
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for a in aliases:
            text += f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) + "\n"
    return text


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------

def _capability(name: str) -> str:
    name = str(name).upper()
    return name if name == "ALL" or name.startswith("CAP_") else f"CAP_{name}"


@dataclass(frozen=True)
class ImageUser:
    """Who the image runs as (ImageStatus uid / username)."""

    uid: int | None = None
    username: str = ""


def verify_run_as_non_root(pod: dict, container: dict, image_user: ImageUser | None) -> None:
    """The kubelet's runAsNonRoot check (kuberuntime/security_context_others.go): ConfigError with
    its message when the container would run as root or as a user it cannot verify. `image_user`
    None: the image is not present (creating the container fails on that instead)."""
    sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(container.get("securityContext") or {})}
    if not sc.get("runAsNonRoot"):
        return
    meta = pod.get("metadata") or {}
    where = f'(pod: "{meta.get("name", "")}_{meta.get("namespace") or "default"}'
    where += f'({meta.get("uid", "")})", container: {container.get("name", "")})'
    if sc.get("runAsUser") is not None:
        if int(sc["runAsUser"]) == 0:
            raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
        return
    if image_user is None:
        return
    if image_user.uid is not None:
        if image_user.uid == 0:
            raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
        return
    if image_user.username and not image_user.username.isdigit():
        raise ConfigError(f"container has runAsNonRoot and image has non-numeric user "
                          f"({image_user.username}), cannot verify user is non-root {where}")
    if not image_user.username or int(image_user.username) == 0:
        raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")


def container_security(pod: dict, container: dict, image_user: ImageUser | None) -> api.LinuxContainerSecurityContext:
    """The container's effective security context: container fields over the pod's."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    own = container.get("securityContext") or {}
    sc = {**pod_sc, **own}
    verify_run_as_non_root(pod, container, image_user)
    caps = own.get("capabilities") or {}
    out = api.LinuxContainerSecurityContext(
        capabilities=api.Capability(add_capabilities=[_capability(c) for c in caps.get("add") or []],
                                    drop_capabilities=[_capability(c) for c in caps.get("drop") or []]),
        privileged=bool(own.get("privileged")),
        namespace_options=namespace_options(pod),
        readonly_rootfs=bool(own.get("readOnlyRootFilesystem")),
        supplemental_groups=[int(g) for g in pod_sc.get("supplementalGroups") or []]
        + ([int(pod_sc["fsGroup"])] if pod_sc.get("fsGroup") is not None else []),
        # allowPrivilegeEscalation defaults to true; only an explicit false sets no_new_privs.
        no_new_privs=own.get("allowPrivilegeEscalation") is False)
    if sc.get("runAsUser") is not None:
        out.run_as_user.value = int(sc["runAsUser"])
    elif image_user is not None and image_user.uid is not None:
        out.run_as_user.value = image_user.uid
    elif image_user is not None:
        out.run_as_username = image_user.username
    if sc.get("runAsGroup") is not None:
        out.run_as_group.value = int(sc["runAsGroup"])
    seccomp = _seccomp(sc.get("seccompProfile"))
    if seccomp is not None:
        out.seccomp.CopyFrom(seccomp)
    return out


def container_hash(container: dict) -> str:
    """io.kubernetes.container.hash: a stable digest of the container's spec (hex)."""
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:8]


def volume_mounts(mounts: list[Mount]) -> list[api.Mount]:
    """The pod's volumes as CRI bind mounts: private propagation, no SELinux relabelling (the
    kubelet's makeMounts for volumes without mountPropagation)."""
    return [api.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.read_only,
                      selinux_relabel=False, propagation=api.PROPAGATION_PRIVATE) for m in mounts]


@dataclass
class ContainerFiles:
    """Host files the container mounts (written by the runtime before CreateContainer)."""

    etc_hosts: str = ""  # absolute path of the pod's hosts file; "" mounts none
    termination_log: str = ""  # absolute path of this run's termination message file
    extra: list[api.Mount] = field(default_factory=list)


def container_config(cfg: ContainerConfig, *, files: ContainerFiles, image_user: ImageUser | None = ImageUser()
                     ) -> api.ContainerConfig:
    """The CRI ContainerConfig of one run of a container (kuberuntime_container.go)."""
    spec = cfg.spec or {}
    pod = cfg.pod or {}
    meta = pod.get("metadata") or {}
    term_path = spec.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    mounts = list(files.extra) + volume_mounts(cfg.mounts)
    mounted = {m.container_path for m in mounts}
    if files.etc_hosts and "/etc/hosts" not in mounted:
        mounts.append(api.Mount(container_path="/etc/hosts", host_path=files.etc_hosts))
    if files.termination_log and term_path not in mounted:
        mounts.append(api.Mount(container_path=term_path, host_path=files.termination_log))
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=cfg.name, attempt=cfg.restart_count),
        image=api.ImageSpec(image=cfg.image or cfg.image_id),
        command=list(cfg.command), args=list(cfg.args),
        working_dir=spec.get("workingDir") or "",
        envs=[api.KeyValue(key=k, value=v) for k, v in cfg.env.items()],
        mounts=mounts,
        labels={POD_NAME: meta.get("name", ""), POD_NAMESPACE: meta.get("namespace") or "default",
                POD_UID: cfg.pod_uid, CONTAINER_NAME: cfg.name},
        annotations={RESTART_COUNT: str(cfg.restart_count), CONTAINER_HASH: container_hash(spec),
                     TERMINATION_MESSAGE_PATH: term_path,
                     TERMINATION_MESSAGE_POLICY: spec.get("terminationMessagePolicy") or "File"},
        log_path=f"{cfg.name}/{cfg.restart_count}.log",
        stdin=bool(spec.get("stdin")), stdin_once=bool(spec.get("stdinOnce")), tty=bool(spec.get("tty")),
        linux=api.LinuxContainerConfig(resources=linux_resources(spec),
                                       security_context=container_security(pod, spec, image_user)))


# ---------------------------------------------------------------------------------------------
# Container status → record
# ---------------------------------------------------------------------------------------------

def _rfc3339(ns: int) -> str | None:
    return now_rfc3339(ns / 1e9) if ns > 0 else None


def exit_reason(status: api.ContainerStatus) -> str:
    """The terminated reason: containerd's own (OOMKilled, StartError, ...) else Completed/Error."""
    if status.reason and status.reason not in ("Completed", "Error"):
        return status.reason
    return "Completed" if status.exit_code == 0 else "Error"


def pid_from_info(info: dict[str, str]) -> int:
    """The container's main pid from a verbose ContainerStatus's info["info"] JSON (0 if none)."""
    try:
        pid = json.loads(info.get("info") or "{}").get("pid", 0)
    except (ValueError, AttributeError):
        return 0
    return pid if isinstance(pid, int) and pid > 0 else 0


def record_from_status(status: api.ContainerStatus, *, image: str = "", pid: int = 0) -> ContainerRecord:
    """A ContainerRecord from CRI ContainerStatus: EXITED ones terminated with their exit code,
    reason and times; CREATED/RUNNING/UNKNOWN ones running. `pid`: the main process's, if known
    (0 for a run that never got a process, as the process runtime's failed starts)."""
    annotations = dict(status.annotations)
    try:
        restart_count = int(annotations.get(RESTART_COUNT, status.metadata.attempt))
    except ValueError:
        restart_count = status.metadata.attempt
    record = ContainerRecord(
        id=status.id, name=status.metadata.name or dict(status.labels).get(CONTAINER_NAME, ""), pid=pid,
        start_ticks=0, started_at=_rfc3339(status.started_at) or _rfc3339(status.created_at) or "",
        restart_count=restart_count, log_path=status.log_path,
        image=image or status.image.image, image_id=status.image_ref,
        log_format="cri", scheme="containerd")
    if status.state == api.CONTAINER_EXITED:
        record.exit_code = status.exit_code
        record.reason = exit_reason(status)
        record.message = status.message or None
        record.finished_at = _rfc3339(status.finished_at) or record.started_at
    return record


def termination_message(text: bytes) -> str:
    """What the kubelet keeps of a termination message file (its last 4096 bytes)."""
    return text[-MAX_TERMINATION_MESSAGE:].decode(errors="replace")


def log_tail_message(log_text: str, *, max_lines: int = 80, max_bytes: int = 2048) -> str:
    """FallbackToLogsOnError: the last lines of a CRI log (its text, without timestamps)."""
    lines = []
    for line in log_text.splitlines()[-max_lines:]:
        parts = line.split(" ", 3)
        if len(parts) == 4:
            lines.append(parts[3] + ("\n" if parts[2] == "F" else ""))
    return "".join(lines)[-max_bytes:]


def safe_component(value: str, what: str) -> str:
    """A pod uid or container name used as one path component (the API validates both)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise ConfigError(f"invalid {what}: {value!r}")
    return value

