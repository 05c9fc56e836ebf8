"""A throwaway local image registry for tests: Debian's docker-registry on 127.0.0.1.

No public registry is reachable, so tests that pull images serve their own. `local_registry()`
runs `/usr/bin/docker-registry serve` (distribution 2.8) with its config and storage in a fresh
temp dir, bound to a free loopback port over plain HTTP (containerd pulls from it given a
`hosts.toml` from `agent.runtime.containerd.render_plain_http_hosts`, see
tests/integration/test_cri_container.py and /work/shared/reference/containers.md §5.2). It yields
"127.0.0.1:PORT" once `GET /v2/` answers, and on exit stops the registry and removes the dir.

`push(layout, ref)` copies an OCI layout (`pocketkube.testing.images`) into it with skopeo;
`publish_test_images(addr)` pushes the busybox and pause images (the next step's pods). The
child processes get an environment without proxy variables, so nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pocketkube.testing import images

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
REGISTRY_HINT = "Debian's docker-registry (apt-get install docker-registry)"
SKOPEO_HINT = "skopeo (apt-get install skopeo)"
HOST = "127.0.0.1"


class RegistryError(RuntimeError):
    """The registry did not come up, or a push failed; the message carries the tool's output."""


def have_registry() -> bool:
    return os.access(REGISTRY_BINARY, os.X_OK)


def have_skopeo() -> bool:
    return shutil.which("skopeo") is not None


def registry_config(*, addr: str, storage: Path, htpasswd: Path | None = None) -> str:
    """The registry's YAML config (JSON is YAML): filesystem storage, deletes allowed, HTTP on
    `addr`, no debug listener, quiet logs; with `htpasswd`, basic auth against that file."""
    config: dict = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": addr},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "pocketkube-test", "path": str(htpasswd)}}
    return json.dumps(config, indent=2)


def have_bcrypt() -> bool:
    """Whether this Python can write the bcrypt hashes htpasswd needs (its `crypt` module, over
    libxcrypt; gone from Python 3.13)."""
    try:
        return bcrypt_hash("x").startswith("$2")
    except (ImportError, OSError, TypeError):
        return False


def bcrypt_hash(password: str) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the stdlib's, deprecated: fine for a test fixture's htpasswd
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)) or ""


def local_env() -> dict[str, str]:
    """This environment without proxy settings: the tools talk to loopback directly."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in proxies}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=1) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as e:
        return e.code == 401  # up, and wanting credentials
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also anything it left in its group
    except ProcessLookupError:
        pass
    proc.wait()


def _start(tmp: Path, timeout: float, htpasswd: Path | None = None) -> tuple[subprocess.Popen, str] | None:
    """Start the registry on a free port; None when it exited first (the port was taken between
    choosing and binding it), RegistryError when it never answered."""
    addr = f"{HOST}:{_free_port()}"
    config = tmp / "config.yml"
    config.write_text(registry_config(addr=addr, storage=tmp / "storage", htpasswd=htpasswd))
    log = tmp / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=local_env(),
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if "address already in use" in log.read_text(errors="replace"):
                return None
            raise RegistryError(f"docker-registry exited {proc.returncode}: {log.read_text(errors='replace')}")
        if _answers(f"http://{addr}/v2/"):
            return proc, addr
        time.sleep(0.05)
    _stop(proc)
    raise RegistryError(f"docker-registry did not answer GET /v2/ on {addr} within {timeout}s: "
                        f"{log.read_text(errors='replace')}")


@contextmanager
def local_registry(*, timeout: float = 20.0, users: dict[str, str] | None = None) -> Iterator[str]:
    """Run a registry on 127.0.0.1 for the `with` block; yields "127.0.0.1:PORT". With `users`
    (name → password) it wants HTTP basic auth (htpasswd, bcrypt) for every request."""
    if not have_registry():
        raise RegistryError(f"{REGISTRY_BINARY} not found: install {REGISTRY_HINT}")
    tmp = Path(tempfile.mkdtemp(prefix="pocketkube-registry-"))
    proc = None
    htpasswd = None
    if users:
        htpasswd = tmp / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
    try:
        for _ in range(5):
            started = _start(tmp, timeout, htpasswd)
            if started:
                proc, addr = started
                break
        else:
            raise RegistryError("docker-registry: no free port after 5 tries")
        yield addr
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def push(layout: str | os.PathLike, ref: str, *, tag: str = "latest", timeout: float = 120.0,
         creds: str | None = None) -> None:
    """Copy the OCI layout's image `tag` to `ref` ("127.0.0.1:PORT/name:tag") over plain HTTP
    (`creds` "user:password" for a registry that wants them)."""
    if not have_skopeo():
        raise RegistryError(f"skopeo not found: install {SKOPEO_HINT}")
    if not (Path(layout) / "index.json").is_file():
        raise RegistryError(f"push: {str(layout)!r} is not an OCI layout (no index.json)")
    # --insecure-policy: the copy is between our own files and our own registry; the host's
    # /etc/containers/policy.json is not ours to depend on.
    cmd = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
           *(["--dest-creds", creds] if creds else []), f"oci:{layout}:{tag}", f"docker://{ref}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=local_env(), timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode:
        raise RegistryError(f"skopeo copy to {ref} failed ({result.returncode}): {result.stderr.strip()}")


def publish_test_images(addr: str) -> dict[str, str]:
    """Build (or take from the cache) the busybox and pause images and push them to the registry
    at `addr`; their references by name, e.g. {"pause": "127.0.0.1:PORT/pause:latest"}."""
    refs = {}
    for name, built in (("busybox", images.busybox_image()), ("pause", images.pause_image())):
        refs[name] = f"{addr}/{name}:{built.tag}"
        push(built.layout, refs[name], tag=built.tag)
    return refs
