"""A data plane's traffic snapshot as Prometheus families (`pocketkube_proxy_*`, served by the node
agent at /metrics). kube-proxy has no per-Service or per-endpoint traffic metric, so these are an
extension under pocketkube's prefix: counters live in the data plane, read at scrape time.

Labels: node, namespace, service, port (the service port's name, "" when unnamed), protocol,
dataplane; endpoint (ip:port) and pod on endpoint series, kind and address (ip:port) on entry
series, address on rejected ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pocketkube.api.traffic import TrafficSnapshot

BASE = ("node", "namespace", "service", "port", "protocol", "dataplane")
ENDPOINT = (*BASE, "endpoint", "pod")
ENTRY = (*BASE, "kind", "address")
REJECTED = (*BASE, "address")


def families(snap: TrafficSnapshot | None) -> Iterable[Metric]:
    entries = CounterMetricFamily("pocketkube_proxy_entry_connections",
                                  "New connections (TCP) or sessions (UDP) that entered through each Service "
                                  "frontend (node IP:nodePort, ClusterIP, load-balancer or external IP).",
                                  labels=ENTRY)
    endpoints = CounterMetricFamily("pocketkube_proxy_endpoint_connections",
                                    "New connections (TCP) or sessions (UDP) this node sent to each endpoint.",
                                    labels=ENDPOINT)
    rejected = CounterMetricFamily("pocketkube_proxy_rejected_connections",
                                   "New connections refused or dropped at a frontend with no usable endpoint "
                                   "(not counted by the userspace data plane).", labels=REJECTED)
    active = GaugeMetricFamily("pocketkube_proxy_endpoint_active_connections",
                               "Connections (or UDP sessions) open now to each endpoint (userspace data plane).",
                               labels=ENDPOINT)
    volume = CounterMetricFamily("pocketkube_proxy_endpoint_bytes",
                                 "Bytes proxied to (in) and from (out) each endpoint (userspace data plane).",
                                 labels=(*ENDPOINT, "direction"))
    if snap is not None:
        node, plane = snap.node, snap.dataplane
        for e in snap.entries:
            entries.add_metric((node, e.namespace, e.service, e.portName, e.protocol, plane, e.kind,
                                f"{e.ip}:{e.port}"), e.connections)
        for r in snap.rejected:
            rejected.add_metric((node, r.namespace, r.service, r.portName, r.protocol, plane, f"{r.ip}:{r.port}"),
                                r.connections)
        for p in snap.endpoints:
            labels = (node, p.namespace, p.service, p.portName, p.protocol, plane, f"{p.ip}:{p.port}", p.pod)
            endpoints.add_metric(labels, p.connections)
            if p.active is not None:
                active.add_metric(labels, p.active)
            if p.bytesIn is not None and p.bytesOut is not None:
                volume.add_metric((*labels, "in"), p.bytesIn)
                volume.add_metric((*labels, "out"), p.bytesOut)
    return entries, endpoints, rejected, active, volume


class TrafficCollector:
    """Registers the families; `snapshot` is refreshed by whoever serves a scrape."""

    def __init__(self) -> None:
        self.snapshot: TrafficSnapshot | None = None

    def collect(self) -> Iterable[Metric]:
        return families(self.snapshot)
