"""Container log rotation against a real containerd: a container writing fast, a small maximum size
and a short monitor period. The log is renamed, reopened through CRI ReopenContainerLog and the
older rotations gzipped; the count of files stays within the limit; no line is lost or repeated
across rotations; `kubectl logs` shows the live file (as upstream) and `-f` keeps flowing across
rotations until the container stops.

A private containerd under a temp dir serves the module; the pods use the host's network (no
CNI needed) and the images are imported from OCI archives built here (no registry). Teardown
checks that no process, shim, mount or cgroup of ours is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from pocketkube.agent import logrotation as lr
from pocketkube.agent.logserver import LogServer
from pocketkube.agent.runtime.containerd import Containerd, import_archive, mounts_under, shim_pids
from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime, cgroup_dirs
from pocketkube.agent.runtime.interface import ContainerConfig
from pocketkube.testing import images
from pocketkube.testing.procs import processes_under
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, ROOT, have_containerd, is_root, requires
from pocketkube.testing.waits import wait_for_async
from pocketkube.util.oci_layout import oci_archive

pytestmark = [
    requires(is_root(), ROOT),
    requires(have_containerd(), CONTAINERD),
    requires(images.have_busybox(), BUSYBOX),
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

BUSYBOX_REF = "docker.io/pocketkube-test/busybox:rotation"
PAUSE_REF = "docker.io/pocketkube-test/pause:rotation"
POLICY = lr.LogRotatePolicy(max_size=16 * 1024, max_files=3)
PERIOD = 0.2
# ~100-byte numbered lines, 20 at a time then 10 ms of rest: a few hundred KB/s.
WRITER = ('i=0; while :; do echo "line $i ........................................................................"; '
          'i=$((i+1)); [ $((i % 20)) -eq 0 ] && usleep 10000; done')
LINE = re.compile(rb"^line (\d+) \.+$")


def _all_processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                found.append((int(entry.name), [a.decode(errors="replace") for a in argv if a]))
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rt():
    node = Path(tempfile.mkdtemp(prefix="pk-logrot-"))
    node_name = f"rot-{secrets.token_hex(3)}"
    ctrd = Containerd(node / "containerd", sandbox_image=PAUSE_REF)
    runtime = ContainerdRuntime(ctrd.endpoint, data_dir=node, node_name=node_name, node_ip="127.0.0.1",
                                log_rotation=POLICY, log_monitor_period=PERIOD)
    try:
        await ctrd.start()
        for image, ref in ((images.busybox_image(), BUSYBOX_REF), (images.pause_image(), PAUSE_REF)):
            await import_archive(ctrd.socket, oci_archive(image.layout, node / "image.tar", name=ref))
        yield runtime
    finally:
        for uid in runtime.pods():
            with contextlib.suppress(Exception):
                await runtime.remove_pod(uid)
        await runtime.close()
        await ctrd.stop()
        runtime.remove_node_cgroups()
        shutil.rmtree(node, ignore_errors=True)
    assert shim_pids(_all_processes(), ctrd.socket) == []
    assert processes_under(node) == []
    assert mounts_under(Path("/proc/self/mountinfo").read_text(), [node]) == []
    assert not any(d.exists() for d in cgroup_dirs(f"/pocketkube/{node_name}"))


def _pod(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"hostNetwork": True, "containers": [{"name": "chatty", "image": BUSYBOX_REF}]}}


def _numbers(data: bytes) -> list[int]:
    """The line numbers in CRI log bytes or decoded output."""
    out = []
    for raw in data.splitlines():
        m = LINE.match(raw.split(b" ", 3)[3] if raw[:1].isdigit() and raw.count(b" ") >= 3 else raw)
        if m:
            out.append(int(m[1]))
    return out


def _read(path: str) -> bytes:
    return gzip.decompress(Path(path).read_bytes()) if path.endswith(lr.COMPRESS_SUFFIX) else Path(path).read_bytes()


def _files(live: str) -> list[str]:
    """The container's log files in use, oldest first, the live one last (GetAllLogs)."""
    d = Path(live).parent
    return lr.all_logs(live, lr.rotated_files(live, [str(p) for p in d.iterdir()]))


def _contiguous(live: str) -> list[int] | None:
    """The line numbers across all of the container's log files when they follow one another with
    no gap or repeat; None when not (or when a file vanished while being read: try again)."""
    try:
        numbers = [n for p in _files(live) for n in _numbers(_read(p))]
    except (FileNotFoundError, EOFError, gzip.BadGzipFile):
        return None
    return numbers if numbers == list(range(numbers[0], numbers[0] + len(numbers))) else None


class _Kubelet:
    """What the log server asks of the kubelet, over the real runtime."""

    def __init__(self, runtime: ContainerdRuntime, pod: dict) -> None:
        self.runtime, self.pod = runtime, pod
        self.workers: dict = {}

    def find_pod(self, namespace: str, name: str) -> dict | None:
        return self.pod if name == self.pod["metadata"]["name"] else None


async def test_logs_rotate_compress_stay_bounded_and_follow_keeps_flowing(rt: ContainerdRuntime) -> None:
    pod = _pod("chatty")
    uid = pod["metadata"]["uid"]
    await rt.run_pod_sandbox(pod)
    record = await rt.start(ContainerConfig(pod_uid=uid, name="chatty", command=["sh", "-c", WRITER], args=[], env={},
                                            restart_count=0, image=BUSYBOX_REF, pod_ip="127.0.0.1", pod=pod,
                                            spec=pod["spec"]["containers"][0]))
    live = record.log_path
    server = LogServer(_Kubelet(rt, pod), "127.0.0.1", 0, "token")  # type: ignore[arg-type]
    port = await server.start()
    url = f"http://127.0.0.1:{port}/containerLogs/default/chatty/chatty"
    headers = {"Authorization": "Bearer token"}
    seen_counts: list[int] = []
    rotations: set[str] = set()

    def observe() -> None:
        files = _files(live)
        seen_counts.append(len(files))
        rotations.update(Path(p).name.removesuffix(lr.COMPRESS_SUFFIX) for p in files[:-1])

    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, params={"follow": "true"}, headers=headers) as follow:
                received = b""

                async def read_all() -> None:  # one reader, never cancelled half-way through a read
                    nonlocal received
                    async for chunk in follow.content.iter_any():
                        received += chunk
                reader = asyncio.create_task(read_all())

                def rotated_while_following() -> bool:
                    observe()
                    gz = [p for p in _files(live) if p.endswith(lr.COMPRESS_SUFFIX)]
                    return len(rotations) >= 4 and len(gz) >= 1 and not reader.done()
                await wait_for_async(rotated_while_following, timeout=60, interval=0.01,
                                     what="four rotations, one of them compressed")
                # `kubectl logs` without -f: the live file only, so not from the first line.
                async def live_lines() -> list[int]:  # (the file is empty just after a rotation)
                    async with session.get(url, headers=headers) as r:
                        assert r.status == 200
                        return _numbers(await r.read())
                now = await wait_for_async(live_lines, timeout=10, what="lines in the live file")
                assert now[0] > 0 and now == list(range(now[0], now[0] + len(now)))

                await rt.stop(record, grace=0)
                async with asyncio.timeout(10):  # the follow ends with the container
                    await reader
    finally:
        await server.stop()
    # Never more files than the policy allows; every rotation went through rename + reopen.
    assert max(seen_counts) <= POLICY.max_files, seen_counts
    assert all(re.fullmatch(r"0\.log\.\d{8}-\d{6}", name) for name in rotations), rotations
    # Followed from the first line to the last, across every rotation: nothing lost or repeated.
    numbers = _numbers(received)
    assert numbers[0] == 0 and numbers == list(range(len(numbers))), numbers[:5]
    # And the files on disk hold one unbroken run of lines (the older ones deleted), ending where
    # the follow ended.
    on_disk = await wait_for_async(lambda: _contiguous(live), timeout=10, what="contiguous log files")
    assert on_disk[0] > 0 and on_disk[-1] == numbers[-1]
    await rt.remove_pod(uid)
    assert not Path(live).parent.exists()
