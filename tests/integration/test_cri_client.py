"""The agent's private containerd, for real: start it in a temporary directory, talk CRI to it,
stop it, and check that no containerd or shim process and no mount under that directory remain.

Pulls need a registry and sandboxes a pause image and CNI: not here (offline), they come with the
kubelet wiring."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from pocketkube.agent.runtime.containerd import Containerd, ContainerdError, mounts_under
from pocketkube.agent.runtime.cri.client import CriClient, NotFound
from pocketkube.testing.requires import CONTAINERD, TMPFS, have_containerd, requires
from pocketkube.testing.waits import wait_for_async


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture
def data_dir():
    # Short (unix socket paths are limited to 107 bytes), and removed and checked afterwards.
    path = Path(tempfile.mkdtemp(prefix="pk-ctrd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
    assert not path.exists()


@requires(have_containerd(), CONTAINERD)
async def test_start_talk_stop_leaves_nothing(data_dir) -> None:
    ctrd = Containerd(data_dir, sandbox_image="127.0.0.1:5000/pause:3.9")
    try:
        await ctrd.start()
        await ctrd.start()  # already running: nothing to do
        async with CriClient(ctrd.endpoint) as cri:
            version = await cri.version()
            assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
            assert await cri.list_images() == []
            assert await cri.image_status("127.0.0.1:5000/absent:1") is None
            assert await cri.list_pod_sandbox() == [] and await cri.list_containers() == []
            with pytest.raises(NotFound, match="not found"):
                await cri.container_status("no-such-container")
    finally:
        await ctrd.stop()
    await ctrd.stop()  # idempotent
    assert _processes_mentioning(str(data_dir)) == []
    assert mounts_under(Path("/proc/self/mountinfo").read_text(), [data_dir]) == []
    assert not ctrd.socket.exists()


@requires(have_containerd(), CONTAINERD)
async def test_a_containerd_without_cri_fails_start_at_once(data_dir) -> None:
    ctrd = Containerd(data_dir, sandbox_image="pause:3.9")
    ctrd.config = ctrd.config.replace("disabled_plugins = [", 'disabled_plugins = [\n  "io.containerd.grpc.v1.cri",')
    with pytest.raises(ContainerdError, match="does not serve CRI .*UNIMPLEMENTED"):
        await ctrd.start()
    await ctrd.stop()
    assert _processes_mentioning(str(data_dir)) == []


async def test_a_containerd_that_exits_at_once_fails_start_with_its_log(data_dir) -> None:
    # `false` stands in for a containerd that dies on its config: start() must say so, not hang.
    ctrd = Containerd(data_dir, sandbox_image="pause:3.9", binary=shutil.which("false") or "/bin/false")
    with pytest.raises(ContainerdError, match="exited with 1 while starting"):
        await ctrd.start()
    await ctrd.stop()


async def test_missing_binary_is_named(data_dir) -> None:
    ctrd = Containerd(data_dir, sandbox_image="pause:3.9", binary="no-such-containerd")
    with pytest.raises(ContainerdError, match="'no-such-containerd' not found: apt-get install containerd"):
        await ctrd.start()


def _container() -> list[str]:
    """The fake shim's "container" (cmdline exactly `sleep 301`)."""
    return [p for p in _processes_mentioning("sleep 301") if p.split(": ", 1)[1].startswith("sleep")]


@requires(os.geteuid() == 0, TMPFS)
async def test_stop_kills_our_shims_and_their_children_and_unmounts_leftovers(data_dir) -> None:
    # A shim outlives containerd by design (its own session); stop() finds it by `-address`. This
    # stand-in is named like one and parents a "container" in yet another session, as a shim does.
    ctrd = Containerd(data_dir, sandbox_image="pause:3.9")
    fake_shim = 'exec -a /usr/bin/containerd-shim-runc-v2 bash -c "$0" "$@"'
    shim = await asyncio.create_subprocess_exec(
        "bash", "-c", fake_shim, "setsid sleep 301 & wait", "-namespace", "k8s.io", "-id", "x",
        "-address", str(ctrd.socket), start_new_session=True)
    other = await asyncio.create_subprocess_exec(  # another containerd's shim: left alone
        "bash", "-c", fake_shim, "sleep 302", "-address", f"{data_dir}-other/containerd.sock",
        start_new_session=True)
    leftover = ctrd.state / "io.containerd.grpc.v1.cri" / "sandboxes" / "x" / "shm"
    leftover.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "shm", str(leftover)], check=True)
    try:
        await wait_for_async(lambda: _container() and _processes_mentioning("sleep 302"), timeout=10,
                             what="the fake shims and their container")
        await ctrd.stop()
        assert await asyncio.wait_for(shim.wait(), 10) == -signal.SIGKILL
        await wait_for_async(lambda: _container() == [], timeout=10,
                             what="the container gone with its shim")
        assert _processes_mentioning(str(data_dir) + "/") == []
        assert mounts_under(Path("/proc/self/mountinfo").read_text(), [data_dir]) == []
        assert other.returncode is None
    finally:
        for proc in (shim, other):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        subprocess.run(["umount", "-l", str(leftover)], capture_output=True)
