"""The upstream Kubernetes schemas, loaded once for everything in the apiserver that reads them.

The schemas are data shipped by PyPI's `kubernetes-validate`: JSON Schema definitions of every
Kubernetes release, under the names the apiserver itself uses (`io.k8s.api.core.v1.Service`),
with the Go types' tags (`x-kubernetes-group-version-kind`, `x-kubernetes-patch-strategy`,
`x-kubernetes-patch-merge-key`). Three readers share them: the served OpenAPI documents
(apiserver/openapi/documents.py), fieldValidation (apiserver/openapi/field_validation.py) and
strategic merge patch (apiserver/patch/strategic.py).

One release for all of them: the one we claim to be (`KUBERNETES_VERSION`, 1.32 today). The OpenAPI
documents must describe that release, since kubectl reads them as the server's truth; patch used
to read the newest release shipped instead (1.37). For the kinds we serve the two differ only in
fields newer than 1.32 (e.g. PodSpec.evictionResponders), which a 1.32 server must not know, let
alone merge by key; every patch test passes on 1.32. If the package stops shipping our release,
the newest one stands in.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import orjson

from pocketkube import KUBERNETES_VERSION

_SCHEMA_ROOT = "kubernetes-json-schema"
_RELEASE_DIR = re.compile(r"v(\d+(?:\.\d+)*)-local")

Definitions = dict[str, dict[str, Any]]


def release_directory(root: Traversable, version: str) -> Traversable:
    """The `v<major>.<minor>.0-local` directory for `version`, else the newest release under root."""
    major_minor = ".".join(version.lstrip("v").split(".")[:2])
    wanted = root.joinpath(f"v{major_minor}.0-local")
    if wanted.joinpath("_definitions.json").is_file():
        return wanted
    releases = [d for d in root.iterdir() if _RELEASE_DIR.fullmatch(d.name)]
    if not releases:
        raise FileNotFoundError(f"no Kubernetes schemas under {root}")
    return max(releases, key=_release_number)


def _release_number(directory: Traversable) -> tuple[int, ...]:
    """v1.10.0-local -> (1, 10, 0): releases compare numerically, so 1.10 is newer than 1.9."""
    return tuple(int(part) for part in _RELEASE_DIR.fullmatch(directory.name).group(1).split("."))


@cache
def definitions() -> Definitions:
    """The `$defs` of the release we serve, as {definition name: JSON schema}. Callers must not mutate."""
    root = resources.files("kubernetes_validate").joinpath(_SCHEMA_ROOT)
    directory = release_directory(root, KUBERNETES_VERSION)
    return orjson.loads(directory.joinpath("_definitions.json").read_bytes())["$defs"]


@cache
def names_by_gvk() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from each schema's x-kubernetes-group-version-kind."""
    names: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            names.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return names
