"""The one upstream-schema loader (pocketkube.apiserver.schemas) that OpenAPI, fieldValidation and patch share."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketkube import KUBERNETES_VERSION
from pocketkube.apiserver import schemas
from pocketkube.apiserver.openapi import documents, field_validation
from pocketkube.apiserver.patch import strategic


def make_releases(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir()
        (root / name / "_definitions.json").write_text('{"$defs": {}}')


def test_release_directory_prefers_the_served_minor_release(tmp_path: Path) -> None:
    make_releases(tmp_path, "v1.31.0-local", "v1.32.0-local", "v1.32.0-local-strict", "v1.40.0-local")
    assert schemas.release_directory(tmp_path, "v1.32.4").name == "v1.32.0-local"


def test_release_directory_falls_back_to_the_newest_numerically(tmp_path: Path) -> None:
    make_releases(tmp_path, "v1.9.0-local", "v1.10.0-local", "v1.10.0-local-strict", "master-local")
    assert schemas.release_directory(tmp_path, "v1.32.4").name == "v1.10.0-local"


def test_release_directory_without_releases_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        schemas.release_directory(tmp_path, "v1.32.4")


def test_every_reader_uses_the_same_loaded_release() -> None:
    assert strategic.definitions is schemas.definitions
    assert documents.definitions is schemas.definitions
    assert field_validation.definitions is schemas.definitions
    assert KUBERNETES_VERSION.startswith("v1.32.")
    # A 1.32 server knows no field added later (this one arrived after 1.32).
    pod_spec = schemas.definitions()["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert "containers" in pod_spec and "evictionResponders" not in pod_spec


def test_names_by_gvk() -> None:
    names = schemas.names_by_gvk()
    assert names[("", "v1", "Service")] == "io.k8s.api.core.v1.Service"
    assert names[("apps", "v1", "Deployment")] == "io.k8s.api.apps.v1.Deployment"
