"""A Kubelet on the fakes (FakeClient, FakeRuntime) for unit tests of what the kubelet does.

    async with kubelet_on_fakes() as (fake, rt, kubelet):
        await fake.create(PODS, pod, "default")

The runtime has `app:1` present unless told otherwise (`present`, or `in_registry` for images it
must pull); keyword arguments go to Kubelet (volumes_root, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pocketkube.agent.kubelet.kubelet import Kubelet
from pocketkube.agent.runtime.interface import ImageInfo
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.fakeruntime import FakeRuntime

NODE = "node-1"
NODE_IP = "10.250.0.1"


@asynccontextmanager
async def kubelet_on_fakes(*, present: Iterable[str] = ("app:1",), in_registry: Iterable[str] = (),
                           **kwargs: Any) -> AsyncIterator[tuple[FakeClient, FakeRuntime, Kubelet]]:
    """A started Kubelet of node-1; at the end it shuts down, killing its pods."""
    fake, rt = FakeClient(), FakeRuntime()
    for ref in present:
        rt.present[ref] = ImageInfo(ref, "sha256:app")
    for ref in in_registry:
        rt.registry[ref] = ImageInfo(ref, "sha256:app")
    kubelet = Kubelet(fake, rt, NODE, NODE_IP, **kwargs)  # type: ignore[arg-type]
    await kubelet.start()
    try:
        yield fake, rt, kubelet
    finally:
        await kubelet.shutdown(kill_pods=True)
