"""The container stack end to end, as the kubelet will drive it: a local registry on loopback
serves busybox and pause, our private containerd pulls them over plain HTTP (a `hosts.toml` in its
registry config dir), and through `CriClient` a host-network sandbox runs one container that
exits 3 after logging a line (read back from the CRI log file) and one long-running container that
answers `exec_sync`. Then everything is stopped and removed, and nothing may remain: no process
mentioning the temp dir, no shim of ours, no mount under it.

Host network (`namespace_options.network = NODE`) means no CNI: containerd sets up no network
namespace and calls no plugin. Quirks met on this host (Debian 12, containerd 1.6.20, runc 1.1.5,
cgroup v1 with cgroupfs, overlayfs snapshots on ext4, no AppArmor in the kernel):
- No `hostname` with host network: runc refuses one without a private UTS namespace ("unable to
  set hostname without a private UTS namespace"); the kubelet sets it only for pod-network pods.
  containerd then gives the container HOSTNAME = the node's hostname.
- Namespace options go in each container's config as well as the sandbox's: containerd takes a
  container's from its own, and their zero value (pid = POD) shares the pause container's PID
  namespace, so `/proc/1` would be pause.
- containerd creates the container's log file and its directories under `log_directory`.
- No seccomp or AppArmor profile is sent, so both are unconfined (CRI's default for an empty one).
- `cgroup_parent` is set, as the kubelet will set it (/kubepods/...). containerd removes a
  container's cgroup but not the sandbox's `cgroup_parent` (the kubelet's to remove), so the
  test removes it itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from pocketkube.agent.runtime.containerd import (
    Containerd,
    mounts_under,
    processes,
    render_plain_http_hosts,
    shim_pids,
)
from pocketkube.agent.runtime.cri.client import CriClient, CriError
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.testing import images, registry
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, REGISTRY, SKOPEO, have_containerd, requires
from pocketkube.testing.waits import wait_for_async

pytestmark = [
    requires(have_containerd(), CONTAINERD),
    requires(images.have_busybox(), BUSYBOX),
    requires(registry.have_skopeo(), SKOPEO),
    requires(registry.have_registry(), REGISTRY),
    pytest.mark.timeout(120),
]

# "<RFC3339Nano timestamp> <stream> <P|F> <text>": the CRI log format (cri-api's logs doc).
CRI_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) ([PF]) (.*)$")


def _mounts_under(path: Path) -> list[str]:
    return mounts_under(Path("/proc/self/mountinfo").read_text(), [path])


@pytest.fixture
def data_dir():
    # Short: containerd's socket lives there (unix socket paths are at most 107 bytes).
    path = Path(tempfile.mkdtemp(prefix="pk-crirun-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
    assert not path.exists()


# As the kubelet sends them, in the sandbox's config and again in each container's (containerd
# takes a container's namespaces from its own config): a PID namespace per container, as the
# enum's zero value, POD, would share the pause container's (shareProcessNamespace pods only).
HOST_NETWORK = api.NamespaceOption(network=api.NODE, pid=api.CONTAINER, ipc=api.POD)


def _remove_cgroups(leaf: str) -> None:
    """Remove `leaf` and what is below it (left by a failed run) from every hierarchy, deepest
    first, then its parent when empty: containerd leaves a pod's cgroup_parent (the kubelet's)."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / leaf
        if not top.is_dir() or top.is_symlink():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda d: -len(d[0])):
            Path(dirpath).rmdir()
        with contextlib.suppress(OSError):  # another run's pod still there
            top.parent.rmdir()


def _sandbox_config(log_dir: Path, uid: str) -> api.PodSandboxConfig:
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="hello", uid=uid, namespace="default", attempt=0),
        log_directory=str(log_dir),
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=f"/pocketkube-test/pod{uid}",
            security_context=api.LinuxSandboxSecurityContext(namespace_options=HOST_NETWORK)))


def _container_config(name: str, image: str, command: list[str]) -> api.ContainerConfig:
    return api.ContainerConfig(metadata=api.ContainerMetadata(name=name, attempt=0),
                               image=api.ImageSpec(image=image), command=command,
                               log_path=f"{name}/0.log",
                               linux=api.LinuxContainerConfig(security_context=api.LinuxContainerSecurityContext(
                                   namespace_options=HOST_NETWORK)))


async def test_pull_run_log_exec_and_clean_up(data_dir: Path) -> None:
    uid = str(uuid.uuid4())
    log_dir = data_dir / "pods" / f"default_hello_{uid}"
    cgroup_leaf = f"pocketkube-test/pod{uid}"
    with registry.local_registry() as addr:
        refs = registry.publish_test_images(addr)
        certs = data_dir / "certs.d"
        (certs / addr).mkdir(parents=True)
        (certs / addr / "hosts.toml").write_text(render_plain_http_hosts(addr))
        ctrd = Containerd(data_dir, sandbox_image=refs["pause"], registry_config_dir=certs)
        sandbox_id = None
        try:
            await ctrd.start()
            async with CriClient(ctrd.endpoint) as cri:
                busybox_ref = await cri.pull_image(refs["busybox"])
                assert busybox_ref.startswith("sha256:")
                assert await cri.pull_image(refs["pause"])
                assert (await cri.image_status(refs["busybox"])).id == busybox_ref

                sandbox = _sandbox_config(log_dir, uid)
                sandbox_id = await cri.run_pod_sandbox(sandbox)
                status = (await cri.pod_sandbox_status(sandbox_id)).status
                assert status.state == api.SANDBOX_READY
                assert status.linux.namespaces.options.network == api.NODE
                assert status.linux.namespaces.options.pid == api.CONTAINER

                # A container that logs a line and exits 3.
                once = await cri.create_container(sandbox_id, _container_config(
                    "once", refs["busybox"], ["sh", "-c", "echo hello from $HOSTNAME; exit 3"]), sandbox)
                await cri.start_container(once)

                async def exited() -> api.ContainerStatus | None:
                    st = (await cri.container_status(once)).status
                    return st if st.state == api.CONTAINER_EXITED else None

                st = await wait_for_async(exited, timeout=30, what="the container to exit")
                assert st.exit_code == 3, st
                assert st.log_path == str(log_dir / "once" / "0.log")
                lines = Path(st.log_path).read_text().splitlines()
                parsed = [CRI_LOG_LINE.match(line) for line in lines]
                assert all(parsed), lines
                assert [(m[3], m[4], m[5]) for m in parsed] == [("stdout", "F", f"hello from {socket.gethostname()}")], lines

                # A long-running container that answers exec_sync.
                sleeper = await cri.create_container(sandbox_id, _container_config(
                    "sleeper", refs["busybox"], ["sleep", "3600"]), sandbox)
                await cri.start_container(sleeper)
                out = await cri.exec_sync(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=10)
                assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 7)
                # Its own PID namespace (pid=CONTAINER): the command is PID 1.
                out = await cri.exec_sync(sleeper, ["cat", "/proc/1/cmdline"], timeout=10)
                assert (out.stdout, out.exit_code) == (b"sleep\x003600\x00", 0)

                for cid in (once, sleeper):
                    await cri.stop_container(cid, timeout=1)
                    await cri.remove_container(cid)
                await cri.stop_pod_sandbox(sandbox_id)
                await cri.remove_pod_sandbox(sandbox_id)
                sandbox_id = None
                assert await cri.list_containers() == [] and await cri.list_pod_sandbox() == []
        finally:
            if sandbox_id is not None:  # a failure above: still take the pod down through CRI
                with contextlib.suppress(CriError):
                    async with CriClient(ctrd.endpoint) as cri:
                        await cri.remove_pod_sandbox(sandbox_id)
            await ctrd.stop()
            _remove_cgroups(cgroup_leaf)

    assert shim_pids(processes(), ctrd.socket) == []
    assert processes_under(data_dir) == []
    assert _mounts_under(data_dir) == []
    assert not any((c / cgroup_leaf).exists() for c in Path("/sys/fs/cgroup").iterdir())
