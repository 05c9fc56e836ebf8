"""OCI image layouts built in pure Python: deterministic single-layer images from files.

An OCI image layout (image-spec `image-layout.md`) is `oci-layout`, `index.json` and
`blobs/sha256/` holding here one gzip layer, the image config and the manifest; containerd imports
it as an OCI archive and skopeo reads it as `oci:DIR:TAG`. Builds are deterministic: tar entries
are sorted, owned by 0:0 with a fixed mtime, and the gzip header carries no name or time, so the
same inputs always give the same digests (which lets callers cache layouts by their inputs).
`image_blobs` is the pure part (inputs → bytes); `build_image` writes them; `verify_layout`
checks a layout before it is trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Bump when the layout the builder writes changes, so cached layouts are not reused.
FORMAT_VERSION = 1
MTIME = 0  # every tar entry's mtime, and the config's `created`: the epoch, for determinism
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"



class ImageBuildError(ValueError):
    """Bad input to `build_image`, or a missing host file; the message says what to fix."""


class LayoutError(ValueError):
    """An OCI layout that is incomplete or whose blobs do not match their digests."""


@dataclass(frozen=True)
class Content:
    """A regular file given by its bytes, with its mode."""
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Directory:
    mode: int = 0o755


FileSpec = str | os.PathLike | bytes | Content | Symlink | Directory


@dataclass(frozen=True)
class BuiltImage:
    """What `build_image` wrote: the layout directory and the digests a test compares with."""
    layout: Path
    tag: str
    manifest_digest: str
    config_digest: str


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _image_path(path: str) -> str:
    """`path` as a relative tar member name ("bin/sh"), or ImageBuildError."""
    if not isinstance(path, str) or not path.strip("/"):
        raise ImageBuildError(f"files: image path {path!r} must be a non-empty absolute path like '/bin/sh'")
    pure = PurePosixPath("/" + path.lstrip("/"))
    if ".." in pure.parts:
        raise ImageBuildError(f"files: image path {path!r} must not contain '..'")
    return str(pure)[1:]


def _resolve(path: str, spec: object) -> Content | Symlink | Directory:
    """One `files` value as Content/Symlink/Directory, reading a host file; ImageBuildError when
    the value is of no known kind or names no readable regular file."""
    if isinstance(spec, Content | Directory) and not 0 <= spec.mode <= 0o7777:
        raise ImageBuildError(f"files[{path!r}]: mode {spec.mode:#o} is not a file mode (0 to 0o7777)")
    if isinstance(spec, Content | Symlink | Directory):
        return spec
    if isinstance(spec, bytes):
        return Content(spec)
    if isinstance(spec, str | os.PathLike):
        host = Path(spec)
        if not host.is_file():
            raise ImageBuildError(f"files[{path!r}]: host file {str(host)!r} does not exist or is not a "
                                  "regular file (give bytes for inline content)")
        mode = 0o755 if os.access(host, os.X_OK) else 0o644
        return Content(host.read_bytes(), mode)
    raise ImageBuildError(f"files[{path!r}]: expected a host path, bytes, Content, Symlink or Directory, "
                          f"not {type(spec).__name__}")


def _entries(files: Mapping[str, FileSpec]) -> dict[str, Content | Symlink | Directory]:
    """Every tar member by name, with the parent directories the files imply (mode 0755)."""
    entries: dict[str, Content | Symlink | Directory] = {}
    for path, spec in files.items():
        name = _image_path(path)
        if name in entries:
            raise ImageBuildError(f"files: image path {path!r} is given twice")
        entries[name] = _resolve(path, spec)
    for name in list(entries):
        for parent in PurePosixPath(name).parents:
            parent_name = str(parent)
            if parent_name == ".":
                continue
            existing = entries.setdefault(parent_name, Directory())
            if not isinstance(existing, Directory):
                raise ImageBuildError(f"files: {'/' + parent_name!r} is a file but {'/' + name!r} is under it")
    return entries


def layer_tar(files: Mapping[str, FileSpec]) -> bytes:
    """The uncompressed layer: sorted members, all owned by root (0:0), fixed mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in sorted(_entries(files).items()):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = MTIME
            if isinstance(entry, Directory):
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
                tar.addfile(info)
            elif isinstance(entry, Symlink):
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
                tar.addfile(info)
            else:
                info.mode, info.size = entry.mode, len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    # No file name and mtime 0 in the header: the same tar always gives the same blob.
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def image_blobs(*, tag: str, files: Mapping[str, FileSpec], entrypoint: Sequence[str] = (),
                cmd: Sequence[str] = (), env: Sequence[str] = (DEFAULT_PATH,), workdir: str = "/",
                user: str = "") -> tuple[dict[str, bytes], dict]:
    """The pure part of `build_image`: every blob by digest, and the index.json document."""
    for field, value in (("entrypoint", entrypoint), ("cmd", cmd), ("env", env)):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ImageBuildError(f"{field} must be a list of strings, not {value!r}")
    if any("=" not in e for e in env):
        raise ImageBuildError(f"env entries must be NAME=value, got {list(env)!r}")
    if not workdir.startswith("/"):
        raise ImageBuildError(f"workdir {workdir!r} must be an absolute path")
    if not tag or "/" in tag or ":" in tag:
        raise ImageBuildError(f"tag {tag!r} must be a plain tag like 'latest'")
    tar = layer_tar(files)
    layer = _gzip(tar)
    runtime: dict = {"Env": list(env), "WorkingDir": workdir}
    if entrypoint:
        runtime["Entrypoint"] = list(entrypoint)
    if cmd:
        runtime["Cmd"] = list(cmd)
    if user:
        runtime["User"] = user
    config = _canonical_json({
        "architecture": _architecture(), "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "pocketkube.testing.images"}],
    })
    manifest = _canonical_json({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": sha256_digest(layer), "size": len(layer)}],
    })
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [{
        "mediaType": MEDIA_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
        "annotations": {REF_NAME: tag}}]}
    blobs = {sha256_digest(b): b for b in (layer, config, manifest)}
    return blobs, index


def build_image(*, name: str, tag: str = "latest", files: Mapping[str, FileSpec],
                entrypoint: Sequence[str] = (), cmd: Sequence[str] = (),
                env: Sequence[str] = (DEFAULT_PATH,), workdir: str = "/", user: str = "",
                out_dir: str | os.PathLike) -> Path:
    """Write an OCI image layout of one layer holding `files` to `out_dir` (absent or empty) and
    return its path. `files` maps an absolute path in the image to a host path (its bytes, mode
    0755 if executable else 0644), bytes (mode 0644), Content, Symlink or Directory; parents are
    added as 0755 directories. `name` only labels errors; the layout's tag is `tag`."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImageBuildError(f"image {name!r}: out_dir {str(out)!r} must be absent or an empty directory")
    try:
        blobs, index = image_blobs(tag=tag, files=files, entrypoint=entrypoint, cmd=cmd, env=env,
                                   workdir=workdir, user=user)
    except ImageBuildError as e:
        raise ImageBuildError(f"image {name!r}: {e}") from None
    blob_dir = out / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest, data in blobs.items():
        (blob_dir / digest.removeprefix("sha256:")).write_bytes(data)
    (out / "oci-layout").write_bytes(_canonical_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(_canonical_json(index))
    return out


def _blob(layout: Path, descriptor: dict) -> bytes:
    digest = descriptor.get("digest", "")
    if not digest.startswith("sha256:"):
        raise LayoutError(f"{layout}: unsupported digest {digest!r}")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LayoutError(f"{layout}: blob {digest} unreadable: {e}") from None
    if sha256_digest(data) != digest or len(data) != descriptor.get("size"):
        raise LayoutError(f"{layout}: blob {digest} does not match its digest or size")
    return data


def verify_layout(layout: str | os.PathLike) -> BuiltImage:
    """Check an OCI layout of one single-manifest image (what `build_image` writes): every blob
    it references exists and matches its digest and size. Returns its digests, or LayoutError."""
    path = Path(layout)
    try:
        json.loads((path / "oci-layout").read_bytes())
        index = json.loads((path / "index.json").read_bytes())
        [desc] = index["manifests"]
        manifest = json.loads(_blob(path, desc))
        config_desc = manifest["config"]
        _blob(path, config_desc)
        for layer in manifest["layers"]:
            _blob(path, layer)
    except LayoutError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LayoutError(f"{path}: not a valid single-image OCI layout: {e!r}") from None
    return BuiltImage(layout=path, tag=desc.get("annotations", {}).get(REF_NAME, ""),
                      manifest_digest=desc["digest"], config_digest=config_desc["digest"])


# containerd's own annotation for a full image name in an OCI index (ref.name may be a bare tag).
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"


def tar_add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, path: Path | None = None) -> None:
    """One archive member owned by root with mtime 0: a directory (no data), bytes, or a file's content."""
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if data is None and path is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    if path is not None:
        info.size = path.stat().st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def oci_archive(layout: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None) -> Path:
    """`layout` (an OCI image layout of one image) as an OCI archive at `out`. With `name` (a
    full reference such as "docker.io/library/foo:1"), the index names it as containerd and
    skopeo do (ref.name and io.containerd.image.name); without, it keeps the layout's own
    ref.name (often a bare tag)."""
    src = Path(layout)
    index = json.loads((src / "index.json").read_bytes())
    if name is not None:
        for desc in index["manifests"]:
            desc.setdefault("annotations", {}).update({REF_NAME: name, CONTAINERD_IMAGE_NAME: name})
    out = Path(out)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar_add(tar, "oci-layout", (src / "oci-layout").read_bytes())
        tar_add(tar, "index.json", _canonical_json(index))
        tar_add(tar, "blobs")
        tar_add(tar, "blobs/sha256")
        for blob in sorted((src / "blobs" / "sha256").iterdir()):
            tar_add(tar, f"blobs/sha256/{blob.name}", path=blob)
    return out
