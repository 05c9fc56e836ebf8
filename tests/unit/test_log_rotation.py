"""Container log rotation as the kubelet does it: the policy from its flags, which files a rotation
removes, compresses and renames (pure), the manager's file and CRI steps against a fake runtime,
and `kubectl logs -f` going on into the reopened file."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path

import aiohttp
import pytest

from pocketkube.agent import logrotation as lr
from pocketkube.agent import logserver
from pocketkube.agent.logserver import FollowedLog, LogServer
from pocketkube.agent.runtime.cri.client import CriError
from pocketkube.agent.runtime.cri.logmanager import ContainerLogManager, compress, parse_policy, remove_logs
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import ContainerHistory, ContainerRecord

LOG = "/pods/u1/c/0.log"
POLICY = lr.LogRotatePolicy(max_size=100, max_files=5)
NOW = time.mktime((2026, 12, 5, 3, 30, 15, 0, 0, -1))  # local time, as the kubelet's clock prints it


# ---- the policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size,files,policy", [
    ("10Mi", 5, lr.DEFAULT_POLICY),
    ("1Ki", 2, lr.LogRotatePolicy(1024, 2)),
    ("2M", 3, lr.LogRotatePolicy(2_000_000, 3)),
    ("4096", 5, lr.LogRotatePolicy(4096, 5)),
    ("-1", 5, None),  # negative: rotation off
])
def test_policy_from_the_kubelet_flags(size, files, policy):
    assert parse_policy(size, files) == policy


@pytest.mark.parametrize("size,files,message", [
    ("10Mi", 1, "invalid MaxFiles 1, must be > 1"),
    ("ten", 5, "failed to parse container log max size 'ten'"),
    ("1.5", 5, "invalid max log size"),
])
def test_bad_flags_say_why(size, files, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(size, files)


# ---- the decisions -------------------------------------------------------------------------------

def test_rotation_is_due_at_the_size():
    assert not lr.needs_rotation(99, POLICY)
    assert lr.needs_rotation(100, POLICY) and lr.needs_rotation(5000, POLICY)


def test_rotated_files_are_what_the_glob_matches():
    names = [LOG, f"{LOG}.20261205-033000", f"{LOG}.20261205-032000.gz", "/pods/u1/c/0.termination-log",
             "/pods/u1/c/10.log", "/pods/u1/c/10.log.20261205-033000", f"{LOG}.x/y"]
    assert lr.rotated_files(LOG, names) == [f"{LOG}.20261205-033000", f"{LOG}.20261205-032000.gz"]


def test_first_rotation_renames_with_a_local_timestamp():
    plan = lr.plan_rotation(LOG, [], POLICY, NOW)
    assert plan == lr.RotationPlan(remove=(), compress=(), rotate_to=f"{LOG}.20261205-033015")


def test_leftovers_are_removed_and_the_previous_rotation_compressed():
    rotated = [f"{LOG}.20261205-031000.gz",
               f"{LOG}.20261205-032000", f"{LOG}.20261205-032000.gz",  # compressed, plain not yet removed
               f"{LOG}.20261205-033000.tmp",  # an interrupted compression
               f"{LOG}.20261205-033000"]
    plan = lr.plan_rotation(LOG, rotated, POLICY, NOW)
    assert plan.remove == (f"{LOG}.20261205-032000", f"{LOG}.20261205-033000.tmp")
    assert plan.compress == (f"{LOG}.20261205-033000",)
    assert plan.rotate_to == f"{LOG}.20261205-033015"


def test_only_max_files_minus_two_rotations_are_kept_oldest_removed_first():
    rotated = [f"{LOG}.20261205-03{m}000.gz" for m in (2, 0, 3, 1)] + [f"{LOG}.20261205-034000"]
    plan = lr.plan_rotation(LOG, rotated, POLICY, NOW)  # 5 files: keep 3, then the rotation and the live one
    assert plan.remove == (f"{LOG}.20261205-030000.gz", f"{LOG}.20261205-031000.gz")
    assert plan.compress == (f"{LOG}.20261205-034000",)
    two = lr.plan_rotation(LOG, rotated, lr.LogRotatePolicy(100, 2), NOW)  # nothing but the rotation and the live one
    assert set(two.remove) == set(rotated) and two.compress == ()


def test_a_second_rotation_within_the_same_second_waits():
    for taken in (f"{LOG}.20261205-033015", f"{LOG}.20261205-033015.gz"):
        plan = lr.plan_rotation(LOG, [taken], POLICY, NOW)
        assert plan.rotate_to is None


def test_all_logs_oldest_first_then_the_live_one():
    rotated = [f"{LOG}.20261205-032000", f"{LOG}.20261205-031000.gz", f"{LOG}.20261205-032000.gz", f"{LOG}.x.tmp"]
    assert lr.all_logs(LOG, rotated) == [f"{LOG}.20261205-031000.gz", f"{LOG}.20261205-032000.gz", LOG]


# ---- the manager's I/O -----------------------------------------------------------------------------

def test_compress_keeps_the_content_and_the_mode(tmp_path: Path):
    p = tmp_path / "0.log.20261205-033000"
    p.write_bytes(b"line\n" * 1000)
    os.chmod(p, 0o640)
    compress(str(p))
    gz = Path(f"{p}.gz")
    assert not p.exists() and gzip.decompress(gz.read_bytes()) == b"line\n" * 1000
    assert gz.stat().st_mode & 0o777 == 0o640 and sorted(os.listdir(tmp_path)) == [gz.name]


def test_remove_logs_takes_the_rotations_too(tmp_path: Path):
    for name in ("0.log", "0.log.20261205-033000", "0.log.20261205-032000.gz", "0.termination-log", "1.log"):
        (tmp_path / name).write_text("x")
    remove_logs(str(tmp_path / "0.log"))
    assert sorted(os.listdir(tmp_path)) == ["0.termination-log", "1.log"]


class FakeCri:
    """containerd's side: ReopenContainerLog creates the file anew for a running container."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = api.CONTAINER_RUNNING
        self.reopened = 0

    async def list_containers(self, filter=None):
        return [api.Container(id="c1", state=self.state)]

    async def container_status(self, cid, verbose=False):
        return api.ContainerStatusResponse(status=api.ContainerStatus(id=cid, state=self.state, log_path=str(self.path)))

    async def reopen_container_log(self, cid):
        if self.state != api.CONTAINER_RUNNING:
            raise CriError(code="UNKNOWN", message="container is not running", method="ReopenContainerLog")
        self.reopened += 1
        self.path.touch()


async def test_manager_rotates_compresses_and_bounds_the_files(tmp_path: Path):
    live = tmp_path / "0.log"
    live.write_bytes(b"a" * 50)
    cri = FakeCri(live)
    clock = iter(NOW + i for i in range(100))
    manager = ContainerLogManager(cri, lr.LogRotatePolicy(100, 4), clock=lambda: next(clock))  # type: ignore[arg-type]
    await manager.rotate_logs()
    assert os.listdir(tmp_path) == ["0.log"] and cri.reopened == 0  # under the size
    for n in range(5):
        live.write_bytes(bytes([65 + n]) * 100)
        assert await manager.process_container("c1")
        assert live.stat().st_size == 0
    names = sorted(os.listdir(tmp_path))
    # At most max_files: the live file, the newest rotation (plain) and two compressed ones.
    assert names == ["0.log", "0.log.20261205-033017.gz", "0.log.20261205-033018.gz", "0.log.20261205-033019"]
    assert gzip.decompress((tmp_path / names[1]).read_bytes()) == b"C" * 100
    assert (tmp_path / names[3]).read_bytes() == b"E" * 100 and cri.reopened == 5


async def test_a_failed_reopen_renames_the_file_back(tmp_path: Path):
    live = tmp_path / "0.log"
    live.write_bytes(b"x" * 200)
    cri = FakeCri(live)
    cri.state = api.CONTAINER_EXITED  # stopped between the listing and the reopen
    manager = ContainerLogManager(cri, POLICY, clock=lambda: NOW)  # type: ignore[arg-type]
    with pytest.raises(CriError, match="not running"):
        await manager.rotate_log("c1", str(live))
    assert os.listdir(tmp_path) == ["0.log"] and live.read_bytes() == b"x" * 200
    await manager.rotate_logs()  # exited containers are not rotated at all
    assert os.listdir(tmp_path) == ["0.log"]


async def test_a_missing_live_file_is_reopened(tmp_path: Path):
    live = tmp_path / "0.log"  # renamed by a round that died before its reopen
    cri = FakeCri(live)
    assert not await ContainerLogManager(cri, POLICY).process_container("c1")  # type: ignore[arg-type]
    assert live.exists() and cri.reopened == 1


# ---- following across a rotation --------------------------------------------------------------------

def test_followed_log_reads_the_renamed_file_to_its_end_then_the_new_one(tmp_path: Path):
    path = tmp_path / "0.log"
    path.write_bytes(b"one\n")
    now = [0.0]
    followed = FollowedLog(str(path), open(path, "rb"), grace=0.5, clock=lambda: now[0])
    assert followed.read(100) == b"one\n" and followed.read(100) == b""
    os.rename(path, f"{path}.20261205-033015")
    assert followed.read(100) == b""  # renamed, not reopened yet
    with open(f"{path}.20261205-033015", "ab") as f:
        f.write(b"two\n")  # still written to the old file meanwhile
    path.write_bytes(b"three\n")  # the runtime reopened the path
    assert followed.read(100) == b"two\n"
    with open(f"{path}.20261205-033015", "ab") as f:
        f.write(b"late\n")  # the old writer's last buffered line, after the new file appeared
    assert followed.read(100) == b"late\n"
    assert followed.read(100) == b""  # the grace for such lines is not over yet
    now[0] = 0.6
    assert followed.read(100) == b"three\n" and followed.read(100) == b""
    with open(path, "ab") as f:
        f.write(b"four\n")
    assert followed.read(100) == b"four\n"
    followed.close()


def test_next_log_follows_rotation_order_even_once_compressed():
    rotated = [f"{LOG}.20261205-031000.gz", f"{LOG}.20261205-032000.gz", f"{LOG}.20261205-033000"]
    assert lr.next_log(LOG, rotated, f"{LOG}.20261205-031000") == f"{LOG}.20261205-032000.gz"
    assert lr.next_log(LOG, rotated, f"{LOG}.20261205-032000.gz") == f"{LOG}.20261205-033000"
    assert lr.next_log(LOG, rotated, f"{LOG}.20261205-033000") == LOG
    assert lr.next_log(LOG, rotated, f"{LOG}.20261205-030000") == f"{LOG}.20261205-031000.gz"  # removed: the next


def test_a_lagging_follower_reads_every_rotation_in_order(tmp_path: Path):
    path = tmp_path / "0.log"
    path.write_bytes(b"a\n")
    followed = FollowedLog(str(path), open(path, "rb"), grace=60)
    assert followed.read(100) == b"a\n"
    with open(path, "ab") as f:
        f.write(b"b\n")

    def rotate(ts: str, content: bytes) -> None:
        for old in tmp_path.glob("0.log.*[0-9]"):
            compress(str(old))
        os.rename(path, f"{path}.{ts}")
        path.write_bytes(content)
    rotate("20261205-031000", b"c\n")
    assert followed.read(1) == b"b"  # learns that its file is now 0.log.20261205-031000
    rotate("20261205-032000", b"d\n")  # 031000 compressed
    rotate("20261205-033000", b"e\n")  # 032000 compressed
    assert b"".join(iter(lambda: followed.read(100, final=True), b"")) == b"\nc\nd\ne\n"
    followed.close()


def test_followed_log_switches_at_once_when_the_writer_is_gone(tmp_path: Path):
    path = tmp_path / "0.log"
    path.write_bytes(b"one\n")
    followed = FollowedLog(str(path), open(path, "rb"), grace=60)
    os.rename(path, f"{path}.old")
    path.write_bytes(b"two\n")
    assert b"".join(iter(lambda: followed.read(100, final=True), b"")) == b"one\ntwo\n"
    followed.close()


def _cri(n: int, text: str) -> bytes:
    return f"2026-12-05T03:30:{n:02d}Z stdout F {text}\n".encode()


class _Runtime:
    def __init__(self, record: ContainerRecord) -> None:
        self.record = record

    def history(self, uid: str, name: str) -> ContainerHistory:
        return ContainerHistory(self.record, None)


class _Kubelet:
    def __init__(self, record: ContainerRecord) -> None:
        self.runtime = _Runtime(record)
        self.workers: dict = {}

    def find_pod(self, namespace: str, name: str) -> dict:
        return {"metadata": {"name": name, "namespace": namespace, "uid": "u1"}, "spec": {"containers": [{"name": "c"}]}}


async def test_kubectl_logs_after_rotation_and_follow_across_it(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(logserver, "ROTATION_GRACE", 0.0)
    monkeypatch.setattr(logserver, "FOLLOW_POLL", 0.01)
    path = tmp_path / "0.log"
    path.write_bytes(_cri(1, "before"))
    record = ContainerRecord(id="c1", name="c", pid=1, start_ticks=0, started_at="2026-12-05T03:30:00Z",
                             restart_count=0, log_path=str(path), log_format="cri", scheme="containerd")
    server = LogServer(_Kubelet(record), "127.0.0.1", 0, "token")  # type: ignore[arg-type]
    port = await server.start()
    url = f"http://127.0.0.1:{port}/containerLogs/default/p/c"
    headers = {"Authorization": "Bearer token"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, params={"follow": "true"}, headers=headers) as follow:
                got = b""

                async def read_until(text: bytes) -> None:
                    nonlocal got
                    async with asyncio.timeout(5):
                        while text not in got:
                            got += await follow.content.readany()
                await read_until(b"before\n")
                os.rename(path, f"{path}.20261205-033015")  # what the log manager does...
                path.write_bytes(_cri(2, "after"))  # ...and the runtime's reopened file
                await read_until(b"after\n")
                with open(path, "ab") as f:
                    f.write(_cri(3, "last"))
                record.exit_code = 0  # the stream ends with the container
                async with asyncio.timeout(5):
                    got += await follow.read()
            assert got == b"before\nafter\nlast\n"
            # As upstream: without follow only the live file is read.
            async with session.get(url, headers=headers) as r:
                assert await r.read() == b"after\nlast\n"
    finally:
        await server.stop()
