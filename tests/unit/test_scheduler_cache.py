"""The scheduler's incremental node cache and upstream's node sampling (percentageOfNodesToScore)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from pocketkube.api.meta import deep_get
from pocketkube.client.informer import object_key
from pocketkube.scheduler import plugins
from pocketkube.scheduler.cache import NodeCache
from pocketkube.scheduler.plugins import NodeInfo, num_feasible_nodes_to_find, select_node
from pocketkube.scheduler.scheduler import Scheduler, SchedulerSettings
from pocketkube.testing.fakeclient import FakeClient

pytestmark = pytest.mark.unit


def node(name: str, *, pods: int = 110, cpu: str = "4", rv: str = "1") -> dict:
    return {"metadata": {"name": name, "resourceVersion": rv}, "spec": {},
            "status": {"allocatable": {"pods": str(pods), "cpu": cpu, "memory": "8Gi"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, *, node_name: str = "", cpu: str = "100m", owner: str = "", phase: str = "Running",
        rv: str = "1") -> dict:
    p = {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
         "spec": {"nodeName": node_name, "containers": [
             {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]},
         "status": {"phase": phase}}
    if owner:
        p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": owner, "controller": True}]
    return p


def counts(info: NodeInfo) -> tuple:
    return info.pod_count, dict(info.by_controller), dict(info.requested)


# ---- numFeasibleNodesToFind ----

@pytest.mark.parametrize("nodes,percentage,expected", [
    (0, 0, 0), (50, 0, 50), (99, 0, 99), (100, 0, 100),
    (500, 0, 230),      # 50 − 4 = 46 %
    (1000, 0, 420),     # 50 − 8 = 42 %
    (2000, 0, 680),     # 50 − 16 = 34 %
    (5000, 0, 500),     # 50 − 40 = 10 %
    (10000, 0, 500),    # 50 − 80 < 5 → 5 %
    (1000, 30, 300), (1000, 5, 100),  # never fewer than 100 nodes
    (1000, 100, 1000), (150, 10, 100),
])
def test_num_feasible_nodes_to_find_like_upstream(nodes, percentage, expected):
    assert num_feasible_nodes_to_find(nodes, percentage) == expected


# ---- sampling in select_node ----

def infos(n: int, **kw) -> list[NodeInfo]:
    return [NodeInfo(node(f"n{i:04d}", **kw)) for i in range(n)]


def test_small_clusters_are_filtered_whole():
    nodes = infos(99)
    d = select_node(pod("p"), nodes, random.Random(1), start=40)
    assert d.processed == 99 and d.node is not None


def test_large_cluster_stops_after_enough_feasible_nodes_and_rotates():
    nodes = infos(1000)
    d = select_node(pod("p"), nodes, random.Random(1), start=990)
    assert d.processed == 420
    # The sample wrapped around: the chosen node is among nodes 990..999 and 0..409.
    index = int(d.node[1:])
    assert index >= 990 or index < 410


def test_sampling_skips_infeasible_nodes_and_finds_the_last_feasible_one():
    nodes = infos(1000, pods=0)
    nodes[999] = NodeInfo(node("n0999"))
    d = select_node(pod("p"), nodes, random.Random(1), start=0)
    assert (d.node, d.processed) == ("n0999", 1000)


def test_no_fit_counts_every_node_in_the_fit_error():
    d = select_node(pod("p"), infos(1000, pods=0), random.Random(1), start=123)
    assert d.node is None and d.processed == 1000
    assert d.message.startswith("0/1000 nodes are available: 1000 Too many pods.")


def test_scoring_still_spreads_within_the_sample():
    nodes = infos(200)
    nodes[5].add_pod(pod("x", owner="rs"))
    d = select_node(pod("p", owner="rs"), nodes, random.Random(1), percentage=100)
    assert d.node != "n0005"


# ---- parsed allocatable ----

def test_allocatable_is_parsed_once_per_change(monkeypatch):
    calls = []
    real = plugins.parse
    monkeypatch.setattr(plugins, "parse", lambda v: calls.append(v) or real(v))
    info = NodeInfo(node("n1", cpu="2"))
    for i in range(5):
        assert plugins.filter_node(pod(f"p{i}", cpu="500m"), info) is None
    assert calls == ["2"]
    info.node = node("n1", cpu="1", rv="2")  # a new allocatable is parsed anew
    assert plugins.filter_node(pod("q", cpu="1500m"), info) == "Insufficient cpu"
    assert calls == ["2", "1"]
    info.node = node("n1", cpu="1", rv="3")  # a heartbeat with the same allocatable is not
    plugins.filter_node(pod("q"), info)
    assert calls == ["2", "1"]


# ---- NodeCache ----

def test_cache_moves_and_forgets_pods():
    cache = NodeCache()
    cache.set_node(node("a"))
    cache.set_node(node("b"))
    p = pod("p", owner="rs", cpu="250m")
    cache.place("ns/p", p, "a")
    assert counts(cache.get("a")) == (1, {"rs": 1}, {"cpu": Fraction(1, 4)})
    cache.place("ns/p", p, "b")
    assert counts(cache.get("a")) == (0, {}, {})
    assert counts(cache.get("b"))[0] == 1
    cache.place("ns/p", pod("p", owner="rs", cpu="1"), "b")  # resized: the new requests count
    assert cache.get("b").requested == {"cpu": Fraction(1)}
    cache.place("ns/p", None, None)
    assert counts(cache.get("b")) == (0, {}, {})


def test_cache_keeps_counts_of_pods_on_unknown_or_removed_nodes():
    cache = NodeCache()
    cache.place("ns/p", pod("p"), "late")
    assert cache.get("late") is None and cache.ordered() == []
    cache.set_node(node("late"))
    assert [i.name for i in cache.ordered()] == ["late"] and cache.get("late").pod_count == 1
    cache.remove_node("late")
    assert cache.ordered() == []
    cache.set_node(node("late"))
    assert cache.get("late").pod_count == 1


def test_cache_orders_nodes_by_name():
    cache = NodeCache()
    for name in ("c", "a", "b"):
        cache.set_node(node(name))
    assert [i.name for i in cache.ordered()] == ["a", "b", "c"]
    cache.remove_node("b")
    assert [i.name for i in cache.ordered()] == ["a", "c"]


def rebuilt(s: Scheduler) -> dict[str, tuple]:
    """The per-node counts as the scheduler once rebuilt them from every pod on each pass."""
    fresh = {n["metadata"]["name"]: NodeInfo(n) for n in s.nodes.list()}
    for p in s.pods.list():
        where = deep_get(p, "spec", "nodeName") or s._assumed.get(object_key(p))
        if where in fresh and deep_get(p, "status", "phase") not in ("Succeeded", "Failed"):
            fresh[where].add_pod(p)
    return {name: counts(info) for name, info in fresh.items()}


async def test_scheduler_cache_matches_a_rebuild_under_random_events():
    s = Scheduler(FakeClient(), SchedulerSettings(seed=1))
    rng = random.Random(7)
    names = [f"n{i}" for i in range(6)]
    rv = 0
    for step in range(600):
        rv += 1
        action = rng.random()
        name = f"p{rng.randrange(40)}"
        current = s.pods.get(f"ns/{name}")
        if action < 0.1:
            s.nodes._apply(rng.choice(["ADDED", "MODIFIED", "DELETED"]),
                           node(rng.choice(names), cpu=rng.choice(["2", "4"]), rv=str(rv)))
        elif current is None:
            s.pods._apply("ADDED", pod(name, node_name=rng.choice(["", *names]), owner=rng.choice(["", "a", "b"]),
                                       rv=str(rv)))
        elif action < 0.3:
            s.pods._apply("DELETED", current)
        elif action < 0.45 and not deep_get(current, "spec", "nodeName"):
            s._assumed[f"ns/{name}"] = rng.choice(names)  # as a decision does
            s._account(f"ns/{name}")
        elif action < 0.6 and s._assumed.get(f"ns/{name}"):
            s._assumed.pop(f"ns/{name}")  # as a failed binding does
            s._account(f"ns/{name}")
        else:
            new = {**current, "metadata": {**current["metadata"], "resourceVersion": str(rv)},
                   "spec": {**current["spec"]}, "status": {**current["status"]}}
            change = rng.random()
            if change < 0.3:
                new["spec"]["nodeName"] = new["spec"]["nodeName"] or rng.choice(names)
            elif change < 0.5:
                new["status"]["phase"] = rng.choice(["Running", "Succeeded", "Failed"])
            elif change < 0.7:
                new["spec"]["containers"] = [{"name": "c", "image": "i", "resources": {
                    "requests": {"cpu": rng.choice(["100m", "1"])}}}]
            s.pods._apply("MODIFIED", new)
        want = rebuilt(s)
        got = {i.name: counts(i) for i in s.cache.ordered()}
        assert got == want, f"step {step}"
    s._wakeup.clear()
