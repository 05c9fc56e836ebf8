"""util.backoff: exponential per key, capped, jittered, expiring — on an injected clock."""

from __future__ import annotations

import pytest

from pocketkube.util.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_doubles_per_key_up_to_the_maximum():
    b = Backoff(initial=1.0, maximum=5.0, clock=Clock())
    assert [b.next("a") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert b.next("b") == 1.0  # keys are independent
    b.reset("a")
    assert b.next("a") == 1.0 and b.delay("a") == 1.0


def test_jitter_adds_up_to_the_factor_of_the_delay():
    b = Backoff(initial=2.0, maximum=60.0, jitter=0.5, clock=Clock(), rand=lambda: 1.0)
    assert b.next() == 3.0  # 2 + 1.0 * 0.5 * 2
    assert b.delay() == 2.0  # jitter never compounds
    assert Backoff(initial=2.0, maximum=60.0, jitter=0.5, rand=lambda: 0.0).next() == 2.0


def test_entries_expire_after_reset_after():
    clock = Clock()
    b = Backoff(initial=10.0, maximum=300.0, reset_after=600.0, clock=clock)
    b.next("k")
    b.next("k")
    assert b.delay("k") == 20.0
    clock.now += 601
    assert b.next("k") == 10.0


def test_pending_and_remaining_since_a_failure_time():
    clock = Clock()
    b = Backoff(initial=10.0, maximum=300.0, clock=clock)
    assert not b.failures_pending("k", clock.now) and b.remaining("k") == 0.0
    b.next("k", clock.now)
    failed = clock.now
    clock.now += 4
    assert b.failures_pending("k", failed)
    assert b.remaining("k", failed) == pytest.approx(6.0)
    clock.now += 6.1
    assert not b.failures_pending("k", failed)


def test_forget_prefix_drops_every_matching_key():
    b = Backoff(initial=1.0, maximum=8.0, clock=Clock())
    for key in ("uid1/a", "uid1/b", "uid2/a"):
        b.next(key)
    b.forget_prefix("uid1/")
    assert b.delay("uid1/a") == b.delay("uid1/b") == 0.0 and b.delay("uid2/a") == 1.0
