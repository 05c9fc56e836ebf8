"""Test images built in pure Python, for tests that need real container images offline.

No public registry is reachable from the tests, so their images are made here from files already
on the host (Debian's static busybox) with the deterministic OCI layout builder
(`pocketkube.util.oci_layout`); skopeo pushes such a layout to the local registry
(`pocketkube.testing.registry`). Same inputs, same digests: `busybox_image()` and `pause_image()`
cache their layouts under `~/.cache/pocketkube/test-images/<name>-<hash of the inputs>`; a cached
entry is verified (every blob against its digest) before it is reused, and rebuilt when corrupt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pocketkube.agent.runtime.pause import PAUSE_SCRIPT, PAUSE_USER, pause_files
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

BUSYBOX = Path("/bin/busybox")
BUSYBOX_HINT = "Debian's static busybox (apt-get install busybox-static)"

def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pocketkube" / "test-images"


def _input_key(spec: dict) -> str:
    """A short hash of a recipe's inputs (file contents included) naming its cache entry."""
    h = hashlib.sha256(_canonical_json({"format": FORMAT_VERSION, **spec}))
    return h.hexdigest()[:16]


def cached_image(*, name: str, key_inputs: dict, build: Callable[[], dict],
                 cache: Path | None = None) -> BuiltImage:
    """The layout for these inputs from the cache, built (atomically: into a temp dir, then
    renamed) when it is absent or fails `verify_layout`. `build()` gives `build_image`'s keyword
    arguments but `name` and `out_dir`; it is called only on a cache miss. `key_inputs` must
    cover everything it depends on (file contents by digest)."""
    root = cache or cache_root()
    target = root / f"{name}-{_input_key({'name': name, **key_inputs})}"
    if target.exists():
        try:
            return verify_layout(target)
        except LayoutError:
            shutil.rmtree(target)  # corrupt: rebuilt below rather than trusted
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build_image(name=name, out_dir=staging / "layout", **build())
        try:
            (staging / "layout").rename(target)
        except OSError:
            if not target.exists():  # lost a race to a concurrent build: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return verify_layout(target)


def _busybox() -> bytes:
    if not os.access(BUSYBOX, os.X_OK):
        raise ImageBuildError(f"{BUSYBOX} not found: install {BUSYBOX_HINT}")
    return BUSYBOX.read_bytes()


def have_busybox() -> bool:
    return os.access(BUSYBOX, os.X_OK)


def busybox_applets() -> list[str]:
    """The applet paths the host busybox provides (`busybox --list-full`: "bin/sh", "usr/bin/nc"...)."""
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip() not in ("", "bin/busybox", "linuxrc"))


PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def busybox_files(binary: bytes, applets: Sequence[str]) -> dict[str, FileSpec]:
    """A busybox root: the binary, every applet as a symlink to it, /etc/passwd and /etc/group
    (runAsUser and `id` need them), a sticky /tmp."""
    files: dict[str, FileSpec] = {"/bin/busybox": Content(binary, 0o755),
                                  "/etc/passwd": PASSWD, "/etc/group": GROUP,
                                  "/tmp": Directory(0o1777), "/root": Directory(0o700)}
    for applet in applets:
        files["/" + applet] = Symlink("/bin/busybox")
    return files


def busybox_image(*, tag: str = "latest", cache: Path | None = None) -> BuiltImage:
    """`busybox:<tag>`: the host's static busybox with all its applets (sh, sleep, echo, cat,
    wget, nc, httpd...), Cmd ["sh"]. Cached; needs busybox-static. (Busybox `wget` was seen to
    segfault inside pods, containers.md §5.3: tests should fetch with `nc`.)"""
    binary = _busybox()
    return cached_image(
        name="busybox", cache=cache,
        key_inputs={"tag": tag, "busybox": sha256_digest(binary)},
        build=lambda: {"tag": tag, "files": busybox_files(binary, busybox_applets()), "cmd": ["sh"]})


def pause_image(*, tag: str = "latest", cache: Path | None = None) -> BuiltImage:
    """`pause:<tag>`, the sandbox image containerd starts first in every pod (the agent builds the
    same image for its own containerd: `pocketkube.agent.runtime.pause`)."""
    binary = _busybox()
    return cached_image(
        name="pause", cache=cache,
        key_inputs={"tag": tag, "busybox": sha256_digest(binary), "script": PAUSE_SCRIPT, "user": PAUSE_USER},
        build=lambda: {"tag": tag, **pause_files(binary)})
