"""Datastore URLs (`--datastore`, k3s' `--datastore-endpoint` names):

    sqlite:///PATH             the embedded store (default: DATA_DIR/state.db); memory:// for tests
    etcd://h1:2379,h2:2379     etcd over plain gRPC (?prefix=/registry to change the key prefix)
    etcds://h1:2379,...        etcd over TLS: --datastore-cafile/-certfile/-keyfile
    https://h1:2379,https://h2:2379   k3s' spelling of etcds:// (http:// likewise of etcd://)
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

ENV_VAR = "POCKETKUBE_DATASTORE_ENDPOINT"
SCHEMES = ("sqlite://", "memory://", "etcd://", "etcds://", "http://", "https://")
DEFAULT_ETCD_PORT = 2379


class DatastoreError(ValueError):
    """A datastore URL or its TLS options that cannot be used (the CLI's exit 2)."""


@dataclass(frozen=True)
class TLSFiles:
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""


@dataclass(frozen=True)
class EtcdSpec:
    endpoints: tuple[tuple[str, int], ...]
    tls: bool = False
    files: TLSFiles = field(default_factory=TLSFiles)
    prefix: str = "/registry/"


def _host_port(item: str, url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit("//" + item)
    try:
        port = parsed.port or DEFAULT_ETCD_PORT
    except ValueError:
        raise DatastoreError(f"datastore URL {url!r}: invalid port in {item!r}") from None
    if not parsed.hostname:
        raise DatastoreError(f"datastore URL {url!r}: empty host in {item!r}")
    return parsed.hostname, port


def parse_etcd(url: str, files: TLSFiles = TLSFiles()) -> EtcdSpec:
    """etcd://, etcds:// or a comma-separated list of http(s):// endpoints."""
    scheme, _, rest = url.partition("://")
    query = ""
    if "?" in rest:
        rest, _, query = rest.partition("?")
    items = []
    for item in rest.split(","):
        item = item.strip()
        if scheme in ("http", "https") and "://" in item:
            s, _, item = item.partition("://")
            if s != scheme:
                raise DatastoreError(f"datastore URL {url!r}: mixes {scheme}:// and {s}:// endpoints")
        item = item.rstrip("/")
        if item:
            items.append(_host_port(item, url))
    if not items:
        raise DatastoreError(f"datastore URL {url!r} names no endpoint (etcd://HOST:PORT[,HOST:PORT...])")
    opts = urllib.parse.parse_qs(query)
    prefix = opts.get("prefix", ["/registry"])[0].rstrip("/") + "/"
    if not prefix.startswith("/"):
        raise DatastoreError(f"datastore URL {url!r}: prefix must start with '/'")
    tls = scheme in ("etcds", "https")
    if not tls and (files.cafile or files.certfile or files.keyfile):
        raise DatastoreError("--datastore-cafile/-certfile/-keyfile need a TLS datastore URL (etcds:// or https://)")
    if bool(files.certfile) != bool(files.keyfile):
        raise DatastoreError("--datastore-certfile and --datastore-keyfile go together")
    return EtcdSpec(tuple(items), tls, files, prefix)


def check(url: str, files: TLSFiles = TLSFiles()) -> None:
    """Raise DatastoreError for a URL open_backend would refuse (for the CLI, before starting)."""
    if not url.startswith(SCHEMES):
        accepted = ", ".join(s + "..." for s in SCHEMES)
        raise DatastoreError(f"unsupported datastore URL {url!r}: accepted schemes are {accepted}")
    if url.startswith(("etcd://", "etcds://", "http://", "https://")):
        parse_etcd(url, files)
    elif files.cafile or files.certfile or files.keyfile:
        raise DatastoreError("--datastore-cafile/-certfile/-keyfile need a TLS datastore URL (etcds:// or https://)")
