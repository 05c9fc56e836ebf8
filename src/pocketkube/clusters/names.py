"""Cluster names, their data dirs and kubeconfig contexts (pure, except `known_dirs`)."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_NAME = "pocketkube"
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
PLAN_FILE = "cluster.json"


def name_problem(name: str) -> str:
    """Why `name` is not a cluster name ("" when it is): a DNS-1123 label, as kind's names, since it
    becomes part of a kubeconfig context and a directory name."""
    if not name:
        return "a cluster name must not be empty"
    if len(name) > 63:
        return f"invalid cluster name {name!r}: must be no more than 63 characters"
    if not _DNS1123_LABEL.fullmatch(name):
        return (f"invalid cluster name {name!r}: a lowercase RFC 1123 label must consist of lower case "
                "alphanumeric characters or '-', and must start and end with an alphanumeric character "
                "(e.g. 'my-name', or '123-abc')")
    return ""


def data_dir_for(name: str, default_dir: Path) -> Path:
    """The default cluster keeps the data dir it always had (`~/.pocketkube`, or
    $POCKETKUBE_DATA_DIR); another one lives beside it, `~/.pocketkube-NAME`."""
    if name == DEFAULT_NAME:
        return default_dir
    return default_dir.parent / f"{default_dir.name}-{name}"


def context_name(name: str) -> str:
    """The cluster's context (and cluster and user entries) in ~/.kube/config."""
    return DEFAULT_NAME if name == DEFAULT_NAME else f"{DEFAULT_NAME}-{name}"


def name_of_dir(path: Path, default_dir: Path) -> str | None:
    """The cluster name a data dir belongs to, or None when it is not one of the named dirs."""
    if path == default_dir:
        return DEFAULT_NAME
    prefix = f"{default_dir.name}-"
    if path.parent == default_dir.parent and path.name.startswith(prefix):
        name = path.name[len(prefix):]
        if not name_problem(name) and name != DEFAULT_NAME:
            return name
    return None


def known_dirs(default_dir: Path) -> dict[str, Path]:
    """Every cluster that has been up at least once (it has a plan file, or a kubeconfig for a
    default dir made before plans were recorded), by name, sorted."""
    found: dict[str, Path] = {}
    candidates = [default_dir, *default_dir.parent.glob(f"{default_dir.name}-*")]
    for path in candidates:
        name = name_of_dir(path, default_dir)
        if name is None:
            continue
        if (path / PLAN_FILE).exists() or (name == DEFAULT_NAME and (path / "kubeconfig").exists()):
            found[name] = path
    return dict(sorted(found.items()))
