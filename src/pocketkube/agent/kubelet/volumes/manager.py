"""The kubelet's volume manager: a pod's volumes set up before its containers start, kept in
step with the objects they project, and torn down when the pod goes.

Layout (as upstream's /var/lib/kubelet/pods): <root>/<pod uid>/volumes/kubernetes.io~<plugin>/<name>.
configMap volumes are directories on disk; secret, downwardAPI and projected volumes, and
emptyDirs of medium Memory, are tmpfs mounts, so secrets never reach the node's disk. Each sync of
a pod calls set_up(): it references the pod's ConfigMaps and Secrets in the shared watches (a
change wakes the pod, whose next set_up rewrites the files through the AtomicWriter), requests or
refreshes its tokens, and (re)writes a volume only when its payload changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pocketkube.agent.kubelet.volumes import (
    atomic_writer,
    configmap,
    downwardapi,
    emptydir,
    hostpath,
    projected,
    pvc,
    secret,
    subpath,
)
from pocketkube.agent.kubelet.volumes.items import MountError, fs_group
from pocketkube.agent.kubelet.volumes.tokens import Token, TokenError
from pocketkube.agent.kubelet.volumes.tokens import request as request_token
from pocketkube.agent.kubelet.volumes.watches import ObjectWatches, Ref
from pocketkube.agent.runtime.interface import Mount
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.interface import Client

log = logging.getLogger(__name__)

CONFIGMAPS = BY_PLURAL[("", "configmaps")]
SECRETS = BY_PLURAL[("", "secrets")]
PVCS = BY_PLURAL[("", "persistentvolumeclaims")]
PVS = BY_PLURAL[("", "persistentvolumes")]
SYNC_TIMEOUT = 5.0
PLUGINS = {"emptyDir": "empty-dir", "configMap": "configmap", "secret": "secret", "downwardAPI": "downward-api",
           "projected": "projected", "hostPath": "host-path", "persistentVolumeClaim": "pvc"}
_TMPFS = ("secret", "downwardAPI", "projected")
_API_DATA = ("configMap", "secret", "downwardAPI", "projected")
_ONCE = ("emptyDir", "hostPath", "persistentVolumeClaim")  # set up at mount; nothing to keep in step


class VolumeError(Exception):
    """A volume could not be set up: FailedMount `MountVolume.SetUp failed for volume "<volume>" : <msg>`."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(message)
        self.volume = volume

    def event_message(self) -> str:
        return f'MountVolume.SetUp failed for volume "{self.volume}" : {self}'


def volume_source(volume: dict) -> str | None:
    for key in PLUGINS:
        if isinstance(volume.get(key), dict):
            return key
    return None


def references(pod: dict) -> set[Ref]:
    """The ConfigMaps and Secrets the pod's volumes read (watched while the pod lives)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    refs: set[Ref] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(v.get("configMap"), dict):
            refs.add(("configmaps", ns, v["configMap"].get("name", "")))
        elif isinstance(v.get("secret"), dict):
            refs.add(("secrets", ns, v["secret"].get("secretName", "")))
        elif isinstance(v.get("projected"), dict):
            for s in v["projected"].get("sources") or []:
                if isinstance(s.get("configMap"), dict):
                    refs.add(("configmaps", ns, s["configMap"].get("name", "")))
                elif isinstance(s.get("secret"), dict):
                    refs.add(("secrets", ns, s["secret"].get("name", "")))
    return refs


def container_mounts(pod: dict, container: dict, paths: dict[str, str]) -> list[Mount]:
    """The container's volumeMounts on the host paths of its pod's volumes (subPath resolved
    here, refusing escapes); MountError for a mount the kubelet cannot make. API data volumes
    (configMap, secret, downwardAPI, projected) are always read-only, as upstream mounts them."""
    api_data = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or []
                if volume_source(v) in _API_DATA}
    out = []
    for m in container.get("volumeMounts") or []:
        name = m.get("name", "")
        if name not in paths:
            raise MountError(f"cannot find volume {name!r} to mount into container {container.get('name')!r}")
        host = paths[name]
        sub = m.get("subPath") or ""
        if sub:
            host = subpath.resolve(host, sub)
        target = m.get("mountPath", "")
        if not target.startswith("/"):  # the kubelet makes a relative mountPath absolute
            target = "/" + target
        out.append(Mount(host_path=host, container_path=target, read_only=bool(m.get("readOnly")) or name in api_data,
                         sub_path=bool(sub)))
    return out


def payload_digest(payload: dict[str, atomic_writer.FileProjection]) -> str:
    h = hashlib.sha256()
    for path in sorted(payload):
        p = payload[path]
        h.update(f"{path}\0{p.mode}\0{p.uid}\0{p.gid}\0{len(p.data)}\0".encode())
        h.update(p.data)
    return h.hexdigest()


@dataclass
class _PodVolumes:
    paths: dict[str, str] = field(default_factory=dict)  # volume name → host path
    written: dict[str, str] = field(default_factory=dict)  # volume name → payload digest on disk
    tokens: dict[tuple[str, int], Token] = field(default_factory=dict)


class _Sources:
    """items.Sources over the watches' caches and the pod's fetched tokens."""

    def __init__(self, watches: ObjectWatches, tokens: dict[tuple[str, int], Token]) -> None:
        self.watches, self.tokens = watches, tokens

    def configmap(self, namespace: str, name: str) -> dict | None:
        return self.watches.get(("configmaps", namespace, name))

    def secret(self, namespace: str, name: str) -> dict | None:
        return self.watches.get(("secrets", namespace, name))

    def token(self, audience: str, expiration_seconds: int) -> str:
        tok = self.tokens.get((audience, expiration_seconds))
        if tok is None:
            raise MountError("no service account token")
        return tok.value


class VolumeManager:
    def __init__(self, client: Client, root: Path, *, node_ip: str = "", allocatable: dict[str, str] | None = None,
                 on_change: Callable[[str], None] = lambda uid: None, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.root = Path(root)
        self.node_ip = node_ip
        self.allocatable = allocatable or {}
        self.clock = clock
        # Secrets go on a tmpfs, never on disk; an agent that is not root cannot mount one, and
        # the process runtime's rootless mode writes them to a 0700 directory instead.
        self.tmpfs = os.geteuid() == 0
        self.watches = ObjectWatches(client, {"configmaps": CONFIGMAPS, "secrets": SECRETS}, on_change)
        self._pods: dict[str, _PodVolumes] = {}

    def pod_dir(self, uid: str) -> Path:
        if not uid or "/" in uid or uid in (".", ".."):
            raise MountError(f"invalid pod uid {uid!r}")
        return self.root / uid

    def volume_dir(self, uid: str, source: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / f"kubernetes.io~{PLUGINS[source]}" / name

    def paths(self, uid: str) -> dict[str, str]:
        state = self._pods.get(uid)
        return dict(state.paths) if state else {}

    async def set_up(self, pod: dict, pod_ip: str = "") -> tuple[float | None, list[VolumeError]]:
        """Set up (or bring up to date) every volume of the pod. Returns the seconds until a token
        needs refreshing (None: never) and the volumes that could not be updated but were set up
        before (their containers keep the files they have, as upstream: a deleted ConfigMap does
        not stop a running pod). VolumeError names the first volume never set up that failed."""
        uid = pod["metadata"]["uid"]
        state = self._pods.setdefault(uid, _PodVolumes())
        refs = references(pod)
        self.watches.reference(uid, refs)
        late = await self.watches.wait_synced(refs, SYNC_TIMEOUT)
        volumes = (pod.get("spec") or {}).get("volumes") or []
        if late is not None:
            name = next((v.get("name", "") for v in volumes if late in references(
                {"metadata": pod["metadata"], "spec": {"volumes": [v]}})), "")
            raise VolumeError(name, f"failed to sync {late[0][:-1]} cache: timed out waiting for the condition")
        await self._refresh_tokens(pod, state, volumes)
        sources = _Sources(self.watches, state.tokens)
        stale: list[VolumeError] = []
        for v in volumes:
            name, kind = v.get("name", ""), volume_source(v)
            try:
                if kind is None:
                    raise MountError("unsupported volume source")
                state.paths[name] = await self._set_up_one(pod, pod_ip, v, kind, state, sources)
            except (MountError, OSError) as e:
                err = VolumeError(name, f"{e.strerror}: {e.filename}" if isinstance(e, OSError) else str(e))
                if name not in state.paths:
                    raise err from None
                stale.append(err)
        if not state.tokens:
            return None, stale
        return max(0.0, min(t.refresh_at() for t in state.tokens.values()) - self.clock()), stale

    async def _refresh_tokens(self, pod: dict, state: _PodVolumes, volumes: list[dict]) -> None:
        wanted = {req for v in volumes if isinstance(v.get("projected"), dict)
                  for req in projected.token_requests(v["projected"])}
        for key in list(state.tokens):
            if key not in wanted:
                del state.tokens[key]
        now = self.clock()
        for key in wanted:
            tok = state.tokens.get(key)
            if tok is not None and now < tok.refresh_at():
                continue
            try:
                state.tokens[key] = await request_token(self.client, pod, key[0], key[1], now)
            except TokenError as e:
                if tok is None or now >= tok.expires:
                    name = next(v.get("name", "") for v in volumes if isinstance(v.get("projected"), dict)
                                and key in projected.token_requests(v["projected"]))
                    raise VolumeError(name, str(e)) from None
                log.warning("pod %s: token refresh failed, the current one is still valid: %s", pod["metadata"]
                            .get("name"), e)

    async def _set_up_one(self, pod: dict, pod_ip: str, v: dict, kind: str, state: _PodVolumes,
                          sources: _Sources) -> str:
        uid, name, src = pod["metadata"]["uid"], v.get("name", ""), v[kind]
        if kind in _ONCE and name in state.paths:
            return state.paths[name]
        if kind == "hostPath":
            return hostpath.set_up(src.get("path", ""), src.get("type") or "")
        if kind == "persistentVolumeClaim":
            return await self._claim_path(pod, src)
        path = self.volume_dir(uid, kind, name)
        if kind == "emptyDir":
            # In a thread: a mount(2) may wait on the kernel's mount lock; the other pods' syncs need not.
            return await asyncio.to_thread(emptydir.set_up, path, src, self._node_memory(), fs_group(pod))
        if kind in _TMPFS and self.tmpfs:
            if name not in state.paths:
                await asyncio.to_thread(emptydir.mount_tmpfs, path, None, "0755")
        else:
            path.mkdir(parents=True, exist_ok=True, mode=0o700 if kind in _TMPFS else 0o755)
        if kind == "configMap":
            payload = configmap.payload(pod, src, sources)
        elif kind == "secret":
            payload = secret.payload(pod, src, sources)
        elif kind == "downwardAPI":
            payload = downwardapi.payload(pod, src, pod_ip=pod_ip, host_ip=self.node_ip, allocatable=self.allocatable)
        else:
            payload = projected.payload(pod, src, sources, pod_ip=pod_ip, host_ip=self.node_ip,
                                        allocatable=self.allocatable)
        digest = payload_digest(payload)
        if state.written.get(name) != digest:
            try:
                await asyncio.to_thread(atomic_writer.write, path, payload)
            except atomic_writer.PayloadError as e:
                raise MountError(str(e)) from None
            state.written[name] = digest
        return str(path)

    async def _claim_path(self, pod: dict, src: dict) -> str:
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        claim = src.get("claimName", "")
        try:
            obj = await self.client.get(PVCS, ns, claim)
        except errors.NotFound:
            raise MountError(f'persistentvolumeclaim "{claim}" not found') from None
        pv_name = pvc.claim_volume_name(obj)
        try:
            pv = await self.client.get(PVS, "", pv_name)
        except errors.NotFound:
            raise MountError(f'persistentvolume "{pv_name}" not found') from None
        return hostpath.set_up(pvc.host_path(pv, obj), "DirectoryOrCreate")

    def _node_memory(self) -> int | None:
        mem = emptydir.size_bytes(self.allocatable.get("memory"))
        if mem:
            return mem
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def exceeded_empty_dirs(self, pod: dict) -> str | None:
        """The eviction message when a disk emptyDir of the pod is over its sizeLimit, else None."""
        uid = pod["metadata"]["uid"]
        for v in (pod.get("spec") or {}).get("volumes") or []:
            src = v.get("emptyDir")
            if isinstance(src, dict) and src.get("sizeLimit") and (src.get("medium") or "") != "Memory":
                path = self.volume_dir(uid, "emptyDir", v.get("name", ""))
                if path.exists() and emptydir.exceeds(emptydir.disk_usage(path), src):
                    return emptydir.eviction_message(v.get("name", ""), src)
        return None

    async def tear_down(self, uid: str) -> None:
        """Unmount and remove everything of the pod's volumes (hostPath and PV data stay)."""
        self.watches.forget(uid)
        self._pods.pop(uid, None)
        try:
            d = self.pod_dir(uid)
        except MountError:
            return
        await asyncio.to_thread(_remove_tree, d)

    async def remove_orphans(self, known: set[str]) -> None:
        """Tear down the volumes of pods this node no longer has (after an agent restart)."""
        if not self.root.exists():
            return
        for d in self.root.iterdir():
            if d.name not in known and d.name not in self._pods:
                await self.tear_down(d.name)

    async def stop(self) -> None:
        await self.watches.stop()


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (from /proc/self/mounts)."""
    prefix = str(path.absolute())
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                point = line.split()[1].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> int:
    """Unmount every volume mount under a node's kubelet dir (for whoever outlives an agent that
    died without tearing its pods' volumes down); how many there were."""
    points = mounts_under(path)
    for point in points:
        emptydir.unmount(Path(point))
    return len(points)


def _remove_tree(d: Path) -> None:
    for point in mounts_under(d):
        emptydir.unmount(Path(point))
    if not mounts_under(d):  # never rm -rf through a mount that would not go
        shutil.rmtree(d, ignore_errors=True)
    else:
        log.warning("volumes of %s still mounted; left in place", d)
