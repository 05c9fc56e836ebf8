"""Wiring of the API server process: the storage backend the DSN names, the registry over it,
the HTTP server over the registry.

The layers below know only their neighbours: apiserver is handed a Registry, the registry is
handed an opened Backend (storage/interface.py). Choosing the concrete backend from the DSN
happens here, once, so neither imports storage/drivers.
"""

from __future__ import annotations

from pathlib import Path

from pocketkube.apiserver.app import APIServer, ServerConfig
from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.storage.datastore import TLSFiles
from pocketkube.storage.drivers import open_backend


def storage_dsn(data_dir: Path, dsn: str = "") -> str:
    """The DSN given, or the default: the SQLite file in the data directory."""
    return dsn or f"sqlite://{Path(data_dir) / 'state.db'}"


def api_server(cfg: ServerConfig, *, storage: str = "", files: TLSFiles = TLSFiles(),
               registry_config: RegistryConfig = RegistryConfig()) -> APIServer:
    """An API server over a registry over the backend `storage` names (not yet started)."""
    backend = open_backend(storage_dsn(cfg.data_dir, storage), files)
    return APIServer(cfg, Registry(backend, registry_config))
