"""The traffic collector against in-process fake agents: ticks on a monotonic schedule, the node
token sent, a node that does not answer in time listed as unavailable, no polling without streams."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from pocketkube.api.traffic import EndpointCount, TrafficSnapshot
from pocketkube.apiserver.ui.collector import Collector, agent_url
from pocketkube.testing.waits import wait_for_async


def _node(name: str, port: int, ready: bool = True) -> dict:
    return {"metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


async def _agent(delay: float = 0.0):
    seen = {"n": 0, "auth": set()}

    async def handle(request: web.Request) -> web.Response:
        seen["n"] += 1
        seen["auth"].add(request.headers.get("Authorization"))
        await asyncio.sleep(delay)
        snap = TrafficSnapshot("n", "userspace", 0.0, endpoints=(
            EndpointCount("default", "web", "", "TCP", "10.0.0.1", 80, "p", seen["n"] * 2),))
        return web.json_response(snap.to_json())

    app = web.Application()
    app.router.add_get("/proxy/traffic", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, seen


def test_agent_url():
    assert agent_url(_node("a", 10250)) == "http://127.0.0.1:10250/proxy/traffic"
    assert agent_url({"metadata": {"name": "x"}, "status": {}}) is None


async def test_ticks_tokens_unavailable_and_stop():
    good, seen = await _agent()
    slow, _ = await _agent(delay=1.0)
    nodes = [_node("good", good.port), _node("slow", slow.port), _node("down", slow.port, ready=False)]
    c = Collector(lambda: nodes, lambda name: f"token-{name}", interval=0.25, timeout=0.15)
    ticks = []
    try:
        unsubscribe = c.subscribe(ticks.append)
        await wait_for_async(lambda: len(ticks) >= 4, timeout=5)
        unsubscribe()
        await wait_for_async(lambda: not c.running, timeout=2)
        assert seen["auth"] == {"Bearer token-good"}
        assert ticks[-1].unavailable == ["slow"]  # the NotReady node is not asked at all
        assert ticks[-1].deltas == {("endpoint", "default", "web", "", "TCP", "10.0.0.1:80"): 2}
        assert c.aggregator.dataplane() == "userspace"
        # a deadline schedule: never a burst, and no drift beyond what a stalled (loaded) machine adds
        assert min(c.intervals) > 0.2 and sum(c.intervals) / len(c.intervals) < 0.4, c.intervals
        polled = seen["n"]
        await asyncio.sleep(0.6)  # (no stream: nothing may poll meanwhile)
        assert seen["n"] == polled
    finally:
        await c.stop()
        await good.close()
        await slow.close()


async def test_read_once_sets_the_baseline():
    good, _ = await _agent()
    c = Collector(lambda: [_node("good", good.port)], lambda name: "t")
    try:
        tick = await c.read_once()
        assert tick.deltas == {} and c.aggregator.totals
    finally:
        await c.stop()
        await good.close()
