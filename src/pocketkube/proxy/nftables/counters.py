"""Traffic counters of the nftables data plane: their names, what each one counts, and reading them.

Every counter is a named nft object (`counter <name>`), so it survives the chain rewrites of a
sync; the renderer declares and deletes them with the service ports that own them (render.py).
Three roles:

- entry (`en-…`): new connections that entered through one frontend (node IP:nodePort,
  ClusterIP, LoadBalancer or external IP) and were translated by this table; looked up in the
  `entry-counters` map right before the dispatch in the NAT chains.
- endpoint (`ep-…`): new connections this table DNATed to one endpoint of one service port; the
  first rule of that endpoint's chain.
- rejected (`rj-…`): new connections (or, under a `drop` verdict, each retransmitted attempt)
  refused or dropped at a frontend with no usable endpoint; looked up in `reject-counters` right
  before the no-endpoint verdict map in the filter chains.

NAT chains only see a connection's first packet, so packet counts are connection counts.
Reading: `nft -j list counters table ip <table>` (libnftables-json(5)), parsed here into
name -> packets and joined with the plane's own name -> CounterRef bookkeeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pocketkube.api.traffic import EndpointCount, EntryCount, RejectCount, TrafficSnapshot

ENTRY_COUNTERS_MAP = "entry-counters"
REJECT_COUNTERS_MAP = "reject-counters"
ENTRY_PREFIX = "en-"
ENDPOINT_PREFIX = "ep-"  # the endpoint chain's name (counters and chains have separate namespaces)
REJECT_PREFIX = "rj-"

ENTRY, ENDPOINT, REJECTED = "entry", "endpoint", "rejected"


@dataclass(frozen=True)
class CounterRef:
    """What one named counter counts: its role, service port and address (and entry kind or pod)."""

    role: str  # ENTRY | ENDPOINT | REJECTED
    namespace: str
    service: str
    port_name: str
    protocol: str
    ip: str
    port: int
    kind: str = ""  # entries: NodePort | ClusterIP | LoadBalancer | ExternalIP
    pod: str = ""  # endpoints: the Pod behind it, if any


def frontend_counter_names(ident: str, ip: str, port: int) -> tuple[str, str]:
    """(entry, rejected) counter names of one frontend of the service port `ident`."""
    suffix = f"{ident}__{ip}/{port}"
    return ENTRY_PREFIX + suffix, REJECT_PREFIX + suffix


def parse_counters(output: str | Mapping[str, Any]) -> dict[str, int]:
    """`nft -j list counters ...` output -> {counter name: packets}. ValueError when malformed."""
    try:
        doc = json.loads(output) if isinstance(output, str) else output
        items = doc["nftables"]
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"not nft JSON output: {e}") from None
    if not isinstance(items, list):
        raise ValueError("not nft JSON output: 'nftables' is not a list")
    counts: dict[str, int] = {}
    for item in items:
        counter = item.get("counter") if isinstance(item, dict) else None
        if isinstance(counter, dict) and isinstance(counter.get("name"), str):
            packets = counter.get("packets", 0)
            if not isinstance(packets, int) or isinstance(packets, bool) or packets < 0:
                raise ValueError(f"counter {counter['name']!r} has no valid packet count: {packets!r}")
            counts[counter["name"]] = packets
    return counts


def snapshot(node: str, at: float, refs: Iterable[tuple[str, CounterRef]],
             values: Mapping[str, int]) -> TrafficSnapshot:
    """The wire snapshot for the counters named in `refs`; a counter the read did not see (created
    or deleted by a sync racing the read) is left out rather than reported as 0."""
    entries: list[EntryCount] = []
    endpoints: list[EndpointCount] = []
    rejected: list[RejectCount] = []
    for name, ref in refs:
        n = values.get(name)
        if n is None:
            continue
        base = (ref.namespace, ref.service, ref.port_name, ref.protocol)
        if ref.role == ENTRY:
            entries.append(EntryCount(*base, kind=ref.kind, ip=ref.ip, port=ref.port, connections=n))
        elif ref.role == ENDPOINT:
            endpoints.append(EndpointCount(*base, ip=ref.ip, port=ref.port, pod=ref.pod, connections=n))
        else:
            rejected.append(RejectCount(*base, ip=ref.ip, port=ref.port, connections=n))
    return TrafficSnapshot(node, "nftables", at, tuple(entries), tuple(endpoints), tuple(rejected))
