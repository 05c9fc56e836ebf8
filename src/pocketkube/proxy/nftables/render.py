"""Pure rendering of the Service model into `nft -f` scripts (no I/O here).

Layout of one node's table (`ip pocketkube-<node>-<node-ip>`), kube-proxy's nftables mode in miniature:

- `service-ips` (ipv4_addr . inet_proto . inet_service : verdict) holds every frontend this
  node serves: ClusterIPs, LoadBalancer and external IPs, and *this node's* IP with each
  nodePort. `nat-output` (host traffic) and `nat-prerouting` (traffic from other network
  namespaces) look a packet up there once, at DNAT priority, and `goto` the service chain.
- A service chain (`svc-…` for cluster traffic, `ext-…` when external traffic sees a different
  endpoint set under externalTrafficPolicy Local) DNATs to `numgen random mod N map
  { i : ip . port }`. With ClientIP affinity it checks the per-endpoint affinity sets first,
  then jumps with `numgen random mod N vmap` to an endpoint chain (`ep-…`) that refreshes
  its set and DNATs.
- Frontends with no usable endpoint go into `no-endpoint-services` instead, whose verdict is
  `goto reject-chain` (nothing anywhere: connection refused at once) or `drop` (endpoints
  exist but none local under a Local policy, as kube-proxy). It is consulted in the input
  hook only: host traffic to an untranslated VIP loops through `lo` and arrives there too,
  so a UDP client sees ECONNREFUSED from the ICMP error (an output-hook reject would fail
  its sendto() with EPERM instead), just as from a remote node.

Several node agents share one host kernel, each with its own table. Node-specific frontends
(nodePorts) only ever name the node's own IP, so they cannot clash. Shared VIPs (ClusterIP,
LoadBalancer, external IPs) are programmed by every table: the kernel runs the NAT chains of
one hook in order and stops at the first that binds a DNAT, so exactly one table translates a
connection. The no-endpoint check runs in the input hook, after every table's DNAT (done in
output or prerouting): a packet whose destination is still a VIP there was translated by no
table, so a lagging table can never refuse a connection another table serves, and a table
that only lacks *local* endpoints (Local policies) leaves the VIP to a table that has them.

Pods in their own network namespaces behind node bridges (container mode, `bridged_pods`) need
three more things, each off in process mode (pods on loopback addresses of the host's namespace):

- Hairpin: a pod reaching itself through its Service gets its own connection back with its own
  address as source, which it drops as martian, so that connection is masqueraded (to the
  bridge gateway). kube-proxy marks `ip saddr == endpoint` in each endpoint chain; our DNAT is
  inline (numgen map, no endpoint chains) and nft cannot compare two packet fields, so
  `nat-postrouting` looks `ip saddr . ip daddr` up in `hairpin-endpoints`, which holds `ep . ep`
  for every endpoint this table can DNAT to. It runs at srcnat, after the DNAT of any table.
- No endpoints, from a pod: a pod's packet to a VIP is forwarded, never input, so
  `filter-forward` checks `no-endpoint-services` too (after every table's prerouting DNAT,
  by the same argument as the input hook).
- No endpoints, from the host: VIPs route via the cluster bridge rather than `lo`, so an
  untranslated VIP would wait for ARP; `filter-output` checks it for non-loopback output
  (after every table's output DNAT), as kube-proxy does.

Traffic counters (`count_traffic`, counters.py names them): named counter objects, so chain
rewrites keep their counts; a delta deletes only the counters of departed endpoints and
frontends. Every endpoint then gets an endpoint chain (`counter name "ep-…"` before its DNAT;
the fan-out jumps there with `numgen random mod N vmap`), every frontend an entry and a
rejected counter, looked up in `entry-counters` / `reject-counters` (same keys as the verdict
maps) by a rule right before each base chain's verdict lookup. With counting off the table is
exactly the uncounted one above (inline DNAT), which the cost benchmark compares against.
Each new connection is counted exactly once on the host, however many node tables share it:
- entry: a table holds a frontend's entry-counters element iff it holds its `service-ips`
  element (same key, same first-wins merge), and that verdict always ends in a DNAT. The NAT
  chains of one hook run in order and stop at the first that binds a DNAT, so exactly the
  table that translates a connection counts it; NAT chains see only a connection's first
  packet (a looped-back packet's prerouting finds its NAT set up already), and a connection
  enters through output (host) or prerouting (other namespaces), never both. A nodePort is
  only in its own node's table.
- endpoint: the endpoint chain is reached only from that translating table, once.
- rejected: the reject-counters element exists iff the no-endpoint one does, and its verdict
  (reject or drop) ends the packet there, so the first table holding it counts it and no later
  table (nor hook: input, forward and non-lo output are exclusive for one packet) sees it. A
  rejected TCP connection is one attempt because it is reset (an ICMP error to a pod would be
  rate-limited, and the SYN retransmitted and counted again); a dropped one (Local policies)
  counts each retransmitted SYN, and UDP each datagram, since nothing is confirmed in conntrack.

Chain, set and element texts are kept per service port (`ServiceRules`) so an update only
diffs the service ports whose model changed (`render_delta`); `render_full` rebuilds the
table atomically (start, repair).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pocketkube.proxy.model import Endpoint, ServiceEntry, categorize_endpoints
from pocketkube.proxy.nftables import counters as ctr
from pocketkube.proxy.nftables.counters import CounterRef

FAMILY = "ip"
TABLE_PREFIX = "pocketkube-"
SERVICE_IPS_MAP = "service-ips"
NO_ENDPOINTS_MAP = "no-endpoint-services"
REJECT_CHAIN = "reject-chain"
NAT_OUTPUT_CHAIN = "nat-output"
NAT_PREROUTING_CHAIN = "nat-prerouting"
FILTER_INPUT_CHAIN = "filter-input"
FILTER_FORWARD_CHAIN = "filter-forward"
FILTER_OUTPUT_CHAIN = "filter-output"
NAT_POSTROUTING_CHAIN = "nat-postrouting"
HAIRPIN_SET = "hairpin-endpoints"
SNAT_PRIORITY = 100  # "srcnat"
DNAT_PRIORITY = -100  # "dstnat"
FILTER_PRIORITY = 0  # "filter"; in the input hook, so after all DNAT anyway
SERVICE_CHAIN_PREFIX = "svc-"
EXTERNAL_CHAIN_PREFIX = "ext-"
ENDPOINT_CHAIN_PREFIX = "ep-"
AFFINITY_SET_PREFIX = "aff-"
MAP_KEY_TYPE = "ipv4_addr . inet_proto . inet_service"
DISPATCH = "ip daddr . meta l4proto . th dport"
REJECT_VERDICT = f"goto {REJECT_CHAIN}"
DROP_VERDICT = "drop"

_BASE_CHAINS = (  # name, type, hook, priority, rule
    (NAT_OUTPUT_CHAIN, "nat", "output", DNAT_PRIORITY, f"{DISPATCH} vmap @{SERVICE_IPS_MAP}"),
    (NAT_PREROUTING_CHAIN, "nat", "prerouting", DNAT_PRIORITY, f"{DISPATCH} vmap @{SERVICE_IPS_MAP}"),
    (FILTER_INPUT_CHAIN, "filter", "input", FILTER_PRIORITY,
     f"ct state new {DISPATCH} vmap @{NO_ENDPOINTS_MAP}"),
)
_BRIDGED_POD_CHAINS = (  # the same, added when pods live in their own network namespaces
    (FILTER_FORWARD_CHAIN, "filter", "forward", FILTER_PRIORITY,
     f"ct state new {DISPATCH} vmap @{NO_ENDPOINTS_MAP}"),
    (FILTER_OUTPUT_CHAIN, "filter", "output", FILTER_PRIORITY,
     f"oifname != \"lo\" ct state new {DISPATCH} vmap @{NO_ENDPOINTS_MAP}"),
    (NAT_POSTROUTING_CHAIN, "nat", "postrouting", SNAT_PRIORITY,
     f"oifname != \"lo\" ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} masquerade"),
)


@dataclass(frozen=True)
class NodeContext:
    node_name: str
    node_ip: str
    bridged_pods: bool = False  # pods in their own netns behind bridges (container mode)
    count_traffic: bool = False  # named counters per entry, endpoint and rejection (the plane turns it on)

    @property
    def table(self) -> str:
        # The node IP is part of the name: two clusters on one host (a developer's `up` and a
        # test cluster) may both have a "node-1", but never the same node IP.
        return f"{TABLE_PREFIX}{self.node_name}-{self.node_ip.replace('.', '-')}"

    @property
    def qualified_table(self) -> str:
        return f"{FAMILY} {self.table}"


@dataclass(frozen=True, eq=True)
class ServiceRules:
    """Everything one service port contributes to the table, as nft text."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # chain -> rules
    sets: Mapping[str, int] = field(default_factory=dict)  # affinity set -> timeout seconds
    dispatch: Mapping[str, str] = field(default_factory=dict)  # `ip . proto . port` -> verdict
    no_endpoints: Mapping[str, str] = field(default_factory=dict)
    hairpin: frozenset[str] = frozenset()  # endpoint IPs a pod may reach itself at (bridged_pods)
    # count_traffic: the named counters this service port owns, and the counter map elements
    counters: Mapping[str, CounterRef] = field(default_factory=dict)
    entry_counters: Mapping[str, str] = field(default_factory=dict)  # dispatch key -> counter
    reject_counters: Mapping[str, str] = field(default_factory=dict)  # no-endpoint key -> counter


Ruleset = Mapping[tuple[str, str], ServiceRules]  # keyed like the model


def _ident(entry: ServiceEntry) -> str:
    sp = entry.port
    return f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name or f'p{sp.port}'}"


def _endpoint_names(ident: str, ep: Endpoint) -> tuple[str, str]:
    suffix = f"{ident}__{ep.ip}/{ep.port}"
    return ENDPOINT_CHAIN_PREFIX + suffix, AFFINITY_SET_PREFIX + suffix


def _fan_out(endpoints: tuple[Endpoint, ...], ident: str, proto: str, affinity: bool,
             chains: bool = False) -> tuple[str, ...]:
    """Pick an endpoint at random. Without affinity nor counting the DNAT is inline (no endpoint
    chains: nft's per-transaction cache load grows with the number of chains on the host)."""
    if not affinity and not chains:
        if len(endpoints) == 1:
            return (f"meta l4proto {proto} dnat to {endpoints[0].ip}:{endpoints[0].port}",)
        choices = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints))
        return (f"meta l4proto {proto} dnat to numgen random mod {len(endpoints)} map {{ {choices} }}",)
    names = [_endpoint_names(ident, ep) for ep in endpoints]
    rules = [f"ip saddr @{aff} goto {chain}" for chain, aff in names] if affinity else []
    if len(names) == 1:
        rules.append(f"goto {names[0][0]}")
    else:
        choices = ", ".join(f"{i} : goto {chain}" for i, (chain, _) in enumerate(names))
        rules.append(f"numgen random mod {len(names)} vmap {{ {choices} }}")
    return tuple(rules)


def _endpoint_rules(ep: Endpoint, proto: str, aff_set: str | None, counter: str | None) -> tuple[str, ...]:
    dnat = f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}"
    if counter:  # counted right before the DNAT: only a connection's first packet gets here
        dnat = f'counter name "{counter}" {dnat}'
    return (f"update @{aff_set} {{ ip saddr }}", dnat) if aff_set else (dnat,)


def _element_key(ip: str, proto: str, port: int) -> str:
    return f"{ip} . {proto} . {port}"


def service_rules(entry: ServiceEntry, ctx: NodeContext) -> ServiceRules:
    """The chains, sets and map elements for one service port on node `ctx`."""
    sp, proto, ident = entry.port, entry.port.protocol.lower(), _ident(entry)
    cat = categorize_endpoints(entry, ctx.node_name)
    affinity = sp.affinity_timeout > 0
    counting = ctx.count_traffic
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, int] = {}
    counters: dict[str, CounterRef] = {}
    base = (sp.namespace, sp.name, sp.port_name, sp.protocol)
    for ep in dict.fromkeys(cat.cluster + cat.external) if affinity or counting else ():
        chain, aff = _endpoint_names(ident, ep)
        if counting:
            counters[chain] = CounterRef(ctr.ENDPOINT, *base, ep.ip, ep.port, pod=ep.pod)
        chains[chain] = _endpoint_rules(ep, proto, aff if affinity else None, chain if counting else None)
        if affinity:
            sets[aff] = sp.affinity_timeout
    cluster_chain = SERVICE_CHAIN_PREFIX + ident
    if cat.cluster:
        chains[cluster_chain] = _fan_out(cat.cluster, ident, proto, affinity, counting)
    external_chain = cluster_chain
    if cat.external and cat.external != cat.cluster:
        external_chain = EXTERNAL_CHAIN_PREFIX + ident
        chains[external_chain] = _fan_out(cat.external, ident, proto, affinity, counting)
    empty_verdict = DROP_VERDICT if cat.has_any else REJECT_VERDICT
    dispatch: dict[str, str] = {}
    no_endpoints: dict[str, str] = {}
    entry_counters: dict[str, str] = {}
    reject_counters: dict[str, str] = {}

    def frontend(kind: str, ip: str, port: int, eps: tuple[Endpoint, ...], chain: str) -> None:
        if ":" in ip:  # the table is IPv4 only
            return
        key = _element_key(ip, proto, port)
        if counting:  # both counters live as long as the frontend, whichever map holds it now
            entry, rejected = ctr.frontend_counter_names(ident, ip, port)
            counters[entry] = CounterRef(ctr.ENTRY, *base, ip, port, kind=kind)
            counters[rejected] = CounterRef(ctr.REJECTED, *base, ip, port, kind=kind)
            (entry_counters if eps else reject_counters)[key] = entry if eps else rejected
        if eps:
            dispatch[key] = f"goto {chain}"
        else:
            no_endpoints[key] = empty_verdict

    for ip in sp.cluster_ips:
        frontend("ClusterIP", ip, sp.port, cat.cluster, cluster_chain)
    if sp.node_port:
        frontend("NodePort", ctx.node_ip, sp.node_port, cat.external, external_chain)
    for kind, ips in (("LoadBalancer", sp.load_balancer_ips), ("ExternalIP", sp.external_ips)):
        for ip in ips:
            frontend(kind, ip, sp.port, cat.external, external_chain)
    hairpin = frozenset(ep.ip for ep in cat.cluster + cat.external if ":" not in ep.ip) \
        if ctx.bridged_pods else frozenset()
    return ServiceRules(chains, sets, dispatch, no_endpoints, hairpin, counters, entry_counters, reject_counters)


def _merge_elements(rules: Iterable[ServiceRules], attr: str) -> dict[str, str]:
    """One verdict per key; on a clash (two Services claiming one external IP) the first wins."""
    merged: dict[str, str] = {}
    for r in rules:
        for key, verdict in getattr(r, attr).items():
            merged.setdefault(key, verdict)
    return merged


def _hairpin_elements(rules: Iterable[ServiceRules]) -> set[str]:
    return {f"{ip} . {ip}" for r in rules for ip in r.hairpin}


def _sorted_rules(ruleset: Ruleset) -> list[ServiceRules]:
    return [ruleset[k] for k in sorted(ruleset)]


def _set_decl(t: str, name: str, timeout: int) -> str:
    return f"add set {t} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _elements_cmd(verb: str, t: str, map_name: str, items: list[str]) -> list[str]:
    return [f"{verb} element {t} {map_name} {{ {', '.join(items)} }}"] if items else []


def _counting_rule(name: str, kind: str, rule: str) -> str | None:
    """The counter lookup that goes right before a base chain's verdict map lookup."""
    if kind == "nat" and f"@{SERVICE_IPS_MAP}" in rule:
        return f"counter name {DISPATCH} map @{ctr.ENTRY_COUNTERS_MAP}"
    if f"@{NO_ENDPOINTS_MAP}" in rule:
        return rule.replace(f"{DISPATCH} vmap @{NO_ENDPOINTS_MAP}", f"counter name {DISPATCH} map @{ctr.REJECT_COUNTERS_MAP}")
    return None


def _skeleton(ctx: NodeContext) -> list[str]:
    t = ctx.qualified_table
    lines = [
        f"add table {t} {{ comment \"pocketkube Services for node {ctx.node_name}; managed, do not edit\" ; }}",
        f"add map {t} {SERVICE_IPS_MAP} {{ type {MAP_KEY_TYPE} : verdict ; }}",
        f"add map {t} {NO_ENDPOINTS_MAP} {{ type {MAP_KEY_TYPE} : verdict ; }}",
        f"add chain {t} {REJECT_CHAIN}",
        # TCP gets a reset: a host rate-limits ICMP errors to a non-loopback source (1/s), so a
        # pod's SYN would be refused only on a retransmit, a second (counted) attempt a second later.
        f"add rule {t} {REJECT_CHAIN} meta l4proto tcp reject with tcp reset",
        f"add rule {t} {REJECT_CHAIN} reject",
    ]
    if ctx.count_traffic:
        lines += [f"add map {t} {name} {{ type {MAP_KEY_TYPE} : counter ; }}"
                  for name in (ctr.ENTRY_COUNTERS_MAP, ctr.REJECT_COUNTERS_MAP)]
    if ctx.bridged_pods:
        lines.append(f"add set {t} {HAIRPIN_SET} {{ type ipv4_addr . ipv4_addr ; }}")
    for name, kind, hook, priority, rule in _BASE_CHAINS + (_BRIDGED_POD_CHAINS if ctx.bridged_pods else ()):
        lines.append(f"add chain {t} {name} {{ type {kind} hook {hook} priority {priority} ; policy accept ; }}")
        if ctx.count_traffic and (counting := _counting_rule(name, kind, rule)):
            lines.append(f"add rule {t} {name} {counting}")
        lines.append(f"add rule {t} {name} {rule}")
    return lines


def _counter_decl(t: str, name: str, seed: Mapping[str, int]) -> str:
    """Declare a named counter; `seed`: the value a full sync carries over from the old table."""
    packets = seed.get(name)
    return f"add counter {t} {name}" + (f" {{ packets {packets} bytes 0 ; }}" if packets else "")


_ELEMENT_MAPS = ((SERVICE_IPS_MAP, "dispatch"), (NO_ENDPOINTS_MAP, "no_endpoints"),
                 (ctr.ENTRY_COUNTERS_MAP, "entry_counters"), (ctr.REJECT_COUNTERS_MAP, "reject_counters"))


def _element_value(attr: str, value: str) -> str:
    return f'"{value}"' if attr.endswith("counters") else value


def render_delete(ctx: NodeContext) -> str:
    """Delete the table; succeeds whether or not it exists."""
    t = ctx.qualified_table
    return f"add table {t}\ndelete table {t}\n"


def render_full(ctx: NodeContext, ruleset: Ruleset, seed: Mapping[str, int] | None = None) -> str:
    """Replace the whole table in one transaction (no window without rules). `seed`: counter
    values read from the table being replaced, so counts go on across a full sync."""
    t = ctx.qualified_table
    lines = render_delete(ctx).splitlines() + _skeleton(ctx)
    rules = _sorted_rules(ruleset)
    for r in rules:
        lines += [_counter_decl(t, name, seed or {}) for name in r.counters]
        lines += [_set_decl(t, name, timeout) for name, timeout in r.sets.items()]
        lines += [f"add chain {t} {name}" for name in r.chains]
    for r in rules:
        for name, chain_rules in r.chains.items():
            lines += [f"add rule {t} {name} {rule}" for rule in chain_rules]
    for map_name, attr in _ELEMENT_MAPS:
        merged = _merge_elements(rules, attr)
        lines += _elements_cmd("add", t, map_name, [f"{k} : {_element_value(attr, v)}" for k, v in merged.items()])
    lines += _elements_cmd("add", t, HAIRPIN_SET, sorted(_hairpin_elements(rules)))
    return "\n".join(lines) + "\n"


def changed_keys(old: Ruleset, new: Ruleset) -> list[tuple[str, str]]:
    return [k for k in old.keys() | new.keys()
            if (a := old.get(k)) is not (b := new.get(k)) and a != b]


def _merge_chains(rules: Iterable[ServiceRules]) -> tuple[dict[str, tuple[str, ...]], dict[str, int], set[str]]:
    chains: dict[str, tuple[str, ...]] = {}
    sets: dict[str, int] = {}
    counters: set[str] = set()
    for r in rules:
        chains.update(r.chains)
        sets.update(r.sets)
        counters.update(r.counters)
    return chains, sets, counters


def _element_delta(t: str, map_name: str, attr: str, old: dict[str, str], new: dict[str, str]) -> tuple[list, list]:
    gone = [k for k, v in old.items() if new.get(k) != v]
    added = [f"{k} : {_element_value(attr, v)}" for k, v in new.items() if old.get(k) != v]
    return _elements_cmd("delete", t, map_name, gone), _elements_cmd("add", t, map_name, added)


def render_delta(ctx: NodeContext, old: Ruleset, new: Ruleset) -> str:
    """The one transaction turning table state `old` into `new`; '' when nothing changed.

    Only service ports whose rules differ are touched; map elements are diffed across the
    whole table because a clash between two Services can hand a key from one to the other.
    """
    keys = changed_keys(old, new)
    if not keys:
        return ""
    t = ctx.qualified_table
    old_chains, old_sets, old_counters = _merge_chains(old[k] for k in keys if k in old)
    new_chains, new_sets, new_counters = _merge_chains(new[k] for k in keys if k in new)
    recreated_sets = {s for s in old_sets.keys() & new_sets.keys() if old_sets[s] != new_sets[s]}
    referencing = {c for c, rules in new_chains.items()
                   if recreated_sets and any(f"@{s} " in r for r in rules for s in recreated_sets)}
    removed_chains = [c for c in old_chains if c not in new_chains]
    rewritten = [c for c in new_chains
                 if c in old_chains and (old_chains[c] != new_chains[c] or c in referencing)]
    added_chains = [c for c in new_chains if c not in old_chains]
    removals: list[str] = []
    additions: list[str] = []
    for map_name, attr in _ELEMENT_MAPS:
        gone, added = _element_delta(t, map_name, attr, _merge_elements(_sorted_rules(old), attr),
                                     _merge_elements(_sorted_rules(new), attr))
        removals += gone
        additions += added
    # Hairpin pairs are a union over the table: an endpoint IP may back several Services.
    old_pairs, new_pairs = _hairpin_elements(old.values()), _hairpin_elements(new.values())
    removals += _elements_cmd("delete", t, HAIRPIN_SET, sorted(old_pairs - new_pairs))
    additions += _elements_cmd("add", t, HAIRPIN_SET, sorted(new_pairs - old_pairs))
    # Order matters: drop every reference to a chain, set or counter before deleting it. Counters
    # of surviving endpoints and frontends are never touched, so their counts go on.
    lines = removals
    lines += [f"flush chain {t} {c}" for c in removed_chains + rewritten]
    lines += [f"delete set {t} {s}" for s in old_sets if s not in new_sets or s in recreated_sets]
    lines += [f"delete chain {t} {c}" for c in removed_chains]
    lines += [f"delete counter {t} {c}" for c in sorted(old_counters - new_counters)]
    lines += [f"add counter {t} {c}" for c in sorted(new_counters - old_counters)]
    lines += [_set_decl(t, s, new_sets[s]) for s in new_sets if s not in old_sets or s in recreated_sets]
    lines += [f"add chain {t} {c}" for c in added_chains]
    lines += [f"add rule {t} {c} {rule}" for c in added_chains + rewritten for rule in new_chains[c]]
    lines += additions
    return "\n".join(lines) + "\n" if lines else ""
