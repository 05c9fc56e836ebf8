"""Counter math for the live map (spec §2 TRAFFIC): deltas with resets, totals, windowed rates.

Pure. Each tick the collector hands `Aggregator.ingest` every node's TrafficSnapshot (None for a
node that did not answer). Per (node, counter) the delta is `v - prev`, or `v` after a decrease (the
data plane restarted, as Prometheus treats resets). The very first read of a node only sets the
baseline (its counts predate us: they go into totals, not into this tick's deltas); a counter that
appears later on a known node counts its whole first value as new. Rates are the deltas of the
last `window` seconds over the time covered. `tick_for` cuts one service port out of a tick.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from pocketkube.api.traffic import TrafficSnapshot

WINDOW_SECONDS = 10

# Keys: ("entry", ns, service, portName, protocol, "<kind>/<ip:port>"), ("endpoint", ..., "<ip:port>"),
# ("rejected", ..., "<ip:port>"): the ids the MODEL uses, so a tick maps onto the map directly.
Key = tuple[str, str, str, str, str, str]


def counter_delta(prev: int | None, value: int) -> int:
    if prev is None:
        return value
    return value - prev if value >= prev else value


def share(count: float, total: float) -> float | None:
    return count / total if total > 0 else None


def sigma(p: float, n: int) -> float | None:
    """The standard deviation of an observed share when n connections each pick with probability p."""
    return math.sqrt(p * (1 - p) / n) if n > 0 and 0 <= p <= 1 else None


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def snapshot_counts(snap: TrafficSnapshot) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for e in snap.entries:
        k = ("entry", e.namespace, e.service, e.portName, e.protocol, f"{e.kind}/{_hostport(e.ip, e.port)}")
        out[k] = out.get(k, 0) + e.connections
    for p in snap.endpoints:
        k = ("endpoint", p.namespace, p.service, p.portName, p.protocol, _hostport(p.ip, p.port))
        out[k] = out.get(k, 0) + p.connections
    for r in snap.rejected:
        k = ("rejected", r.namespace, r.service, r.portName, r.protocol, _hostport(r.ip, r.port))
        out[k] = out.get(k, 0) + r.connections
    return out


def _active(snap: TrafficSnapshot) -> dict[Key, int]:
    return {("endpoint", p.namespace, p.service, p.portName, p.protocol, _hostport(p.ip, p.port)): p.active
            for p in snap.endpoints if p.active is not None}


@dataclass
class Tick:
    t: float
    deltas: dict[Key, int]
    unavailable: list[str]
    dataplanes: dict[str, str]
    active: dict[Key, int]


@dataclass
class Aggregator:
    window: float = WINDOW_SECONDS
    last: dict[str, dict[Key, int]] = field(default_factory=dict)  # node -> key -> last value
    totals: dict[Key, int] = field(default_factory=dict)
    ring: deque[tuple[float, dict[Key, int]]] = field(default_factory=deque)
    started: float | None = None
    dataplanes: dict[str, str] = field(default_factory=dict)
    current: Tick | None = None
    rebasing: set[str] = field(default_factory=set)  # nodes whose next read counts in totals only

    def rebase(self) -> None:
        """After a pause in reading (no page was open): the next read of each node brings the
        totals up to date but is no tick's delta, or a page opened now would see every connection
        made while nobody watched arrive at once."""
        self.rebasing = set(self.last)
        self.ring.clear()
        self.started = None

    def ingest(self, t: float, snapshots: dict[str, TrafficSnapshot | None]) -> Tick:
        deltas: dict[Key, int] = {}
        active: dict[Key, int] = {}
        unavailable = sorted(n for n, s in snapshots.items() if s is None)
        for node, snap in snapshots.items():
            if snap is None:
                continue
            self.dataplanes[node] = snap.dataplane
            counts = snapshot_counts(snap)
            first = node not in self.last
            quiet = first or node in self.rebasing
            self.rebasing.discard(node)
            prev = self.last.get(node, {})
            for k, v in counts.items():
                d = v if first else counter_delta(prev.get(k), v)
                self.totals[k] = self.totals.get(k, 0) + d
                if not quiet and d:
                    deltas[k] = deltas.get(k, 0) + d
            self.last[node] = counts
            for k, v in _active(snap).items():
                active[k] = active.get(k, 0) + v
        for node in [n for n in self.dataplanes if n not in snapshots]:  # nodes gone from the cluster
            self.dataplanes.pop(node)
            self.last.pop(node, None)
        live = set().union(*self.last.values()) if self.last else set()
        if len(self.totals) > len(live):  # counters no data plane has any more (departed endpoints)
            for k in [k for k in self.totals if k not in live]:
                del self.totals[k]
        if self.started is None:
            self.started = t
        self.ring.append((t, deltas))
        while self.ring and self.ring[0][0] <= t - self.window:
            self.ring.popleft()
        self.current = Tick(t, deltas, unavailable, dict(self.dataplanes), active)
        return self.current

    def rate(self, key: Key) -> float:
        if self.current is None or self.started is None:
            return 0.0
        elapsed = min(self.window, self.current.t - self.started)
        if elapsed <= 0:
            return 0.0
        return sum(d.get(key, 0) for _, d in self.ring) / elapsed

    def dataplane(self) -> str | None:
        kinds = set(self.dataplanes.values())
        if not kinds:
            return None
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def keys_for(self, kind: str, ns: str, service: str, port_name: str, protocol: str) -> list[Key]:
        return [k for k in self.totals if k[:5] == (kind, ns, service, port_name, protocol)]

    def tick_for(self, model: dict) -> dict:
        """TRAFFIC for the service port of `model` (its entries and endpoints zero-filled)."""
        tick = self.current
        t = tick.t if tick is not None else 0.0
        base = {"t": round(t, 3), "windowSeconds": self.window, "available": tick is not None and (
            len(tick.dataplanes) > 0), "unavailableNodes": tick.unavailable if tick is not None else [],
            "entries": [], "endpoints": [], "rejected": {"delta": 0, "total": 0, "rate": 0.0, "counted": True}}
        svc = model.get("service")
        if svc is None or svc.get("port") is None:
            return base
        p = svc["port"]
        scope = (svc["namespace"], svc["name"], p["name"], p["protocol"])
        deltas = tick.deltas if tick is not None else {}
        active = tick.active if tick is not None else {}

        def row(k: Key) -> dict:
            return {"delta": deltas.get(k, 0), "total": self.totals.get(k, 0), "rate": round(self.rate(k), 3)}

        ids = dict.fromkeys([e["id"] for e in model.get("entries") or []] +
                            [k[5] for k in self.keys_for("entry", *scope)])
        base["entries"] = [{"id": i} | row(("entry", *scope, i)) for i in ids]
        keys = dict.fromkeys([e["key"] for e in model.get("endpoints") or []] +
                             [k[5] for k in self.keys_for("endpoint", *scope)])
        base["endpoints"] = [{"key": i} | row(("endpoint", *scope, i)) |
                             {"active": active.get(("endpoint", *scope, i))} for i in keys]
        rejected = [row(k) for k in self.keys_for("rejected", *scope)]
        base["rejected"] = {"delta": sum(r["delta"] for r in rejected), "total": sum(r["total"] for r in rejected),
                            "rate": round(float(sum(r["rate"] for r in rejected)), 3),
                            # the userspace plane never sees a refused attempt (the kernel refuses it)
                            "counted": not self.dataplanes or any(d != "userspace" for d in self.dataplanes.values())}
        return base
