"""secret volumes: the Secret's data as files, on a tmpfs (never written to the node's disk)."""

from __future__ import annotations

import base64
import binascii

from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import Sources, object_payload


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
    return object_payload(pod, source, source.get(name_key, ""), "secret", sources.secret, secret_data,
                          lambda key: f"references non-existent secret key: {key}", default_mode, group)
