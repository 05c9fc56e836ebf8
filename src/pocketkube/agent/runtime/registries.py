"""containerd's registry hosts (`certs.d/<host>/hosts.toml`): plain-HTTP registries and docker.io
mirrors, as `up --insecure-registry` / `--registry-mirror` ask.

Pure rendering and checks (the CLI validates its flags with them before anything starts, without
importing gRPC), plus `write_registry_hosts`, which makes the directory hold exactly those files.
Format: https://github.com/containerd/containerd/blob/v1.6.20/docs/hosts.md and
/work/shared/reference/containers.md §5.2.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path


def check_registry_addr(addr: str) -> str:
    """`addr` if it is HOST:PORT (a certs.d directory name), else ValueError saying why."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in addr or any(c.isspace() or c in '"\\' for c in addr):
        raise ValueError(f"registry address {addr!r} must be HOST:PORT, e.g. 127.0.0.1:5000")
    return addr


def render_plain_http_hosts(addr: str) -> str:
    """The `hosts.toml` (in `<registry_config_dir>/<addr>/`) that makes containerd pull from the
    registry at `addr` ("HOST:PORT") over plain HTTP, e.g. a test registry on loopback."""
    check_registry_addr(addr)
    server = json.dumps(f"http://{addr}")
    return f"""\
# Rendered by pocketkube (agent/runtime/registries.py): plain HTTP to {addr}.
server = {server}

[host.{server}]
  capabilities = ["pull", "resolve"]
"""


DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"  # where containerd resolves docker.io


def check_mirror_url(url: str) -> str:
    """`url` ("http[s]://HOST[:PORT][/PATH]") without a trailing slash, or ValueError saying why."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or rest.startswith("/") \
            or any(c.isspace() or c in '"\\' for c in url):
        raise ValueError(f"registry mirror {url!r} must be an http:// or https:// URL, e.g. http://127.0.0.1:5000")
    return url.rstrip("/")


def render_mirror_hosts(mirrors: Iterable[str], server: str = DOCKER_HUB_SERVER) -> str:
    """The `hosts.toml` (in `<registry_config_dir>/docker.io/`) that makes containerd try each
    mirror in order before `server` (as dockerd's --registry-mirror); an http:// mirror is spoken
    to over plain HTTP."""
    lines = ["# Rendered by pocketkube (agent/runtime/registries.py): docker.io through mirrors.",
             f"server = {json.dumps(server)}"]
    for url in mirrors:
        lines += ["", f"[host.{json.dumps(check_mirror_url(url))}]", '  capabilities = ["pull", "resolve"]']
    return "\n".join(lines) + "\n"


def registry_hosts(insecure: Iterable[str] = (), mirrors: Iterable[str] = ()) -> dict[str, str]:
    """certs.d's files: `<host>` directory name -> its hosts.toml, for plain-HTTP registries
    ("HOST:PORT") and docker.io mirrors; ValueError for a malformed one."""
    files = {addr: render_plain_http_hosts(addr) for addr in insecure}
    mirrors = list(mirrors)
    if mirrors:
        files[DOCKER_HUB] = render_mirror_hosts(mirrors)
    return files


def write_registry_hosts(config_dir: str | Path, files: dict[str, str]) -> None:
    """Make `config_dir` hold exactly `files` (from `registry_hosts`): a restarted agent with other
    flags must not keep the previous run's registries."""
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    for d in config_dir.iterdir():
        if d.name not in files and (d / "hosts.toml").is_file():
            (d / "hosts.toml").unlink()
            with contextlib.suppress(OSError):
                d.rmdir()
    for host, text in files.items():
        (config_dir / host).mkdir(exist_ok=True)
        (config_dir / host / "hosts.toml").write_text(text)
