"""Test images built in pure Python, for tests that need real container images offline.

No public registry is reachable from the tests, so their images are made here from files already
on the host (Debian's static busybox) with the deterministic OCI layout builder
(`pocketkube.util.oci_layout`); skopeo pushes such a layout to the local registry
(`pocketkube.testing.registry`). Same inputs, same digests: `busybox_image()` and `pause_image()`
cache their layouts under `~/.cache/pocketkube/test-images/<name>-<hash of the inputs>`; a cached
entry is verified (every blob against its digest) before it is reused, and rebuilt when corrupt.
"""

from __future__ import annotations

from pathlib import Path

from pocketkube.agent.runtime.pause import PAUSE_SCRIPT, PAUSE_USER, pause_files
from pocketkube.host_images import (  # noqa: F401 (re-exported: the tests' one import for images)
    BUSYBOX,
    BUSYBOX_HINT,
    GROUP,
    PASSWD,
    _busybox,
    busybox_applets,
    busybox_files,
    busybox_image,
    cache_root,
    cached_image,
    have_busybox,
)
from pocketkube.util.oci_layout import (  # noqa: F401 (re-exported: the tests' one import for images)
    DEFAULT_PATH,
    FORMAT_VERSION,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    MTIME,
    REF_NAME,
    BuiltImage,
    Content,
    Directory,
    FileSpec,
    ImageBuildError,
    LayoutError,
    Symlink,
    _canonical_json,
    build_image,
    image_blobs,
    layer_tar,
    sha256_digest,
    verify_layout,
)


def pause_image(*, tag: str = "latest", cache: Path | None = None) -> BuiltImage:
    """`pause:<tag>`, the sandbox image containerd starts first in every pod (the agent builds the
    same image for its own containerd: `pocketkube.agent.runtime.pause`)."""
    binary = _busybox()
    return cached_image(
        name="pause", cache=cache,
        key_inputs={"tag": tag, "busybox": sha256_digest(binary), "script": PAUSE_SCRIPT, "user": PAUSE_USER},
        build=lambda: {"tag": tag, **pause_files(binary)})
