"""projected volumes: configMap, secret, downwardAPI and serviceAccountToken sources in one
directory (pkg/volume/projected); a path two sources both write is an error."""

from __future__ import annotations

from pocketkube.agent.kubelet.volumes import configmap, downwardapi, secret
from pocketkube.agent.kubelet.volumes.atomic_writer import FileProjection
from pocketkube.agent.kubelet.volumes.items import MountError, Sources, file_mode, fs_group

DEFAULT_TOKEN_EXPIRATION = 3600


def token_requests(source: dict) -> list[tuple[str, int]]:
    """(audience, expirationSeconds) of every serviceAccountToken source ("" = the API's audience)."""
    out = []
    for s in source.get("sources") or []:
        tok = s.get("serviceAccountToken")
        if isinstance(tok, dict):
            out.append((tok.get("audience") or "", int(tok.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION)))
    return out


def payload(pod: dict, source: dict, sources: Sources, *, pod_ip: str, host_ip: str,
            allocatable: dict[str, str]) -> dict[str, FileProjection]:
    mode = file_mode(None, source.get("defaultMode"))
    group = fs_group(pod)
    out: dict[str, FileProjection] = {}
    for s in source.get("sources") or []:
        if isinstance(s.get("configMap"), dict):
            part = configmap.payload(pod, s["configMap"], sources, default_mode=mode, group=group)
        elif isinstance(s.get("secret"), dict):
            part = secret.payload(pod, s["secret"], sources, default_mode=mode, group=group, name_key="name")
        elif isinstance(s.get("downwardAPI"), dict):
            part = downwardapi.payload(pod, s["downwardAPI"], pod_ip=pod_ip, host_ip=host_ip,
                                       allocatable=allocatable, default_mode=mode, group=group)
        elif isinstance(s.get("serviceAccountToken"), dict):
            tok = s["serviceAccountToken"]
            value = sources.token(tok.get("audience") or "",
                                  int(tok.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION))
            part = {tok.get("path", "token"): FileProjection(value.encode(), mode, gid=-1 if group is None else group)}
        else:
            continue  # clusterTrustBundle and podCertificate are not supported
        for path in part:
            if path in out:
                raise MountError(f"projected volume has conflicting paths: {path}")
        out.update(part)
    return out
