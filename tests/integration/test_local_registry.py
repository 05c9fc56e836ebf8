"""The test images end to end: the busybox layout is valid for skopeo, pushes to a local
docker-registry on loopback, reads back with the same digest and config, and the registry leaves
no process or directory behind. The pause command ends on SIGTERM as a PID namespace's init."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from pocketkube.testing import images, registry
from pocketkube.testing.requires import BUSYBOX, REGISTRY, ROOT, SKOPEO, is_root, requires
from pocketkube.testing.waits import wait_for

needs_busybox = requires(images.have_busybox(), BUSYBOX)
needs_skopeo = requires(registry.have_skopeo(), SKOPEO)
needs_registry = requires(registry.have_registry(), REGISTRY)


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                          check=True, env=registry.local_env(), timeout=60).stdout


def registry_processes() -> dict[int, Path]:
    """Running docker-registry processes of ours, by pid, with their temp dir (from the config
    path on their command line)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == str(registry.REGISTRY_BINARY).encode() and b"pocketkube-registry-" in argv[-2]:
            found[int(proc.name)] = Path(argv[-2].decode()).parent
    return found


@needs_busybox
@needs_skopeo
def test_built_layout_is_valid_for_skopeo():
    built = images.busybox_image()
    info = json.loads(skopeo("inspect", f"oci:{built.layout}:latest"))
    assert info["Digest"] == built.manifest_digest
    config = json.loads(skopeo("inspect", "--config", f"oci:{built.layout}:latest"))
    assert config["config"]["Cmd"] == ["sh"]


@needs_busybox
@needs_skopeo
@needs_registry
def test_push_to_local_registry_and_read_back():
    built = images.busybox_image()
    before = registry_processes()
    with registry.local_registry() as addr:
        host, _, port = addr.rpartition(":")
        assert host == "127.0.0.1" and port.isdigit()
        ours = {pid: d for pid, d in registry_processes().items() if pid not in before}
        assert len(ours) == 1
        [(pid, tmp)] = ours.items()
        assert tmp.is_dir()

        registry.push(built.layout, f"{addr}/busybox:latest")
        remote = f"docker://{addr}/busybox:latest"
        info = json.loads(skopeo("inspect", "--tls-verify=false", remote))
        assert info["Digest"] == built.manifest_digest
        remote_config = skopeo("inspect", "--tls-verify=false", "--config", "--raw", remote)
        blob = built.layout / "blobs" / "sha256" / built.config_digest.removeprefix("sha256:")
        assert remote_config.encode() == blob.read_bytes()

        refs = registry.publish_test_images(addr)
        assert refs == {"busybox": f"{addr}/busybox:latest", "pause": f"{addr}/pause:latest"}
        pause = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{refs['pause']}"))
        assert pause["Digest"] == images.pause_image().manifest_digest

        with pytest.raises(registry.RegistryError, match="not an OCI layout"):
            registry.push(tmp, f"{addr}/nothing:latest")
    assert pid not in registry_processes()
    assert not tmp.exists()


@requires(is_root(), ROOT)
@needs_busybox
def test_pause_command_ends_on_sigterm_as_pid1():
    """The kernel ignores signals to a PID namespace's init that it has no handler for; the pause
    command's trap is that handler, so SIGTERM ends the sandbox at once, with status 0."""
    unshare = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", str(images.BUSYBOX),
                                "sh", "-c", images.PAUSE_SCRIPT], start_new_session=True)
    try:
        def init_pid() -> int | None:
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            if not children:
                return None
            pid = int(children[0])
            # Ready once its sleep runs: the trap is installed before the loop starts.
            grandchildren = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return pid if grandchildren else None

        pid = wait_for(init_pid, timeout=10, what="the pause shell and its sleep")
        os.kill(pid, signal.SIGTERM)
        assert unshare.wait(timeout=10) == 0
    finally:
        if unshare.poll() is None:
            os.killpg(unshare.pid, signal.SIGKILL)
            unshare.wait()
