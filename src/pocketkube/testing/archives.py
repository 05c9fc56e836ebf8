"""Image archives for `pocketkube image load` tests and its bench, written in pure Python.

Two formats, as users make them:
- an OCI archive: an OCI image layout (`pocketkube.testing.images`) in a tar, what
  `skopeo copy ... oci-archive:F:REF` or `docker buildx --output type=oci` write;
- a `docker save` archive (docker.v1.2): `manifest.json` naming the config and the layers,
  which are stored uncompressed as `<id>/layer.tar`, and a `repositories` file.

Members are sorted, owned by 0:0 with mtime 0, so the same inputs give the same bytes.
`random_layer` gives deterministic incompressible content (the bench's ~75 MB image).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from pocketkube.util.oci_layout import (  # noqa: F401 (re-exported)
    CONTAINERD_IMAGE_NAME,
    _architecture,
    _canonical_json,
    oci_archive,
    sha256_digest,
    tar_add,
)


def _layout_image(layout: Path) -> tuple[bytes, list[bytes]]:
    """The config and the uncompressed layer tars of a one-image OCI layout."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].removeprefix("sha256:")).read_bytes())
    config = (blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes()
    layers = []
    for desc in manifest["layers"]:
        data = (blobs / desc["digest"].removeprefix("sha256:")).read_bytes()
        layers.append(gzip.decompress(data) if desc["mediaType"].endswith("+gzip") else data)
    return config, layers


def docker_archive_from_layers(out: str | os.PathLike, *, config: bytes, layers: Sequence[bytes],
                               repo_tags: Sequence[str]) -> Path:
    """A `docker save` archive at `out` of the image with this `config` and uncompressed
    `layers`, tagged `repo_tags` ("name:tag", as docker writes them: short names allowed)."""
    out = Path(out)
    layer_names = []
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        tar_add(tar, config_name, config)
        for layer in layers:
            layer_id = hashlib.sha256(layer).hexdigest()
            tar_add(tar, layer_id)
            tar_add(tar, f"{layer_id}/VERSION", b"1.0")
            tar_add(tar, f"{layer_id}/layer.tar", layer)
            layer_names.append(f"{layer_id}/layer.tar")
        manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
        tar_add(tar, "manifest.json", json.dumps(manifest).encode())
        repositories: dict[str, dict[str, str]] = {}
        for tag in repo_tags:
            repo, _, t = tag.rpartition(":")
            repositories.setdefault(repo, {})[t] = layer_names[-1].split("/")[0] if layer_names else ""
        tar_add(tar, "repositories", json.dumps(repositories).encode())
    return out


def docker_archive(layout: str | os.PathLike, out: str | os.PathLike, *, repo_tags: Sequence[str]) -> Path:
    """The one image of OCI `layout` as a `docker save` archive at `out`, tagged `repo_tags`."""
    config, layers = _layout_image(Path(layout))
    return docker_archive_from_layers(out, config=config, layers=layers, repo_tags=repo_tags)


def random_layer(size: int, *, seed: int = 0, files: int = 4) -> bytes:
    """An uncompressed layer tar of `files` files under /data holding `size` bytes in all of
    deterministic pseudo-random (incompressible) content."""
    rng = random.Random(seed)
    buf = io.BytesIO()
    per_file = size // files
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar_add(tar, "data")
        for i in range(files):
            tar_add(tar, f"data/blob-{i}", rng.randbytes(per_file))
    return buf.getvalue()


def image_config(layers: Iterable[bytes], *, cmd: Sequence[str] = ("sh",)) -> bytes:
    """An image config for these uncompressed `layers` (their diff IDs), as images.image_blobs writes."""
    return _canonical_json({
        "architecture": _architecture(), "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
    })

