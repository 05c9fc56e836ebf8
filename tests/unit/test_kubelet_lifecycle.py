"""A container's life around its process, with the fake runtime and the fake client: postStart and
preStop hooks, and a sandbox that dies under its pod."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.agent import lifecycle
from pocketkube.agent.probes import ProbeTarget
from pocketkube.agent.runtime.interface import ExecResult
from pocketkube.api.resources import BY_PLURAL
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.kubelets import kubelet_on_fakes

PODS = BY_PLURAL[("", "pods")]
EVENTS = BY_PLURAL[("", "events")]
NODE = "node-1"


def test_remaining_grace_keeps_a_minimum_for_sigterm():
    assert lifecycle.remaining_grace(30, 5) == 25
    assert lifecycle.remaining_grace(30, 29.5) == lifecycle.MINIMUM_GRACE
    assert lifecycle.remaining_grace(1, 0) == lifecycle.MINIMUM_GRACE


def test_failure_messages_have_the_kubelets_shape():
    msg = lifecycle.failure_message("PostStart", {"exec": {"command": ["sh", "-c", "exit 1"]}}, "web", "p_ns(u)",
                                    "boom")
    assert msg == "Exec lifecycle hook (['sh', '-c', 'exit 1']) for Container \"web\" in Pod \"p_ns(u)\" failed - error: boom"
    assert lifecycle.failure_message("PreStop", {"httpGet": {"path": "/quit"}}, "web", "p", "x").startswith(
        "HTTP lifecycle hook (/quit) for Container \"web\"")


async def test_sleep_and_unknown_handlers():
    target = ProbeTarget("10.0.0.1", {})
    assert (await lifecycle.run_handler({"sleep": {"seconds": 0}}, target, 1)).success
    assert not (await lifecycle.run_handler({}, target, 1)).success
    result, took = await lifecycle.timed({"sleep": {"seconds": 5}}, target, 0.05)
    assert result.success and took < 1  # a sleep is cut at the deadline


@pytest.fixture
async def world():
    async with kubelet_on_fakes() as world:
        yield world


def pod(name: str, lifecycle_spec: dict, grace: int = 30) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "c", "image": "app:1", "lifecycle": lifecycle_spec}]}}


def events(fake: FakeClient, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in fake.objects(EVENTS, "default")
            if e["involvedObject"]["name"] == name]


async def test_post_start_runs_in_the_container_after_it_starts(world):
    fake, rt, _ = world
    await fake.create(PODS, pod("hooked", {"postStart": {"exec": {"command": ["touch", "/ready"]}}}), "default")
    await until(lambda: ("c", ["touch", "/ready"]) in rt.execs, "the postStart exec")
    assert not any(r == "FailedPostStartHook" for r, _ in events(fake, "hooked"))
    assert rt.stops == []


async def test_a_failing_post_start_kills_the_container_with_the_kubelets_reasons(world):
    fake, rt, _ = world
    rt.exec_results[("false",)] = ExecResult(1, "nope")
    await fake.create(PODS, pod("broken", {"postStart": {"exec": {"command": ["false"]}}}), "default")
    await until(lambda: any(r == "FailedPostStartHook" for r, _ in events(fake, "broken")), "FailedPostStartHook")
    message = next(m for r, m in events(fake, "broken") if r == "FailedPostStartHook")
    assert "Exec lifecycle hook (['false'])" in message and "nope" in message
    await until(lambda: rt.stops and rt.stops[0][0] == "c", "the container killed")
    assert ("Killing", "FailedPostStartHook") in events(fake, "broken")


async def test_pre_stop_runs_before_the_stop_signal_within_the_grace_period(world):
    fake, rt, _ = world
    await fake.create(PODS, pod("graceful", {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}, grace=20),
                      "default")
    await until(lambda: rt.started, "the container started")
    await fake.delete(PODS, "default", "graceful")
    await until(lambda: rt.stops, "the stop")
    assert ("c", ["nginx", "-s", "quit"]) in rt.execs
    name, grace = rt.stops[0]
    assert name == "c" and lifecycle.MINIMUM_GRACE <= grace <= 20


async def test_a_failing_pre_stop_is_reported_and_the_stop_goes_on(world):
    fake, rt, _ = world
    rt.exec_results[("false",)] = ExecResult(1, "")
    await fake.create(PODS, pod("stubborn", {"preStop": {"exec": {"command": ["false"]}}}), "default")
    await until(lambda: rt.started, "the container started")
    await fake.delete(PODS, "default", "stubborn")
    await until(lambda: rt.stops, "the stop")
    assert any(r == "FailedPreStopHook" for r, _ in events(fake, "stubborn"))


async def test_a_dead_sandbox_is_replaced_and_the_containers_start_again_in_it(world):
    fake, rt, _ = world
    await fake.create(PODS, pod("reborn", {}), "default")
    await until(lambda: rt.started, "the container started")
    uid = next(p for p in fake.objects(PODS, "default") if p["metadata"]["name"] == "reborn")["metadata"]["uid"]
    rt.sandboxes.pop(uid)  # the pause container died: the next sandbox is a new one
    rt.sandbox_lost(uid)
    await until(lambda: len(rt.started) == 2, "the container started again")
    assert ("SandboxChanged", "Pod sandbox changed, it will be killed and re-created.") in events(fake, "reborn")
    assert rt.stops and rt.stops[0][0] == "c"
    assert rt.started[1].restart_count == 1 and uid in rt.sandboxes
