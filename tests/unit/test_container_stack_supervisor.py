"""The agent's containerd supervisor: containerd that exits is started again (with back-off when
it cannot start), and an adopted containerd (not our child) is watched by its pid."""

from __future__ import annotations

import asyncio
import subprocess

from pocketkube.agent.container_stack import ContainerStack, StackConfig
from pocketkube.agent.runtime.containerd import Containerd, ContainerdError
from pocketkube.util.backoff import Backoff


class FakeContainerd:
    def __init__(self, failures: int) -> None:
        self.exited = asyncio.Event()
        self.failures = failures
        self.starts = 0

    async def wait_exited(self) -> int | None:
        await self.exited.wait()
        self.exited.clear()
        return 137

    async def start(self) -> None:
        self.starts += 1
        if self.failures:
            self.failures -= 1
            raise ContainerdError("containerd exited with 1 while starting")


async def test_an_exited_containerd_is_started_again_until_it_runs(tmp_path) -> None:
    stack = ContainerStack(StackConfig(data_dir=tmp_path, pod_cidr="10.244.1.0/24", bridge="", pod_routes=()))
    fake = FakeContainerd(failures=2)
    stack.containerd = fake  # type: ignore[assignment]
    stack._backoff = Backoff(initial=0.01, maximum=0.01)
    stack._supervisor = asyncio.create_task(stack._supervise())
    await asyncio.sleep(0.05)
    assert fake.starts == 0  # nothing happens while it runs
    fake.exited.set()
    async with asyncio.timeout(5):
        while stack.restarts < 1:
            await asyncio.sleep(0.01)
    assert fake.starts == 3  # two failed attempts, then it ran
    fake.exited.set()
    async with asyncio.timeout(5):
        while stack.restarts < 2:
            await asyncio.sleep(0.01)
    await stack.stop(teardown=False)
    assert stack._supervisor is None


async def test_an_adopted_containerd_is_watched_by_its_pid(tmp_path) -> None:
    ctrd = Containerd(tmp_path / "containerd", sandbox_image="registry.k8s.io/pause:3.9")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        ctrd._adopted = [proc.pid]
        assert ctrd.running()
        waiter = asyncio.create_task(ctrd.wait_exited(poll=0.01))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        proc.kill()  # a zombie until reaped: already gone for the supervisor
        async with asyncio.timeout(5):
            assert await waiter is None
        assert not ctrd.running()
    finally:
        proc.kill()
        proc.wait()
