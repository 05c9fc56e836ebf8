"""configMap volumes: the ConfigMap's data and binaryData as files."""

from __future__ import annotations

import base64

from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import MountError, Sources, fs_group, map_keys


def configmap_data(cm: dict) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    return data


def payload(pod: dict, source: dict, sources: Sources, default_mode: object = None,
            group: int | None = None) -> dict[str, FileProjection]:
    """The files of a configMap volume (or a projected volume's configMap source)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    name = source.get("name", "")
    optional = bool(source.get("optional"))
    cm = sources.configmap(ns, name)
    if cm is None:
        if optional:
            return {}
        raise MountError(f'configmap "{name}" not found')
    mode = source.get("defaultMode") if default_mode is None else default_mode
    return map_keys(configmap_data(cm), source.get("items"), mode, optional,
                    lambda key: f"configmap references non-existent config key: {key}",
                    fs_group(pod) if group is None else group)
