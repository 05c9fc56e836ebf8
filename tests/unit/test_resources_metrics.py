"""Resource usage: /proc parsing, the Summary document's rates, and the metrics.k8s.io objects."""

from __future__ import annotations

import os

import pytest

from pocketkube.agent.kubelet.stats import UsageSampler, rate, summary
from pocketkube.agent.runtime import procstats
from pocketkube.agent.runtime.interface import ContainerUsage
from pocketkube.apiserver import discovery, resource_metrics


def test_parse_stat_with_a_tricky_command():
    line = "42 (a (weird) name) S 1 40 40 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 123 1000 77 rest"
    assert procstats.parse_stat(line) == (40, 300, 77)


def test_self_usage_is_positive():
    cpu, rss = procstats.self_usage()
    assert rss > 0 and cpu >= 0
    groups = procstats.group_usage({os.getpgrp()})
    assert groups[os.getpgrp()][1] > 0


def test_rate():
    assert rate(None, 10, 1) == 0 and rate(20, 10, 1) == 0 and rate(0, 10**9, 2.0) == 5 * 10**8


def u(pod: str, name: str, cpu: int, mem: int) -> ContainerUsage:
    return ContainerUsage(pod, name, cpu, mem, 0.0)


def test_summary_sums_pods_and_node():
    pods = {"u1": {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}}
    before = {("u1", "a"): u("u1", "a", 0, 1), ("u1", "b"): u("u1", "b", 10**9, 1)}
    after = {("u1", "a"): u("u1", "a", 10**9, 1024), ("u1", "b"): u("u1", "b", 10**9, 2048),
             ("gone", "x"): u("gone", "x", 5, 5)}
    doc = summary("node-1", pods, before, after, 2.0, (10**9, 4096, 0), "T")
    pod = doc["pods"][0]
    assert pod["podRef"] == {"name": "p", "namespace": "ns", "uid": "u1"}
    assert pod["cpu"]["usageNanoCores"] == 5 * 10**8 and pod["memory"]["workingSetBytes"] == 3072
    assert [c["name"] for c in pod["containers"]] == ["a", "b"]
    assert doc["node"]["cpu"]["usageNanoCores"] == 10**9 and doc["node"]["memory"]["workingSetBytes"] == 4096 + 3072
    assert doc["window"] == "2s"


class FakeRuntime:
    def __init__(self) -> None:
        self.cpu = 0

    async def usage(self):
        self.cpu += 10**8
        return [u("u1", "c", self.cpu, 1 << 20)]


async def test_sampler_measures_over_a_window():
    sampler = UsageSampler(FakeRuntime(), lambda: (0, 0))
    doc = await sampler.summary("n", {"u1": {"metadata": {"name": "p", "namespace": "d", "uid": "u1"}}})
    assert doc["pods"][0]["cpu"]["usageNanoCores"] > 0


def test_metrics_objects():
    node = {"metadata": {"name": "node-1", "labels": {"a": "b"}}}
    summary_doc = {"node": {"cpu": {"time": "T", "usageNanoCores": 1234}, "memory": {"workingSetBytes": 2 << 20}},
                   "window": "1.5s"}
    m = resource_metrics.node_metrics(node, summary_doc, "NOW")
    assert m == {"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                 "metadata": {"name": "node-1", "creationTimestamp": "NOW", "labels": {"a": "b"}},
                 "timestamp": "T", "window": "1.5s", "usage": {"cpu": "1234n", "memory": "2Mi"}}


def test_metrics_group_is_discoverable():
    assert discovery.api_group("metrics.k8s.io")["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    names = [r["name"] for r in discovery.api_resource_list("metrics.k8s.io", "v1beta1")["resources"]]
    assert names == ["nodes", "pods"]
    groups = [g["name"] for g in discovery.api_group_list()["groups"]]
    assert "metrics.k8s.io" in groups and "policy" in groups


@pytest.mark.parametrize("path", ["/apis/metrics.k8s.io/v1beta1/namespaces/x/nodes",
                                  "/apis/metrics.k8s.io/v1beta1/widgets"])
async def test_unknown_metrics_paths_are_404(path):
    from pocketkube.api import errors

    class Req:
        method = "GET"
        query: dict = {}
    with pytest.raises(errors.NotFound):
        await resource_metrics.serve(Req(), path, None, lambda n: "")


def test_a_named_metric_is_the_object_or_a_404_worded_as_metrics_server():
    from pocketkube.api import errors

    assert resource_metrics._one_or_list("PodMetrics", "p", "ns/p", [{"x": 1}]) == {"x": 1}
    assert resource_metrics._one_or_list("NodeMetrics", "", "", [])["kind"] == "NodeMetricsList"
    with pytest.raises(errors.NotFound, match='podmetrics.metrics.k8s.io "ns/p" not found'):
        resource_metrics._one_or_list("PodMetrics", "p", "ns/p", [])
    with pytest.raises(errors.NotFound, match='nodemetrics.metrics.k8s.io "n" not found'):
        resource_metrics._one_or_list("NodeMetrics", "n", "n", [])
