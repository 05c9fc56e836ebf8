"""Test images of real programs (nginx, python) made from this host's Debian packages.

No public registry is reachable, so `nginx:latest` and `python:3` for the container-mode tests
are assembled from the host's own binaries: the program, the shared libraries `ldd` lists (and
the dynamic loader), and the few files the program needs. The images behave as the official ones
do where tests look — nginx serves its welcome page on port 80 from `nginx -g 'daemon off;'`,
python's `python3 -m http.server` works — but are not copies of them. Built with the same
deterministic, cached builder as the busybox images (`pocketkube.testing.images`).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from pocketkube.testing.images import (
    BuiltImage,
    Content,
    Directory,
    FileSpec,
    ImageBuildError,
    Symlink,
    _busybox,
    busybox_applets,
    busybox_files,
    cached_image,
    sha256_digest,
)

NGINX = Path("/usr/sbin/nginx")
PYTHON = Path("/usr/bin/python3")
_LDD_PATH = re.compile(r"(/\S+)")

# As the official image's: the master runs as root, workers as nginx's compiled-in `nobody`.
PASSWD = (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = b"root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n"

NGINX_CONF = b"""# pocketkube test image: nginx as the official image runs it (port 80, logs to stdout/stderr).
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
    files.update({"/etc/passwd": PASSWD, "/etc/group": GROUP})
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
