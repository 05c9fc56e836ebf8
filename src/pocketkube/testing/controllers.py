"""Controllers running on a client (usually the FakeClient) for tests: what every controller test
set up and tore down by hand.

    async with controllers_on(fake, lambda informers, recorder: JobController(fake, informers, recorder)) as (c,):
        ...

`build` gets the shared informers and an event recorder (controllers that record no events ignore
it) and returns one controller or several; they run until the block ends, then stop with their
informers and the recorder. `ControllerRunner` is the same for fixtures that start controllers
as the test asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from pocketkube.client.events import EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import SharedInformers

Build = Callable[[SharedInformers, EventRecorder], Any]


@asynccontextmanager
async def controllers_on(client: Client, build: Build, *, component: str = "test-controller",
                         informers: SharedInformers | None = None) -> AsyncIterator[list]:
    """Run what `build` makes (a controller or a sequence of them) for the block; yields the list."""
    informers = informers or SharedInformers(client)
    recorder = EventRecorder(client, component)
    built = build(informers, recorder)
    controllers = list(built) if isinstance(built, Sequence) else [built]
    informers.start()
    tasks = [asyncio.ensure_future(c.run()) for c in controllers]
    try:
        yield controllers
    finally:
        for c in controllers:
            await c.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        await recorder.stop()


class ControllerRunner:
    """Starts controllers for a fixture's tests (`await runner.start(fake, build)`); `close` stops all."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def start(self, client: Client, build: Build, *, component: str = "test-controller") -> Any:
        controllers = await self._stack.enter_async_context(controllers_on(client, build, component=component))
        return controllers[0] if len(controllers) == 1 else controllers

    async def close(self) -> None:
        await self._stack.aclose()
