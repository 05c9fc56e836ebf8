"""Node registration, node status and the lease heartbeat, as the kubelet keeps them.

The Node is created once (or taken over on restart), its status refreshed every
NODE_STATUS_INTERVAL; the Lease kube-node-lease/<node> is renewed every LEASE_RENEW_INTERVAL,
which is what the node lifecycle controller reads to decide a node is alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
from pathlib import Path

import pocketkube
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_micro, now_rfc3339
from pocketkube.client.interface import MERGE_PATCH, Client
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

NODES = BY_PLURAL[("", "nodes")]
LEASES = BY_PLURAL[("coordination.k8s.io", "leases")]
NAMESPACES = BY_PLURAL[("", "namespaces")]
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW_INTERVAL = 10.0
NODE_STATUS_INTERVAL = 20.0
# A failed renewal is retried sooner than the next tick, as the kubelet's lease controller does
# (200 ms doubling, capped at 7 s); jitter keeps the nodes of a restarted server from retrying in step.
LEASE_RETRY_INITIAL = 0.2
LEASE_RETRY_MAXIMUM = 7.0
MAX_PODS = "110"
RUNTIME_VERSION = "pocketkube-process://0.1"
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def arch() -> str:
    machine = platform.machine()
    return ARCH.get(machine, machine)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def capacity(data_dir: Path, cpu: str = "", memory: str = "") -> dict[str, str]:
    """The node's capacity: the machine's, or the share of it `up` gives this node (cpu, memory)."""
    disk = shutil.disk_usage(data_dir)
    return {"cpu": cpu or str(os.cpu_count() or 1), "memory": memory or f"{memory_kib()}Ki", "pods": MAX_PODS,
            "ephemeral-storage": f"{disk.total // 1024}Ki", "hugepages-2Mi": "0"}


def machine_share(nodes: int, cpus: int | None = None, mem_kib: int | None = None) -> tuple[str, str]:
    """(cpu, memory) of one of `nodes` nodes sharing this machine evenly: 2 CPUs over 3 nodes
    are 666m each, as quantities the Node reports."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    mem_kib = mem_kib if mem_kib is not None else memory_kib()
    nodes = max(1, nodes)
    milli = cpus * 1000 // nodes
    return (f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"), f"{mem_kib // nodes}Ki"


def node_labels(name: str) -> dict[str, str]:
    return {"beta.kubernetes.io/arch": arch(), "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch(),
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}


def node_info(runtime_version: str = RUNTIME_VERSION) -> dict[str, str]:
    return {"machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
            "osImage": os_image(), "containerRuntimeVersion": runtime_version,
            "kubeletVersion": pocketkube.KUBERNETES_VERSION, "kubeProxyVersion": pocketkube.KUBERNETES_VERSION,
            "operatingSystem": "linux", "architecture": arch()}


def conditions(heartbeat: str, since: dict[str, str]) -> list[dict]:
    """Ready=True and no pressure; lastTransitionTime kept from `since` (type → time)."""
    def cond(type_: str, status: str, reason: str, message: str) -> dict:
        return {"type": type_, "status": status, "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": since.get(type_, heartbeat), "reason": reason, "message": message}
    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def lease_retry_backoff(lease_interval: float) -> Backoff:
    return Backoff(initial=min(LEASE_RETRY_INITIAL, lease_interval),
                   maximum=min(LEASE_RETRY_MAXIMUM, lease_interval), jitter=0.2)


class NodeAgent:
    def __init__(self, client: Client, name: str, ip: str, pod_cidr: str, data_dir: Path, kubelet_port: int,
                 lease_interval: float = LEASE_RENEW_INTERVAL, *, retry: Backoff | None = None,
                 runtime_version: str = RUNTIME_VERSION, cpu: str = "", memory: str = "") -> None:
        self.client = client
        self.runtime_version = runtime_version  # "containerd://1.6.20~ds1", as CRI Version reports it
        self.lease_interval = lease_interval
        self.retry = retry or lease_retry_backoff(lease_interval)
        self.name = name
        self.ip = ip
        self.pod_cidr = pod_cidr
        self.kubelet_port = kubelet_port
        self.capacity = capacity(data_dir, cpu, memory)
        self.status_interval = NODE_STATUS_INTERVAL  # hollow nodes report less often, as upstream's 5 min
        self._transitions: dict[str, str] = {}

    def node_object(self) -> dict:
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": node_labels(self.name),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]} if self.pod_cidr else {}}

    async def ensure_node(self) -> dict:
        """The Node as stored, created first when absent (without a podCIDR when the agent has
        none: node IPAM then gives it one)."""
        try:
            return await self.client.create(NODES, self.node_object())
        except errors.AlreadyExists:
            return await self.client.get(NODES, "", self.name)

    def status(self) -> dict:
        heartbeat = now_rfc3339()
        conds = conditions(heartbeat, self._transitions)
        self._transitions = {c["type"]: c["lastTransitionTime"] for c in conds}
        return {"capacity": self.capacity, "allocatable": dict(self.capacity), "conditions": conds,
                "addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                "nodeInfo": node_info(self.runtime_version)}

    async def register(self) -> dict:
        """Create the Node, or take over the existing one (an agent restart), then post its status."""
        try:
            await self.client.create(NODES, self.node_object())
        except errors.AlreadyExists:
            existing = await self.client.get(NODES, "", self.name)
            patch: dict = {"metadata": {"labels": node_labels(self.name)}}
            if self.pod_cidr and not (existing.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
            await self.client.patch(NODES, "", self.name, patch)
            ours = {c["type"]: c["status"] for c in conditions("", {})}
            for c in (existing.get("status") or {}).get("conditions") or []:
                if c.get("lastTransitionTime") and ours.get(c.get("type")) == c.get("status"):
                    self._transitions[c["type"]] = c["lastTransitionTime"]
        return await self.post_status()

    async def post_status(self) -> dict:
        return await self.client.patch(NODES, "", self.name, {"status": self.status()}, MERGE_PATCH,
                                       subresource="status")

    def lease_object(self) -> dict:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION,
                         "renewTime": now_micro()}}

    async def _ensure_lease_namespace(self) -> None:
        try:
            await self.client.get(NAMESPACES, "", LEASE_NAMESPACE)
        except errors.NotFound:
            try:
                await self.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": LEASE_NAMESPACE}})
            except errors.AlreadyExists:
                pass

    async def renew_lease(self) -> None:
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro()}
        try:
            await self.client.patch(LEASES, LEASE_NAMESPACE, self.name, {"spec": spec})
        except errors.NotFound:
            await self._ensure_lease_namespace()
            lease = self.lease_object()
            lease["spec"]["acquireTime"] = spec["renewTime"]
            try:
                await self.client.create(LEASES, lease)
            except errors.AlreadyExists:
                await self.client.patch(LEASES, LEASE_NAMESPACE, self.name, {"spec": spec})

    async def heartbeat(self) -> None:
        """Renew the lease every lease_interval (10 s) and the node status every 20 s; a failure is
        retried with back-off (self.retry) rather than at the next tick."""
        ticks = 0
        status_every = max(1, round(self.status_interval / self.lease_interval))
        while True:
            try:
                await self.renew_lease()
                if ticks % status_every == 0 and ticks:
                    await self.post_status()
            except errors.ApiError as e:
                delay = self.retry.next()
                log.warning("node heartbeat failed, retrying in %.1fs: %s", delay, e)
                await asyncio.sleep(delay)
                continue
            self.retry.reset()
            ticks += 1
            await asyncio.sleep(self.lease_interval)
