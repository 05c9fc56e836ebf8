"""Hollow (simulated) nodes, as kubemark's hollow kubelet: real API traffic, no pods behind it.

A hollow node registers its Node (labelled pocketkube.io/hollow=true), renews its Lease and
watches its own pods (spec.nodeName=<node>), exactly as a real agent does, so the control plane
sees the same per-node watch fan-out and write load. What it does not have is a runtime: a pod
bound to it is "started" at once (a fake pod IP from the node's podCIDR, its containers running
and ready) and a pod being deleted is removed at once (its simulated containers stop instantly,
so the grace period never has to run out). No processes, no data plane, no sockets bound.

The decisions (`decide`, `PodIPs`, `hollow_status`) are pure; the pod status itself is the
kubelet's own (kubelet.pod_status) fed with synthetic container records.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable
from enum import Enum

from pocketkube.agent.kubelet.pod_status import ContainerView, pod_status
from pocketkube.agent.runtime.interface import ContainerHistory, ContainerRecord
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.interface import MERGE_PATCH, Client

log = logging.getLogger(__name__)

PODS = BY_PLURAL[("", "pods")]
HOLLOW_LABEL = "pocketkube.io/hollow"
RUNTIME_VERSION = "hollow://0.1"  # what the Node reports as its container runtime: a simulated one
CONTAINER_SCHEME = "hollow"


class Action(Enum):
    NONE = "none"
    START = "start"      # write the Running status (containers started, pod IP assigned)
    ADOPT = "adopt"      # already Running with our IP (a restarted hollow agent): remember its IP
    DELETE = "delete"    # being deleted: the simulated containers are gone, remove the pod


def decide(pod: dict, started: bool) -> Action:
    """What the hollow kubelet does for one of its pods; `started`: it wrote the pod's status."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Action.DELETE
    if started or status.get("phase") in ("Succeeded", "Failed"):
        return Action.NONE
    if status.get("phase") == "Running" and status.get("podIP"):
        return Action.ADOPT
    return Action.START


class PodIPs:
    """Fake pod IPs from a node's podCIDR: the gateway (.1), network and broadcast addresses are
    skipped; a range that runs out is reused from the start (nothing is routed to these IPs)."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
        self._pool = [str(ip) for ip in hosts[1:]] or [str(ip) for ip in hosts]
        self._next = 0
        self.assigned: dict[str, str] = {}  # pod uid → IP

    def assign(self, uid: str) -> str:
        if uid not in self.assigned:
            used = set(self.assigned.values())
            for _ in range(len(self._pool)):
                ip = self._pool[self._next % len(self._pool)]
                self._next += 1
                if ip not in used:
                    break
            self.assigned[uid] = ip
        return self.assigned[uid]

    def adopt(self, uid: str, ip: str) -> None:
        self.assigned[uid] = ip

    def release(self, uid: str) -> None:
        self.assigned.pop(uid, None)


def _record(uid: str, c: dict, started_at: str, *, exited: bool) -> ContainerRecord:
    """A synthetic run of one container: running, or (an init container) completed."""
    cid = hashlib.sha256(f"{uid}/{c['name']}".encode()).hexdigest()
    # pid stands for "has a container"; the kubelet's status reports a containerID for such records.
    return ContainerRecord(id=cid, name=c["name"], pid=1, start_ticks=0, started_at=started_at, restart_count=0,
                           log_path="", image=c.get("image", ""), image_id="", scheme=CONTAINER_SCHEME,
                           exit_code=0 if exited else None, finished_at=started_at if exited else None,
                           reason="Completed" if exited else None)


def hollow_status(pod: dict, *, pod_ip: str, host_ip: str, now: str) -> dict:
    """The status the kubelet writes once every container started: Running, Ready, with pod IP."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    uid = meta.get("uid", "")
    views = {c["name"]: ContainerView(history=ContainerHistory(_record(uid, c, now, exited=True)))
             for c in spec.get("initContainers") or []}
    views.update({c["name"]: ContainerView(history=ContainerHistory(_record(uid, c, now, exited=False)),
                                           ready=True, started=True)
                  for c in spec.get("containers") or []})
    return pod_status(pod, views, pod_ip=pod_ip, host_ip=host_ip, start_time=now, terminated=False,
                      terminal=False, now=now)


class HollowKubelet:
    """One hollow node's pods: its own watch (spec.nodeName=<node>), status writes, deletions."""

    def __init__(self, client: Client, node_name: str, node_ip: str, pod_cidr: str,
                 clock: Callable[[], str] = now_rfc3339) -> None:
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.clock = clock
        self.ips = PodIPs(pod_cidr)
        self.informer = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.started: set[str] = set()    # uids whose Running status we wrote (or adopted)
        self._busy: set[str] = set()      # uids with a write in flight
        self._deleted: set[str] = set()   # uids we removed, until their DELETED event arrives
        self._tasks: set[asyncio.Task] = set()
        self._run: asyncio.Task | None = None

    async def start(self) -> None:
        self.informer.add_handlers(self._on_pod, lambda _old, new: self._on_pod(new), self._on_deleted)
        self._run = asyncio.create_task(self.informer.run(), name=f"hollow pods {self.node_name}")
        await self.informer.synced.wait()

    def _on_pod(self, pod: dict) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        if not uid or uid in self._busy or uid in self._deleted:
            return  # the write in flight re-reads the pod when it is done
        action = decide(pod, uid in self.started)
        if action is Action.ADOPT:
            self.ips.adopt(uid, pod["status"]["podIP"])
            self.started.add(uid)
        elif action is not Action.NONE:
            self._busy.add(uid)
            task = asyncio.create_task(self._act(action, pod))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_deleted(self, pod: dict) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        self.started.discard(uid)
        self._deleted.discard(uid)
        self.ips.release(uid)

    async def _act(self, action: Action, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        try:
            if action is Action.START:
                await self._write_running(pod)
            else:
                await self._delete(pod)
        except errors.ApiError as e:
            log.warning("hollow node %s: %s of pod %s/%s failed: %s", self.node_name, action.value,
                        meta.get("namespace"), meta.get("name"), e)
            await asyncio.sleep(1.0)  # the pod is looked at again below: a failed write is retried
        finally:
            self._busy.discard(uid)
        latest = self.informer.get(object_key(pod))
        if latest is not None and (latest.get("metadata") or {}).get("uid") == uid:
            self._on_pod(latest)

    async def _write_running(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        status = hollow_status(pod, pod_ip=self.ips.assign(uid), host_ip=self.node_ip, now=self.clock())
        try:
            await self.client.patch(PODS, meta["namespace"], meta["name"], {"metadata": {"uid": uid}, "status": status},
                                    MERGE_PATCH, subresource="status")
        except (errors.NotFound, errors.Conflict):
            self.ips.release(uid)
            return
        self.started.add(uid)

    async def _delete(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(PODS, meta["namespace"], meta["name"], grace_period=0,
                                     preconditions={"uid": meta["uid"]})
        except (errors.NotFound, errors.Conflict):
            pass
        self.started.discard(meta["uid"])
        self.ips.release(meta["uid"])
        if self.informer.get(object_key(pod)) is not None:
            self._deleted.add(meta["uid"])

    async def stop(self) -> None:
        tasks = [t for t in (self._run, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
