"""Image pull secrets → registry credentials (pkg/credentialprovider's docker config keyring).

Pure functions: `keyring(secrets)` reads `kubernetes.io/dockerconfigjson` (`{"auths": {...}}`) and
`kubernetes.io/dockercfg` (the same map, unwrapped) Secrets into (registry pattern, auth) pairs;
`credentials_for(image, ring)` picks those whose pattern matches the image's registry host and
repository path, most specific first. The kubelet then tries each in turn (and pulls without
credentials when none match), as upstream's puller does.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from dataclasses import dataclass, replace

import orjson

from pocketkube.agent.runtime.interface import RegistryAuth
from pocketkube.agent.runtime.reference import parse_image

__all__ = ["RegistryKey", "credentials_for", "keyring", "pull_secret_names"]

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class RegistryKey:
    """A docker config key as the keyring reads it: host (may hold `*` globs, and a port) and path."""

    host: str
    path: str = ""

    @classmethod
    def parse(cls, key: str) -> RegistryKey:
        for scheme in ("https://", "http://"):
            if key.startswith(scheme):
                key = key[len(scheme):]
        host, _, path = key.partition("/")
        path = path.strip("/")
        if host in _DOCKER_HUB and path in ("v1", "v2"):
            path = ""  # https://index.docker.io/v1/ is Docker Hub's legacy key
        return cls(host.lower(), path)

    def matches(self, host: str, repository: str) -> bool:
        if self.host in _DOCKER_HUB and host in _DOCKER_HUB:
            pass
        elif not _host_matches(self.host, host):
            return False
        return not self.path or repository == self.path or repository.startswith(self.path + "/")


def _host_matches(pattern: str, host: str) -> bool:
    """URLsMatch: the same number of dot-separated parts, each glob-matched; ports must be equal."""
    pattern_host, _, pattern_port = pattern.partition(":")
    image_host, _, image_port = host.partition(":")
    if pattern_port != image_port:
        return False
    parts, image_parts = pattern_host.split("."), image_host.split(".")
    return len(parts) == len(image_parts) and all(fnmatch.fnmatchcase(i, p) for p, i in zip(parts, image_parts))


def _entry_auth(key: str, entry: dict) -> RegistryAuth | None:
    if not isinstance(entry, dict):
        return None
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    auth = str(entry.get("auth") or "")
    if auth:  # DockerConfigEntry: `auth` (base64 user:password) wins over the plain fields
        try:
            user, sep, pw = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not sep:
            return None
        username, password = user, pw
    return RegistryAuth(username=username, password=password, auth=auth, server_address=key,
                        identity_token=str(entry.get("identitytoken") or ""),
                        registry_token=str(entry.get("registrytoken") or ""))


def _config_of(secret: dict) -> dict:
    """The registry → entry map of a docker config Secret ({} for other types or bad content)."""
    type_ = secret.get("type")
    key = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}.get(type_ or "")
    raw = (secret.get("data") or {}).get(key or "")
    if not raw:
        return {}
    try:
        parsed = orjson.loads(base64.b64decode(raw))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return {}
    if type_ == DOCKERCONFIGJSON:
        parsed = parsed.get("auths") if isinstance(parsed, dict) else None
    return parsed if isinstance(parsed, dict) else {}


def keyring(secrets: list[dict]) -> list[tuple[RegistryKey, RegistryAuth]]:
    """Every (registry pattern, credentials) the secrets hold, in the order given."""
    ring: list[tuple[RegistryKey, RegistryAuth]] = []
    for secret in secrets:
        for key, entry in _config_of(secret).items():
            auth = _entry_auth(str(key), entry)
            if auth is not None:
                ring.append((RegistryKey.parse(str(key)), auth))
    return ring


def credentials_for(image: str, ring: list[tuple[RegistryKey, RegistryAuth]]) -> list[RegistryAuth]:
    """The credentials to try for `image`: matching entries, the most specific (longest path,
    then longest host) first; each carries the image's registry host as server_address."""
    ref = parse_image(image)
    host = ref.registry.lower()
    matching = [(k, a) for k, a in ring if k.matches(host, ref.repository)]
    matching.sort(key=lambda ka: (-len(ka[0].path), -len(ka[0].host)))
    seen: list[RegistryAuth] = []
    for _, auth in matching:
        auth = replace(auth, server_address=host)
        if auth not in seen:
            seen.append(auth)
    return seen


def pull_secret_names(pod: dict) -> list[str]:
    """The pod's imagePullSecrets (its ServiceAccount's are copied there by the admission)."""
    return [r.get("name", "") for r in (pod.get("spec") or {}).get("imagePullSecrets") or []
            if isinstance(r, dict) and r.get("name")]
