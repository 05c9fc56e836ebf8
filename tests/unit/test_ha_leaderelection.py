"""client.leaderelection: the pure decision (client-go's tryAcquireOrRenew) and the elector on
the FakeClient (CAS on resourceVersion, takeover after the lease duration, release on stop)."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.api import errors
from pocketkube.client.leaderelection import (
    LEASES,
    LeaderElectionConfig,
    LeaderElector,
    LeaseRecord,
    Observation,
    decide,
    new_identity,
)
from pocketkube.testing.fakeclient import FakeClient

STAMP = "2026-12-05T12:00:00.000000Z"


def test_no_lease_is_created_with_us_as_holder():
    d = decide(None, Observation(), "a", 100.0, 15.0, STAMP)
    assert d.action == "create"
    assert d.record == LeaseRecord("a", 15, STAMP, STAMP, 0)


def test_the_holder_renews_keeping_acquire_time_and_transitions():
    cur = LeaseRecord("a", 15, "t0", "t1", 3)
    d = decide(cur, Observation(cur, 99.0), "a", 100.0, 15.0, STAMP)
    assert d.action == "update"
    assert d.record == LeaseRecord("a", 15, "t0", STAMP, 3)


def test_a_lease_held_by_another_is_left_alone_until_unchanged_for_the_duration():
    cur = LeaseRecord("b", 15, "t0", "t1", 3)
    seen = Observation(cur, 100.0)
    assert decide(cur, seen, "a", 114.9, 15.0, STAMP).action == "wait"
    d = decide(cur, seen, "a", 115.0, 15.0, STAMP)
    assert d.action == "update"
    assert d.record == LeaseRecord("a", 15, STAMP, STAMP, 4)  # a transition


def test_a_released_lease_is_taken_at_once():
    cur = LeaseRecord("", 1, "t0", "t1", 2)
    d = decide(cur, Observation(cur, 100.0), "a", 100.0, 15.0, STAMP)
    assert d.action == "update" and d.record.holder == "a" and d.record.transitions == 3


def test_record_round_trips_through_a_lease_spec():
    rec = LeaseRecord("a", 15, "t0", "t1", 2)
    assert LeaseRecord.from_lease({"spec": rec.spec()}) == rec
    assert LeaseRecord.from_lease({}) == LeaseRecord()


def test_identity_is_hostname_underscore_uuid():
    host, _, uid = new_identity().rpartition("_")
    assert host and len(uid) == 36


def test_config_orderings_are_checked():
    with pytest.raises(ValueError):
        LeaderElectionConfig("kube-system", "x", "a", lease_duration=10, renew_deadline=10, retry_period=2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(client, identity, clock, started, stopped) -> LeaderElector:
    async def on_started():
        started.append(identity)

    async def on_stopped():
        stopped.append(identity)
    cfg = LeaderElectionConfig("kube-system", "kube-controller-manager", identity,
                               lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)
    return LeaderElector(client, cfg, on_started=on_started, on_stopped=on_stopped, clock=clock)


async def test_only_one_of_two_candidates_acquires():
    client, clock = FakeClient(), Clock()
    a = _elector(client, "a", clock, [], [])
    b = _elector(client, "b", clock, [], [])
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now += 1.0
    assert not await b.try_acquire_or_renew()  # still within the lease duration
    assert await a.try_acquire_or_renew()  # the holder renews
    lease = await client.get(LEASES, "kube-system", "kube-controller-manager")
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 0
    assert lease["spec"]["leaseDurationSeconds"] == 1


async def test_a_stale_lease_is_taken_over_and_the_transition_counted():
    client, clock = FakeClient(), Clock()
    a = _elector(client, "a", clock, [], [])
    b = _elector(client, "b", clock, [], [])
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b observes the record now
    clock.now += 1.6  # a stopped renewing
    assert await b.try_acquire_or_renew()
    lease = await client.get(LEASES, "kube-system", "kube-controller-manager")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


async def test_a_conflicting_write_loses():
    client, clock = FakeClient(), Clock()
    a = _elector(client, "a", clock, [], [])
    assert await a.try_acquire_or_renew()
    client.fail_next("update", errors.Conflict.modified("leases", "kube-controller-manager", "coordination.k8s.io"))
    assert not await a.try_acquire_or_renew()


async def test_elector_runs_while_leading_and_releases_on_cancel():
    client = FakeClient()
    started: list[str] = []
    stopped: list[str] = []
    a = _elector(client, "a", __import__("time").monotonic, started, stopped)
    task = asyncio.create_task(a.run())
    for _ in range(100):
        if started:
            break
        await asyncio.sleep(0.01)
    assert started == ["a"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lease = await client.get(LEASES, "kube-system", "kube-controller-manager")
    assert lease["spec"]["holderIdentity"] == "" and lease["spec"]["leaseDurationSeconds"] == 1
    assert stopped == []  # a clean stop is not a loss
    b = _elector(client, "b", __import__("time").monotonic, [], [])
    assert await b.try_acquire_or_renew()  # taken at once after the release


async def test_elector_stops_acting_when_renewals_fail_past_the_deadline():
    client = FakeClient()
    started: list[str] = []
    stopped: list[str] = []
    a = _elector(client, "a", __import__("time").monotonic, started, stopped)
    task = asyncio.create_task(a.run())
    for _ in range(100):
        if started:
            break
        await asyncio.sleep(0.01)
    # Someone else takes the lease (as after a partition): the leader notices at its next renewal.
    lease = await client.get(LEASES, "kube-system", "kube-controller-manager")
    await client.update(LEASES, {**lease, "spec": {**lease["spec"], "holderIdentity": "b"}})
    await asyncio.wait_for(task, 2.0)
    assert stopped == ["a"] and not a.leading


async def test_becoming_leader_is_an_event_on_the_lease():
    from pocketkube.api.resources import BY_PLURAL
    from pocketkube.client.events import EventRecorder

    client = FakeClient()
    recorder = EventRecorder(client, "kube-controller-manager")
    cfg = LeaderElectionConfig("kube-system", "kube-controller-manager", "host_1",
                               lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)
    started = asyncio.Event()

    async def on_started():
        started.set()

    async def on_stopped():
        pass
    elector = LeaderElector(client, cfg, on_started=on_started, on_stopped=on_stopped, recorder=recorder)
    task = asyncio.create_task(elector.run())
    await asyncio.wait_for(started.wait(), 2)
    await recorder.flush()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await recorder.stop()
    [ev] = client.objects(BY_PLURAL[("", "events")], "kube-system")
    assert ev["reason"] == "LeaderElection" and ev["message"] == "host_1 became leader"
    assert ev["involvedObject"]["kind"] == "Lease" and ev["involvedObject"]["name"] == "kube-controller-manager"
    assert ev["source"]["component"] == "kube-controller-manager"
