"""`pocketkube image load` and `image ls` against two real private containerds laid out as the
agent lays them out (`<data>/nodes/node-{1,2}/containerd/`), with archives built here: busybox as
a `docker save` archive with a short name (docker.io/library/... once loaded), busybox as a
gzip-compressed OCI archive, and pause as an OCI archive. The images are then seen through CRI on
both nodes, are pinned, and run: node-2 starts a pod (host network, no registry anywhere) whose
sandbox is the loaded pause image and whose container is the loaded busybox. Bad input and a
stopped node each give one line and exit code 1; nothing of containerd remains afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from pocketkube.agent.runtime.containerd import Containerd, mounts_under, processes, shim_pids
from pocketkube.agent.runtime.cri.client import CriClient, CriError
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.testing import archives, images
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import wait_for_async

pytestmark = [
    requires(have_containerd(), CONTAINERD),
    requires(images.have_busybox(), BUSYBOX),
    pytest.mark.timeout(120),
]

PAUSE = "docker.io/pk-test/pause:1"
BUSYBOX_DOCKER = "docker.io/library/pk-busybox:1"  # saved as "pk-busybox:1", as docker names it
BUSYBOX_OCI = "docker.io/pk-test/busybox:2"
NODES = ("node-1", "node-2")
HOST_NETWORK = api.NamespaceOption(network=api.NODE, pid=api.CONTAINER, ipc=api.POD)


@pytest.fixture
def tmp():
    # Short: containerd's socket lives under it (unix socket paths are at most 107 bytes).
    path = Path(tempfile.mkdtemp(prefix="pk-imgload-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def archive_files(tmp: Path) -> dict[str, Path]:
    busybox, pause = images.busybox_image(), images.pause_image()
    out = tmp / "archives"
    out.mkdir()
    files = {
        "docker": archives.docker_archive(busybox.layout, out / "busybox-docker.tar", repo_tags=["pk-busybox:1"]),
        "pause": archives.oci_archive(pause.layout, out / "pause-oci.tar", name=PAUSE),
    }
    oci = archives.oci_archive(busybox.layout, out / "busybox-oci.tar", name=BUSYBOX_OCI)
    files["oci.gz"] = out / "busybox-oci.tar.gz"
    files["oci.gz"].write_bytes(gzip.compress(oci.read_bytes(), compresslevel=1))
    oci.unlink()
    return files


@pytest.fixture
async def cluster(tmp: Path):
    """Two nodes' containerds, as the agent starts them; yields the data dir."""
    data = tmp / "data"
    nodes = [Containerd(data / "nodes" / n / "containerd", sandbox_image=PAUSE) for n in NODES]
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        yield data, nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))
        for n in nodes:
            assert shim_pids(processes(), n.socket) == []
        assert processes_under(tmp) == []
        assert mounts_under(Path("/proc/self/mountinfo").read_text(), [tmp]) == []


def pocketkube(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketkube", "image", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _remove_cgroup(leaf: str) -> None:
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / leaf
        if top.is_dir() and not top.is_symlink():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda d: -len(d[0])):
                Path(dirpath).rmdir()
            with contextlib.suppress(OSError):
                top.parent.rmdir()


async def _run_once(cri: CriClient, image: str, log_dir: Path) -> int:
    """Run `image`'s `sh -c 'exit 0'` in a host-network pod; its exit code."""
    uid = str(uuid.uuid4())
    leaf = f"pocketkube-imgload-test/pod{uid}"
    sandbox = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="loaded", uid=uid, namespace="default", attempt=0),
        log_directory=str(log_dir), linux=api.LinuxPodSandboxConfig(
            cgroup_parent=f"/{leaf}",
            security_context=api.LinuxSandboxSecurityContext(namespace_options=HOST_NETWORK)))
    sandbox_id = await cri.run_pod_sandbox(sandbox)
    try:
        cid = await cri.create_container(sandbox_id, api.ContainerConfig(
            metadata=api.ContainerMetadata(name="once", attempt=0), image=api.ImageSpec(image=image),
            command=["sh", "-c", "test -x /bin/busybox"], log_path="once/0.log",
            linux=api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(
                namespace_options=HOST_NETWORK))), sandbox)
        await cri.start_container(cid)

        async def exited() -> api.ContainerStatus | None:
            st = (await cri.container_status(cid)).status
            return st if st.state == api.CONTAINER_EXITED else None

        status = await wait_for_async(exited, timeout=30, what="the container to exit")
        await cri.remove_container(cid)
        return status.exit_code
    finally:
        with contextlib.suppress(CriError):
            await cri.stop_pod_sandbox(sandbox_id)
            await cri.remove_pod_sandbox(sandbox_id)
        _remove_cgroup(leaf)


async def test_load_into_every_node_then_list_and_run(cluster, archive_files, tmp: Path) -> None:
    data, nodes = cluster
    result = await asyncio.to_thread(pocketkube, "load", "--data-dir", data, *archive_files.values())
    assert result.returncode == 0, result
    assert result.stderr == ""
    for name in (BUSYBOX_DOCKER, PAUSE, BUSYBOX_OCI):
        assert f"Loaded image: {name} (all nodes)" in result.stdout, result.stdout

    for node in nodes:
        async with CriClient(node.endpoint) as cri:
            ids = {name: await cri.image_status(name) for name in (BUSYBOX_DOCKER, BUSYBOX_OCI, PAUSE)}
            assert all(ids.values()), ids
            # The same image config through both archive kinds: one image, two names.
            assert ids[BUSYBOX_DOCKER].id == ids[BUSYBOX_OCI].id
        labels = subprocess.run(["ctr", "-a", str(node.socket), "-n", "k8s.io", "images", "ls"],
                                capture_output=True, text=True, check=True).stdout
        pinned = [line.split()[0] for line in labels.splitlines() if "io.cri-containerd.pinned=pinned" in line]
        assert sorted(pinned) == sorted([BUSYBOX_DOCKER, BUSYBOX_OCI, PAUSE]), labels

    listing = await asyncio.to_thread(pocketkube, "ls", "--data-dir", data)
    assert listing.returncode == 0, listing
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE", "NODES"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:]}
    for name in (BUSYBOX_DOCKER, BUSYBOX_OCI, PAUSE):
        repo, tag = name.rsplit(":", 1)
        assert rows[(repo, tag)][-1] == "node-1,node-2", listing.stdout

    # A loaded image runs on a node without any registry: sandbox (pause) and container.
    async with CriClient(nodes[1].endpoint) as cri:
        assert await _run_once(cri, BUSYBOX_DOCKER, data / "nodes" / "node-2" / "pods" / "x") == 0

    # Loading again is harmless (containerd keeps what it has).
    again = await asyncio.to_thread(pocketkube, "load", "--data-dir", data, archive_files["docker"])
    assert again.returncode == 0 and f"Loaded image: {BUSYBOX_DOCKER} (all nodes)" in again.stdout, again


async def test_bad_archives_and_a_stopped_node(cluster, archive_files, tmp: Path) -> None:
    data, nodes = cluster
    random_bytes = tmp / "random.tar"
    random_bytes.write_bytes(os.urandom(4096))
    truncated = tmp / "truncated.tar"
    truncated.write_bytes(archive_files["docker"].read_bytes()[:600_000])
    not_image = tmp / "plain.tar"
    subprocess.run(["tar", "cf", str(not_image), "-C", str(tmp), "random.tar"], check=True)

    line = _one_line_error(await asyncio.to_thread(pocketkube, "load", "--data-dir", data, random_bytes))
    assert line == f"pocketkube: image load: {random_bytes}: not an image archive (expected a `docker save` " \
                   "or OCI archive: a tar, optionally gzip-compressed)"
    line = _one_line_error(await asyncio.to_thread(pocketkube, "load", "--data-dir", data, tmp / "missing.tar"))
    assert line == f"pocketkube: image load: {tmp / 'missing.tar'}: no such file"
    line = _one_line_error(await asyncio.to_thread(pocketkube, "load", "--data-dir", data, truncated))
    assert line.startswith(f"pocketkube: image load: {truncated}: ") and "unexpected EOF" in line, line
    line = _one_line_error(await asyncio.to_thread(pocketkube, "load", "--data-dir", data, not_image))
    assert line == f"pocketkube: image load: {not_image}: unrecognized image format"

    await nodes[1].stop()
    line = _one_line_error(await asyncio.to_thread(pocketkube, "load", "--data-dir", data, archive_files["docker"]))
    assert line.startswith("pocketkube: image load: containerd of node-2 is not running"), line
    listing = await asyncio.to_thread(pocketkube, "ls", "--data-dir", data)
    assert listing.returncode == 1 and listing.stdout.startswith("IMAGE"), listing
    assert _one_line_error(listing).startswith("pocketkube: image ls: containerd of node-2 is not running")
