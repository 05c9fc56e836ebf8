"""downwardAPI volumes: the pod's fields and its containers' resources as files."""

from __future__ import annotations

from pocketkube.agent.envvars import EnvError, field_ref, resource_field_ref
from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import MountError, file_mode, fs_group


def _container(pod: dict, name: str) -> dict | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    return None


def payload(pod: dict, source: dict, *, pod_ip: str, host_ip: str, allocatable: dict[str, str],
            default_mode: object = None, group: int | None = None) -> dict[str, FileProjection]:
    """One file per item: a fieldRef (labels and annotations as `key="value"` lines) or a
    resourceFieldRef of a container, rounded up in units of its divisor."""
    mode_default = source.get("defaultMode") if default_mode is None else default_mode
    group = fs_group(pod) if group is None else group
    out: dict[str, FileProjection] = {}
    for item in source.get("items") or []:
        path = item.get("path", "")
        try:
            if item.get("fieldRef"):
                value = field_ref(pod, item["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                container = _container(pod, ref.get("containerName", ""))
                if container is None:
                    raise MountError(f"container {ref.get('containerName', '')} not found")
                value = resource_field_ref(container, ref, allocatable)
            else:
                continue
        except EnvError as e:
            raise MountError(str(e)) from None
        mode = file_mode(item.get("mode"), mode_default)
        out[path] = FileProjection(value.encode(), mode | 0o440 if group is not None else mode,
                                   gid=-1 if group is None else group)
    return out
