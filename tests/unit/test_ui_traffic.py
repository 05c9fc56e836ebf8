"""Counter math of the live map: resets, first-read baselines, sums over nodes, windowed rates,
the per-Service-port tick, share and spread."""

from __future__ import annotations

import math

import pytest

from pocketkube.api.traffic import EndpointCount, EntryCount, RejectCount, TrafficSnapshot
from pocketkube.apiserver.ui import traffic

SVC = ("default", "myapp-service", "", "TCP")
MODEL = {"service": {"namespace": "default", "name": "myapp-service", "port": {"name": "", "protocol": "TCP"}},
         "entries": [{"id": "NodePort/127.0.1.1:30008"}, {"id": "NodePort/127.0.1.2:30008"}],
         "endpoints": [{"key": "10.0.0.1:80"}, {"key": "10.0.0.2:80"}]}


def snap(node: str, entry: int, ep1: int, ep2: int, rejected: int = 0, plane: str = "nftables",
         node_ip: str = "127.0.1.1", active: int | None = None) -> TrafficSnapshot:
    return TrafficSnapshot(node, plane, 0.0,
                           (EntryCount(*SVC, "NodePort", node_ip, 30008, entry),),
                           (EndpointCount(*SVC, "10.0.0.1", 80, "a", ep1, active),
                            EndpointCount(*SVC, "10.0.0.2", 80, "b", ep2)),
                           (RejectCount(*SVC, "10.96.0.20", 80, rejected),))


def test_counter_delta():
    assert traffic.counter_delta(None, 5) == 5
    assert traffic.counter_delta(5, 9) == 4
    assert traffic.counter_delta(9, 3) == 3  # reset
    assert traffic.counter_delta(4, 4) == 0


def test_share_and_sigma():
    assert traffic.share(1, 3) == pytest.approx(1 / 3) and traffic.share(1, 0) is None
    assert traffic.sigma(1 / 3, 300) == pytest.approx(math.sqrt((1 / 3) * (2 / 3) / 300))
    assert round(traffic.sigma(1 / 3, 300) * 100, 1) == 2.7  # ui.md: 33% ± 2.7%
    assert traffic.sigma(0.5, 0) is None


def test_first_read_is_baseline_then_deltas_summed_over_nodes():
    agg = traffic.Aggregator()
    agg.ingest(100.0, {"n1": snap("n1", 100, 60, 40), "n2": snap("n2", 5, 3, 2, node_ip="127.0.1.2")})
    t = agg.tick_for(MODEL)
    assert [e["delta"] for e in t["endpoints"]] == [0, 0]
    assert [e["total"] for e in t["endpoints"]] == [63, 42]
    agg.ingest(101.0, {"n1": snap("n1", 103, 62, 41), "n2": snap("n2", 7, 4, 3, node_ip="127.0.1.2")})
    t = agg.tick_for(MODEL)
    assert [(e["id"], e["delta"], e["total"]) for e in t["entries"]] == [
        ("NodePort/127.0.1.1:30008", 3, 103), ("NodePort/127.0.1.2:30008", 2, 7)]
    assert [(e["key"], e["delta"], e["total"]) for e in t["endpoints"]] == [("10.0.0.1:80", 3, 66),
                                                                           ("10.0.0.2:80", 2, 44)]
    assert t["endpoints"][0]["rate"] == 3.0 and t["available"] and t["unavailableNodes"] == []


def test_reset_counts_the_new_value_and_total_stays_monotone():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": snap("n1", 10, 10, 0)})
    agg.ingest(1.0, {"n1": snap("n1", 12, 12, 0)})
    agg.ingest(2.0, {"n1": snap("n1", 3, 3, 0)})  # the data plane restarted
    t = agg.tick_for(MODEL)
    ep = t["endpoints"][0]
    assert (ep["delta"], ep["total"]) == (3, 15)


def test_new_counter_on_a_known_node_counts_its_first_value():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": TrafficSnapshot("n1", "nftables", 0.0)})
    agg.ingest(1.0, {"n1": snap("n1", 4, 3, 1)})
    t = agg.tick_for(MODEL)
    assert [e["delta"] for e in t["endpoints"]] == [3, 1]


def test_unavailable_node_keeps_its_baseline():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": snap("n1", 10, 10, 0)})
    agg.ingest(1.0, {"n1": None})
    t = agg.tick_for(MODEL)
    assert t["unavailableNodes"] == ["n1"] and t["endpoints"][0]["delta"] == 0
    agg.ingest(2.0, {"n1": snap("n1", 15, 15, 0)})
    assert agg.tick_for(MODEL)["endpoints"][0]["delta"] == 5  # counted when it answers again


def test_rate_over_the_window():
    agg = traffic.Aggregator(window=10)
    agg.ingest(0.0, {"n1": snap("n1", 0, 0, 0)})
    for i in range(1, 21):
        agg.ingest(float(i), {"n1": snap("n1", 0, 2 * i if i <= 5 else 10, 0)})
        if i == 5:
            assert agg.tick_for(MODEL)["endpoints"][0]["rate"] == 2.0  # 10 connections over 5 s
    assert agg.tick_for(MODEL)["endpoints"][0]["rate"] == 0.0  # long after the burst


def test_rejected_and_userspace_flags():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": snap("n1", 0, 0, 0, rejected=1)})
    agg.ingest(1.0, {"n1": snap("n1", 0, 0, 0, rejected=4)})
    t = agg.tick_for(MODEL)
    assert t["rejected"] == {"delta": 3, "total": 4, "rate": 3.0, "counted": True}
    assert agg.dataplane() == "nftables"
    agg.ingest(2.0, {"n1": snap("n1", 0, 0, 0, plane="userspace", active=2), "n2": snap("n2", 0, 0, 0)})
    assert agg.dataplane() == "mixed"
    agg.ingest(3.0, {"n1": snap("n1", 0, 0, 0, plane="userspace", active=2)})
    t = agg.tick_for(MODEL)
    assert agg.dataplane() == "userspace" and t["rejected"]["counted"] is False
    assert t["endpoints"][0]["active"] == 2 and t["endpoints"][1]["active"] is None


def test_tick_without_service_or_data():
    agg = traffic.Aggregator()
    t = agg.tick_for({"service": None})
    assert t["available"] is False and t["entries"] == [] and t["rejected"]["total"] == 0
    t = agg.tick_for(MODEL)
    assert [e["total"] for e in t["entries"]] == [0, 0]


def test_other_services_are_not_mixed_in():
    agg = traffic.Aggregator()
    other = TrafficSnapshot("n1", "nftables", 0.0, endpoints=(EndpointCount("default", "other", "", "TCP",
                                                                            "10.0.0.1", 80, "a", 50),))
    agg.ingest(0.0, {"n1": other})
    assert [e["total"] for e in agg.tick_for(MODEL)["endpoints"]] == [0, 0]


def test_rebase_after_a_pause_keeps_totals_but_no_burst():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": snap("n1", 0, 10, 0)})
    agg.ingest(1.0, {"n1": snap("n1", 0, 12, 0)})
    agg.rebase()  # nobody watched for a while; 50 connections meanwhile
    agg.ingest(100.0, {"n1": snap("n1", 0, 62, 0)})
    t = agg.tick_for(MODEL)
    assert (t["endpoints"][0]["delta"], t["endpoints"][0]["total"], t["endpoints"][0]["rate"]) == (0, 62, 0.0)
    agg.ingest(101.0, {"n1": snap("n1", 0, 65, 0)})
    assert agg.tick_for(MODEL)["endpoints"][0]["delta"] == 3


def test_departed_counters_are_forgotten():
    agg = traffic.Aggregator()
    agg.ingest(0.0, {"n1": snap("n1", 1, 5, 5)})
    one = TrafficSnapshot("n1", "nftables", 0.0, endpoints=(EndpointCount(*SVC, "10.0.0.1", 80, "a", 6),))
    agg.ingest(1.0, {"n1": one})
    assert set(agg.totals) == {("endpoint", *SVC, "10.0.0.1:80")}
    agg.ingest(2.0, {"n1": None})  # an unavailable node keeps its counters
    assert set(agg.totals) == {("endpoint", *SVC, "10.0.0.1:80")}
