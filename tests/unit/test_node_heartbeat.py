"""The node heartbeat retries a failed lease renewal with back-off, then returns to its interval."""

from __future__ import annotations

import asyncio

from pocketkube.agent.node import NodeAgent, lease_retry_backoff
from pocketkube.api import errors
from pocketkube.util.backoff import Backoff


class FlakyLeases:
    """Lease patches fail `failures` times (the API server is restarting), then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.succeeded = asyncio.Event()

    async def patch(self, res, namespace: str, name: str, body: dict, *args, **kwargs) -> dict:
        self.calls += 1
        if self.calls <= self.failures:
            raise errors.ServiceUnavailable("restarting")
        self.succeeded.set()
        return body


async def test_heartbeat_retries_with_backoff_and_resets_after_a_success(tmp_path):
    client = FlakyLeases(failures=3)
    delays: list[float] = []

    class Recording(Backoff):
        def next(self, key: str = "", at: float | None = None) -> float:
            delay = super().next(key, at)
            delays.append(delay)
            return delay

    retry = Recording(initial=0.001, maximum=0.004)
    node = NodeAgent(client, "node-1", "127.0.1.1", "127.244.1.0/24", tmp_path, 10250,  # type: ignore[arg-type]
                     lease_interval=60.0, retry=retry)
    task = asyncio.create_task(node.heartbeat())
    try:
        await asyncio.wait_for(client.succeeded.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert delays == [0.001, 0.002, 0.004]  # not the 60 s lease interval
    assert retry.delay() == 0.0  # reset by the success


def test_lease_retry_never_waits_longer_than_the_lease_interval():
    assert lease_retry_backoff(10.0).maximum == 7.0
    assert lease_retry_backoff(1.0).maximum == 1.0
