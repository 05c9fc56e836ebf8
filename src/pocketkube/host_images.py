"""Images made from this host's Debian packages: busybox, nginx and python, without a registry.

No registry may be reachable (an offline laptop, CI), yet a learner's first manifests say
`image: nginx` and the tests need real images. These recipes assemble small images from the
host's own files — the program, the shared libraries `ldd` lists and the loader, the few files it
needs — with the deterministic OCI builder (`pocketkube.util.oci_layout`). They behave as the
official images do where it matters (nginx serves its welcome page on port 80 from `nginx -g
'daemon off;'`, `python3 -m http.server` works, busybox has its applets) but are not copies of
them. `pocketkube image load --from-host NAME` loads one into every node; the tests use them too.

Layouts are cached under `~/.cache/pocketkube/images/<name>-<hash of the inputs>` (same inputs,
same digests); a cached entry is verified, blob by blob, before it is reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pocketkube.util.oci_layout import (
    FORMAT_VERSION,
    BuiltImage,
    Content,
    Directory,
    FileSpec,
    ImageBuildError,
    LayoutError,
    Symlink,
    _canonical_json,
    build_image,
    sha256_digest,
    verify_layout,
)

BUSYBOX = Path("/bin/busybox")
BUSYBOX_HINT = "Debian's static busybox (apt-get install busybox-static)"

def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pocketkube" / "images"


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


_LDD_PATH = re.compile(r"(/\S+)")
NGINX = Path("/usr/sbin/nginx")
PYTHON = Path("/usr/bin/python3")
# As the official image's: the master runs as root, workers as nginx's compiled-in `nobody`.
NGINX_PASSWD = (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
NGINX_GROUP = b"root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n"

NGINX_CONF = b"""# pocketkube host image: nginx as the official image runs it (port 80, logs to stdout/stderr).
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    server {
        listen 80;
        server_name localhost;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""
WELCOME = b"""<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
</body>
</html>
"""


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the libraries (and loader) `binary` needs, per ldd."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ImageBuildError(f"ldd {binary} failed: {e}") from None
    libs = []
    for line in out.splitlines():
        m = _LDD_PATH.search(line.split("=>")[-1])
        if m:
            libs.append(m.group(1))
    return sorted(set(libs))


def _with_libraries(files: dict[str, FileSpec], *binaries: Path) -> dict[str, FileSpec]:
    for binary in binaries:
        for lib in shared_libraries(binary):
            real = os.path.realpath(lib)
            files[real] = Path(real)
            if real != lib:
                files[lib] = Symlink(real)
    return files


def _need(path: Path, package: str) -> bytes:
    if not os.access(path, os.X_OK):
        raise ImageBuildError(f"{path} not found: install Debian's {package}")
    return path.read_bytes()


def _busybox_base() -> dict[str, FileSpec]:
    """A shell and the usual tools (the official images have them too), plus passwd and group."""
    files = busybox_files(_busybox(), busybox_applets())
    files.update({"/etc/passwd": NGINX_PASSWD, "/etc/group": NGINX_GROUP})
    return files


def nginx_image(*, tag: str = "latest", cache: Path | None = None) -> BuiltImage:
    """`nginx:<tag>`: the host's nginx (nginx-light) serving a welcome page on port 80."""
    binary = _need(NGINX, "nginx-light")
    mime = Path("/etc/nginx/mime.types")

    def build() -> dict:
        files = _busybox_base()
        files.update({"/usr/sbin/nginx": Content(binary, 0o755), "/etc/nginx/nginx.conf": NGINX_CONF,
                      "/usr/share/nginx/html/index.html": WELCOME, "/var/lib/nginx": Directory(),
                      "/var/log/nginx": Directory(), "/run": Directory()})
        if mime.exists():
            files["/etc/nginx/mime.types"] = mime
        return {"tag": tag, "files": _with_libraries(files, NGINX), "cmd": ["nginx", "-g", "daemon off;"],
                "env": ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)}
    return cached_image(name="nginx", cache=cache, build=build,
                        key_inputs={"tag": tag, "nginx": sha256_digest(binary), "conf": sha256_digest(NGINX_CONF),
                                    "busybox": sha256_digest(_busybox())})


def python_image(*, tag: str = "3", cache: Path | None = None) -> BuiltImage:
    """`python:<tag>`: the host's python3 with its standard library (no tests, no caches)."""
    binary = _need(PYTHON, "python3")
    version = subprocess.run([str(PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    stdlib = Path(f"/usr/lib/python{version}")

    def build() -> dict:
        files = _busybox_base()
        real = os.path.realpath(PYTHON)
        files[real] = Path(real)
        files["/usr/bin/python3"] = Symlink(real)
        files["/usr/bin/python"] = Symlink(real)
        for path in sorted(stdlib.rglob("*")):
            rel = path.relative_to(stdlib).parts
            if "__pycache__" in rel or (rel and rel[0] in ("test", "idlelib", "tkinter", "site-packages",
                                                             "dist-packages", "ensurepip", "lib2to3")):
                continue
            if path.is_symlink():
                files[str(path)] = Symlink(os.readlink(path))
            elif path.is_file():
                files[str(path)] = path
        extensions = sorted((stdlib / "lib-dynload").glob("*.so"))
        return {"tag": tag, "files": _with_libraries(files, PYTHON, *extensions), "cmd": ["python3"],
                "env": ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",)}
    return cached_image(name="python", cache=cache, build=build,
                        key_inputs={"recipe": 2, "tag": tag, "python": sha256_digest(binary), "version": version,
                                    "busybox": sha256_digest(_busybox())})


# What `pocketkube image load --from-host NAME` builds, and the reference it is loaded as.
RECIPES: dict[str, tuple[Callable[..., BuiltImage], str]] = {
    "nginx": (nginx_image, "docker.io/library/nginx:latest"),
    "busybox": (busybox_image, "docker.io/library/busybox:latest"),
    "python": (python_image, "docker.io/library/python:3"),
}
