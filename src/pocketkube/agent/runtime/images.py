"""The local image catalog: what an image reference means for the process runtime.

An image is not pulled; it names a program on this host. A container with a `command` (or
`args`) runs exactly that, whatever its image. Without one, the image must be in the catalog:
`nginx` runs the host's nginx with a generated config listening on the pod IP; `busybox` and
`python` run their default shells as the real images would; `pause` sleeps.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

NGINX = "/usr/sbin/nginx"
MIME_TYPES = "/etc/nginx/mime.types"
DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str
    digest: str = ""

    @property
    def name(self) -> str:
        """The short name the catalog knows (last path component): `nginx` for docker.io/library/nginx."""
        return self.repository.rsplit("/", 1)[-1]

    def normalized(self) -> str:
        """As containerd reports it: docker.io/library/nginx:latest (or @digest)."""
        base = f"{self.registry}/{self.repository}"
        return f"{base}@{self.digest}" if self.digest and not self.tag else f"{base}:{self.tag}"


def parse_image(ref: str) -> ImageRef:
    digest = ""
    m = _DIGEST.search(ref)
    if m:
        digest, ref = m.group(1), ref[:m.start()]
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, ref
    tag = ""
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if not tag and not digest:
        tag = "latest"
    return ImageRef(registry, path, tag, digest)


class ImageNotRunnable(Exception):
    """The image names nothing this host can run (the container waits with ErrImagePull)."""


@dataclass
class Launch:
    """How to run a container: argv (before $(VAR) expansion), files and writable dirs to create."""

    argv: list[str]
    image_id: str
    files: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)


CATALOG_DEFAULTS: dict[str, list[str]] = {
    "busybox": ["sh"],
    "python": ["python3"],
    "pause": ["sleep", "infinity"],
}
KNOWN = sorted([*CATALOG_DEFAULTS, "nginx"])


def resolve(container: dict, pod_ip: str) -> Launch:
    image = container.get("image") or ""
    ref = parse_image(image)
    command, args = container.get("command") or [], container.get("args") or []
    if command or args:
        # An explicit command replaces the image's entrypoint; args alone act as the command, as
        # for every catalog image (their entrypoints only exec their arguments).
        return Launch([*command, *args], _image_id(ref, command[0] if command else args[0]))
    if ref.name == "nginx":
        return nginx_launch(ref, container, pod_ip)
    if ref.name in CATALOG_DEFAULTS:
        argv = list(CATALOG_DEFAULTS[ref.name])
        return Launch(argv, _image_id(ref, argv[0]))
    raise ImageNotRunnable(f'image "{image}" cannot be run locally by pocketkube: no local catalog entry '
                           f'(known: {", ".join(KNOWN)}; or give the container a command)')


def _image_id(ref: ImageRef, program: str) -> str:
    return f"pocketkube-catalog://{ref.registry}/{ref.repository}={program}"


def nginx_launch(ref: ImageRef, container: dict, pod_ip: str) -> Launch:
    if not os.access(NGINX, os.X_OK):
        raise ImageNotRunnable(f'image "{container.get("image")}" cannot be run locally by pocketkube: '
                               f"{NGINX} is not installed here (apt-get install nginx-light)")
    ports = [p["containerPort"] for p in container.get("ports") or []
             if (p.get("protocol") or "TCP") == "TCP" and p.get("containerPort")] or [80]
    # Relative paths (prefix ./ = the container dir): the data dir's parents may not be
    # traversable by the unprivileged container user, but its working directory always is.
    argv = [NGINX, "-p", "./", "-c", "nginx/nginx.conf", "-e", "stderr", "-g", "daemon off;"]
    return Launch(argv, _image_id(ref, NGINX),
                  files={"nginx/nginx.conf": nginx_config(pod_ip, ports),
                         "nginx/html/index.html": WELCOME_PAGE, "nginx/html/50x.html": ERROR_PAGE},
                  dirs=["nginx/run", "nginx/tmp"])


def nginx_config(pod_ip: str, ports: list[int]) -> str:
    listens = "\n".join(f"        listen {pod_ip}:{p};" for p in sorted(set(ports)))
    mime = f"    include {MIME_TYPES};\n" if os.path.exists(MIME_TYPES) else ""
    temp = "\n".join(f"    {kind}_temp_path nginx/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# Generated by pocketkube for this container; rewritten at every start.
worker_processes 1;
pid nginx/run/nginx.pid;
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
{mime}    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" "$http_user_agent"';
    access_log /dev/stdout main;
    sendfile on;
    keepalive_timeout 65;
{temp}

    server {{
{listens}
        server_name localhost;
        root nginx/html;
        index index.html;
        error_page 500 502 503 504 /50x.html;
    }}
}}
"""


WELCOME_PAGE = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
body { max-width: 40em; margin: 2em auto; font-family: sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>This nginx is answering from a pocketkube pod: a real process on this host,
listening on the pod's own IP address.</p>
<p>Replace this page by giving the container your own content.</p>
</body>
</html>
"""

ERROR_PAGE = """<!DOCTYPE html>
<html>
<head><title>Error</title></head>
<body>
<h1>An error occurred.</h1>
<p>The page you are looking for is currently unavailable.</p>
</body>
</html>
"""
