"""The event recorder's quiet gate: events wait while a component (the kubelet) writes statuses."""

from __future__ import annotations

import asyncio

from pocketkube.client.events import NORMAL, EventRecorder

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u1"}}


class RecordingClient:
    def __init__(self) -> None:
        self.created: list[dict] = []

    async def create(self, res, body: dict, namespace: str | None = None) -> dict:
        self.created.append(body)
        return body

    async def patch(self, res, namespace: str, name: str, body: dict, *args, **kwargs) -> dict:
        raise AssertionError("no repeats in these tests")


async def test_events_wait_while_quiet_is_clear_then_flow():
    client = RecordingClient()
    quiet = asyncio.Event()  # clear: a status write is in flight
    recorder = EventRecorder(client, "kubelet", host="node-1", quiet=quiet)  # type: ignore[arg-type]
    recorder.event(POD, NORMAL, "Started", "Started container c", field_path="spec.containers{c}")
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.created == []
    quiet.set()
    await recorder.flush(2.0)
    (event,) = client.created
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    assert event["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert event["reportingInstance"] == "node-1"
    await recorder.stop()


async def test_without_quiet_events_are_written_at_once():
    client = RecordingClient()
    recorder = EventRecorder(client, "replicaset-controller")  # type: ignore[arg-type]
    recorder.event(POD, NORMAL, "SuccessfulCreate", "Created pod: p")
    await recorder.flush(2.0)
    assert [e["reason"] for e in client.created] == ["SuccessfulCreate"]
    await recorder.stop()
