"""configMap volumes: the ConfigMap's data and binaryData as files."""

from __future__ import annotations

import base64

from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import Sources, object_payload


def configmap_data(cm: dict) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    return data


def payload(pod: dict, source: dict, sources: Sources, default_mode: object = None,
            group: int | None = None) -> dict[str, FileProjection]:
    """The files of a configMap volume (or a projected volume's configMap source)."""
    return object_payload(pod, source, source.get("name", ""), "configmap", sources.configmap, configmap_data,
                          lambda key: f"configmap references non-existent config key: {key}", default_mode, group)
