"""`pocketkube image load FILE.tar...` and `pocketkube image ls`: images on every node, no registry.

`load` does what `kind load image-archive` does, with containerd's own importer: for every node
`<data>/nodes/<node>/` whose private containerd serves `<node>/containerd/containerd.sock`
(spec9's node layout), `ctr -n k8s.io images import` of each archive, all nodes at once. Namespace
`k8s.io` is CRI's, so the kubelet sees the images (ListImages/ImageStatus) as soon as they are in.
Flags, as kind's nodeutils.LoadImageArchive: `--all-platforms` (a multi-platform archive is stored
whole, so its index stays complete), `--digests --skip-digest-for-named` (an image the archive
does not name still gets a name, `import-<date>@sha256:...`, so containerd's GC keeps it; named
ones get no extra digest name), `--snapshotter overlayfs` (what our CRI config uses: containers
start from the snapshots unpacked here). Unpacking stays on although `--no-unpack` would be safe
(checked: CRI 1.6's CreateContainer/RunPodSandbox unpack a missing snapshot on demand,
pkg/cri/opts.WithNewSnapshot) and ~25 % cheaper (bench/image_load.py): skipped, that cost moves
into pod start-up, and every pod a node creates at once from the image would unpack the same
layers again until the first commits.
Then each loaded image is pinned (`io.cri-containerd.pinned=pinned`, as k3s pins its imports and
kind its base images): containerd 1.7+ reports it to the kubelet, whose image GC then keeps it (a
loaded image is often the only copy, e.g. offline). containerd 1.6's CRI ignores the label.

Archives: `docker save` (docker.v1.x) and OCI archives, and either gzip-compressed (ctr 1.6 reads
only plain tar: a .gz is decompressed once to a temp file beside the cluster's data).

Every failure is one line and exit code 1: a missing or unreadable file, a file that is not an
image archive (checked up front from its first block: a tar header or gzip magic; what ctr finds
later, such as a truncated tar, is reported in its words), no cluster at the data dir, a cluster
on the process runtime, a node whose containerd is not running.

`ls` asks each node's CRI ImageService (ListImages) and prints one row per image name, as
`crictl images` does, with the nodes holding it. The table is a pure function (`image_rows`,
`format_table`).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent.runtime.containerd import ContainerdError, import_archive

_GZIP_MAGIC = b"\x1f\x8b"
_TAR_BLOCK = 512


class ImageCommandError(Exception):
    """A failure the CLI prints as one line (`pocketkube: image ...: <message>`) with exit 1."""


@dataclass(frozen=True)
class Node:
    name: str
    socket: Path


# --- pure parts ------------------------------------------------------------------------------


def natural_key(name: str) -> list:
    """node-2 before node-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def archive_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is: "gzip", "tar" (a header block whose checksum
    holds), or None (not an image archive)."""
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if len(head) < _TAR_BLOCK:
        return None
    block = head[:_TAR_BLOCK]
    if block == bytes(_TAR_BLOCK):
        return None  # an end-of-archive marker first: an empty tar
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return None
    # The header checksum: every byte summed with the checksum field read as spaces.
    actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148]) + 8 * 32 + \
        sum(b - 256 if b > 127 else b for b in block[156:])
    return "tar" if stored in (actual, signed) else None


def split_ref(ref: str) -> tuple[str, str]:
    """("docker.io/library/nginx", "1.25") from a tagged reference; a digest ref gives
    (repository, "<none>") as crictl shows it."""
    name = ref.split("@", 1)[0] if "@" in ref else ref
    if "@" in ref:
        return name, "<none>"
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "<none>"


def human_size(size: int) -> str:
    """crictl's SIZE (go-units HumanSizeWithPrecision(size, 3)): decimal units, 3 digits."""
    value, units = float(size), ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while value >= 1000 and i < len(units) - 1:
        value /= 1000
        i += 1
    return f"{value:.3g}{units[i]}"


def short_id(image_id: str) -> str:
    """crictl's IMAGE ID column: the digest without `sha256:`, 13 characters."""
    return image_id.removeprefix("sha256:")[:13]


@dataclass(frozen=True)
class ImageEntry:
    """One image as a node's CRI reports it (the fields of runtime.v1.Image we show)."""
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int


def image_rows(by_node: dict[str, Sequence[ImageEntry]], node_order: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows (IMAGE, TAG, IMAGE ID, SIZE, NODES): one per image name (an image without tags
    shows its digest name with tag <none>), listing the nodes that hold it in `node_order`,
    sorted by name, tag and id."""
    nodes_of: dict[tuple[str, str, str, str], set[str]] = {}
    for node, images in by_node.items():
        for image in images:
            refs = image.repo_tags or image.repo_digests[:1] or ("<none>",)
            for ref in refs:
                repo, tag = split_ref(ref) if ref != "<none>" else ("<none>", "<none>")
                key = (repo, tag, short_id(image.id), human_size(image.size))
                nodes_of.setdefault(key, set()).add(node)
    order = {n: i for i, n in enumerate(node_order)}
    return [(*key, ",".join(sorted(nodes, key=lambda n: order.get(n, len(order)))))
            for key, nodes in sorted(nodes_of.items())]


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, as crictl and kubectl print them."""
    rows = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"


LS_HEADER = ("IMAGE", "TAG", "IMAGE ID", "SIZE", "NODES")


# --- finding the cluster ---------------------------------------------------------------------


def find_nodes(data_dir: Path) -> list[Node]:
    """The nodes under `data_dir`/nodes that run containerd; ImageCommandError when there is no
    cluster or it runs the process runtime."""
    nodes_dir = data_dir / "nodes"
    names = sorted((p.name for p in nodes_dir.iterdir() if p.is_dir()), key=natural_key) \
        if nodes_dir.is_dir() else []
    if not names:
        raise ImageCommandError(f"no pocketkube cluster at {data_dir} (no nodes in {nodes_dir}): "
                                "start one with `pocketkube up`, or name its directory with --data-dir")
    nodes = [Node(n, nodes_dir / n / "containerd" / "containerd.sock") for n in names]
    if not any(node.socket.parent.is_dir() for node in nodes):
        raise ImageCommandError(f"the cluster at {data_dir} runs the process runtime, which runs no images: "
                                "images need `pocketkube up --runtime containerd`")
    return nodes


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def check_running(nodes: Sequence[Node]) -> None:
    """ImageCommandError naming every node whose containerd does not accept connections (a
    stale socket would make ctr wait for its dial timeout)."""
    down = [n.name for n in nodes if not _answers(n.socket)]
    if down:
        verb = "is" if len(down) == 1 else "are"
        raise ImageCommandError(f"containerd of {', '.join(down)} {verb} not running "
                                f"(nothing answers on {nodes[0].socket.name} there): is the cluster up?")


# --- load ------------------------------------------------------------------------------------


def check_archive(path: Path) -> str:
    """The archive's kind ("tar" or "gzip"), or ImageCommandError for a missing, unreadable or
    non-archive file."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ImageCommandError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(_TAR_BLOCK)
    except FileNotFoundError:
        raise ImageCommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageCommandError(f"{path}: is a directory, not an image archive") from None
    except OSError as e:
        raise ImageCommandError(f"{path}: cannot read: {e.strerror or e}") from None
    kind = archive_kind(head)
    if kind is None:
        raise ImageCommandError(f"{path}: not an image archive (expected a `docker save` or OCI archive: "
                                "a tar, optionally gzip-compressed)")
    return kind


def _gunzip(src: Path, dest_dir: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".image-load-", suffix=".tar", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as gz:
            shutil.copyfileobj(gz, out, 1 << 20)
        with open(name, "rb") as f:
            if archive_kind(f.read(_TAR_BLOCK)) != "tar":
                raise ImageCommandError(f"{src}: not an image archive (gzip, but not of a tar)")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        os.unlink(name)
        raise ImageCommandError(f"{src}: corrupt gzip: {e}") from None
    except ImageCommandError:
        os.unlink(name)
        raise
    return Path(name)


async def _load_node(node: Node, archives: Sequence[tuple[Path, Path]]) -> dict[Path, list[str] | str]:
    """Import each archive (original path, tar to read) into `node`, pinned.
    Per archive: the image names, or ctr's one-line error."""
    results: dict[Path, list[str] | str] = {}
    for shown, tar in archives:
        try:
            results[shown] = await import_archive(node.socket, tar)
        except ContainerdError as e:
            results[shown] = str(e)
    return results


def load_report(files: Sequence[Path], node_names: Sequence[str],
                results: dict[str, dict[Path, list[str] | str]]) -> tuple[list[str], list[str]]:
    """(stdout lines, error lines) from every node's results: per loaded image the nodes that
    have it; per failure the message once, with the nodes when not all failed alike."""
    out: list[str] = []
    errors: list[str] = []
    for f in files:
        loaded: dict[str, list[str]] = {}
        failed: dict[str, list[str]] = {}
        for node in node_names:
            result = results[node][f]
            if isinstance(result, str):
                failed.setdefault(result, []).append(node)
            else:
                for name in result:
                    loaded.setdefault(name, []).append(node)
        for name, nodes in loaded.items():
            where = "all nodes" if len(nodes) == len(node_names) else ", ".join(nodes)
            out.append(f"Loaded image: {name} ({where})")
            if name.startswith("import-"):
                out.append(f"  note: {f} names no repository for it, only a tag or nothing; name the image "
                           "when saving it (e.g. skopeo copy ... oci-archive:FILE:NAME:TAG)")
        if not loaded and not failed:
            errors.append(f"{f}: no image in the archive")
        for message, nodes in failed.items():
            where = "" if len(nodes) == len(node_names) and not loaded else f" (on {', '.join(nodes)})"
            errors.append(f"{f}: {message}{where}")
    return out, errors


async def load(data_dir: Path, files: Sequence[Path]) -> int:
    kinds = {f: check_archive(f) for f in files}  # every file checked before any node is touched
    nodes = find_nodes(data_dir)
    check_running(nodes)
    if shutil.which("ctr") is None:
        raise ImageCommandError("ctr (containerd's client) not found: apt-get install containerd")
    temps: list[Path] = []
    try:
        archives = []
        for f in files:
            if kinds[f] == "gzip":
                temps.append(await asyncio.to_thread(_gunzip, f, data_dir))
                archives.append((f, temps[-1]))
            else:
                archives.append((f, f))
        per_node = await asyncio.gather(*(_load_node(n, archives) for n in nodes))
    finally:
        for t in temps:
            t.unlink(missing_ok=True)
    out, errors = load_report(files, [n.name for n in nodes], {n.name: r for n, r in zip(nodes, per_node)})
    for line in out:
        print(line)
    for line in errors:
        print(f"pocketkube: image load: {line}", file=sys.stderr)
    return 1 if errors else 0


# --- ls --------------------------------------------------------------------------------------


async def _list_node(node: Node) -> list[ImageEntry] | str:
    from pocketkube.agent.runtime.cri.client import CriClient, CriError

    try:
        async with CriClient(f"unix://{node.socket}", timeout=10.0) as cri:
            images = await cri.list_images()
    except CriError as e:
        return e.message or e.code
    return [ImageEntry(i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size) for i in images]


async def ls(data_dir: Path) -> int:
    nodes = find_nodes(data_dir)
    up = [n for n in nodes if _answers(n.socket)]
    down = [n.name for n in nodes if n not in up]
    results = await asyncio.gather(*(_list_node(n) for n in up))
    by_node = {n.name: r for n, r in zip(up, results) if not isinstance(r, str)}
    failed = [f"{n.name}: {r}" for n, r in zip(up, results) if isinstance(r, str)]
    if by_node:
        sys.stdout.write(format_table(LS_HEADER, image_rows(by_node, [n.name for n in nodes])))
    if down:
        verb = "is" if len(down) == 1 else "are"
        print(f"pocketkube: image ls: containerd of {', '.join(down)} {verb} not running: is the cluster up?",
              file=sys.stderr)
    for line in failed:
        print(f"pocketkube: image ls: {line}", file=sys.stderr)
    return 1 if down or failed else 0


def host_archives(names: Sequence[str], out_dir: Path) -> list[Path]:
    """OCI archives of the host-package images `names` (pocketkube.host_images), named as Docker
    would name the official ones, written to `out_dir`."""
    from pocketkube.host_images import RECIPES
    from pocketkube.util.oci_layout import ImageBuildError, oci_archive

    archives = []
    for name in dict.fromkeys(names):
        recipe, ref = RECIPES[name]
        try:
            layout = recipe().layout
        except (ImageBuildError, OSError) as e:
            raise ImageCommandError(f"cannot build {name} from this host: {e}") from None
        archives.append(oci_archive(layout, out_dir / f"{name}.tar", name=ref))
    return archives


async def run(command: str, data_dir: Path, files: Sequence[Path] = (), from_host: Sequence[str] = ()) -> int:
    """The `pocketkube image` subcommands; every expected failure is one line on stderr, exit 1."""
    try:
        if command == "load":
            if not files and not from_host:
                raise ImageCommandError("give archives to load (FILE...) or --from-host NAME")
            if from_host:
                find_nodes(data_dir)  # no cluster: say so before building anything
                with tempfile.TemporaryDirectory(prefix="pocketkube-images-") as tmp:
                    built = await asyncio.to_thread(host_archives, from_host, Path(tmp))
                    return await load(data_dir, [*files, *built])
            return await load(data_dir, files)
        return await ls(data_dir)
    except ImageCommandError as e:
        print(f"pocketkube: image {command}: {e}", file=sys.stderr)
        return 1

