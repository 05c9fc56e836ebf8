"""secret volumes: the Secret's data as files, on a tmpfs (never written to the node's disk)."""

from __future__ import annotations

import base64
import binascii

from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import MountError, Sources, fs_group, map_keys


def secret_data(secret: dict) -> dict[str, bytes]:
    out = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v or "", validate=True)
        except (binascii.Error, ValueError):
            out[k] = b""  # the API server validates base64; an old object may not be
    return out


def payload(pod: dict, source: dict, sources: Sources, default_mode: object = None,
            group: int | None = None, name_key: str = "secretName") -> dict[str, FileProjection]:
    """The files of a secret volume (`secretName`) or a projected volume's secret source (`name`)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    name = source.get(name_key, "")
    optional = bool(source.get("optional"))
    secret = sources.secret(ns, name)
    if secret is None:
        if optional:
            return {}
        raise MountError(f'secret "{name}" not found')
    mode = source.get("defaultMode") if default_mode is None else default_mode
    return map_keys(secret_data(secret), source.get("items"), mode, optional,
                    lambda key: f"references non-existent secret key: {key}",
                    fs_group(pod) if group is None else group)
