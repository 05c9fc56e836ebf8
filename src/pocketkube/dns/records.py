"""The cluster zone's records, as CoreDNS's `kubernetes` plugin publishes them (pure functions).

A Service `web` in namespace `shop` with zone `cluster.local` gives:
- `web.shop.svc.cluster.local.`: A/AAAA of its ClusterIPs; for a headless Service (clusterIP
  None) the ready endpoint addresses instead; for an ExternalName Service a CNAME.
- `_http._tcp.web.shop.svc.cluster.local.`: one SRV per named port (the Service's port, target
  the Service's name; for a headless Service one per endpoint, port from its EndpointSlice,
  target the endpoint's name). The Service's own name also answers SRV for every port.
- `<hostname>.web.shop.svc.cluster.local.` for each endpoint of a headless Service: its
  EndpointSlice `hostname` (StatefulSet pods with a matching subdomain), else its IP with dashes
  (`10-244-1-5`), as CoreDNS does with `endpoint_pod_names` off.
- PTR for every ClusterIP (→ the Service) and every ready endpoint address (→ the endpoint name).
Records are `{owner: {rdtype: (rdata text, ...)}}` with lower-case absolute owners; TTLs are the
zone's (5 s, CoreDNS's default), applied when answers are built.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dns.rdatatype import AAAA, CNAME, PTR, SRV, A

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_ZONE = "cluster.local"
TTL = 5

Records = dict[str, dict[int, tuple[str, ...]]]


def absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def dashed(ip: str) -> str:
    """An address as one DNS label: 10.244.1.5 → 10-244-1-5, fd00::1 → fd00--1."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """The inverse of dashed() for pod names (`1-2-3-4.ns.pod.zone`), None when not an IP."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def _address_type(ip: str) -> int | None:
    try:
        return A if ipaddress.ip_address(ip).version == 4 else AAAA
    except ValueError:
        return None


def _add(records: Records, owner: str, rdtype: int, rdata: str) -> None:
    current = records.setdefault(owner, {}).get(rdtype, ())
    if rdata not in current:
        records[owner][rdtype] = (*current, rdata)


def _cluster_ips(spec: dict) -> list[str]:
    ips = list(spec.get("clusterIPs") or [])
    if not ips and spec.get("clusterIP"):
        ips = [spec["clusterIP"]]
    return [ip for ip in ips if ip and ip != "None"]


def ready_endpoints(slices: Iterable[dict], publish_not_ready: bool = False
                    ) -> list[tuple[str, str | None, list[dict]]]:
    """(address, hostname, the slice's ports) of every endpoint the DNS publishes: ready ones (an
    unset condition counts as ready), or all with publishNotReadyAddresses; first one wins."""
    out: list[tuple[str, str | None, list[dict]]] = []
    seen: set[str] = set()
    for slc in slices:
        ports = [p for p in slc.get("ports") or [] if isinstance(p, dict)]
        for ep in slc.get("endpoints") or []:
            ready = ((ep.get("conditions") or {}).get("ready"))
            if ready is False and not publish_not_ready:
                continue
            for address in ep.get("addresses") or []:
                if address in seen or _address_type(address) is None:
                    continue
                seen.add(address)
                out.append((address, ep.get("hostname") or None, ports))
    return out


def _srv_owner(port: dict, service_fqdn: str) -> str | None:
    name = port.get("name")
    if not name:
        return None
    return f"_{name}._{(port.get('protocol') or 'TCP').lower()}.{service_fqdn}".lower()


def service_records(svc: dict, slices: Iterable[dict], zone: str = DEFAULT_ZONE) -> Records:
    """Every record one Service contributes to the zone (its slices: the ones labelled with it)."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    fqdn = absolute(f"{meta.get('name', '')}.{meta.get('namespace', '')}.svc.{zone}")
    records: Records = {}
    if spec.get("type") == "ExternalName":
        target = spec.get("externalName") or ""
        if target:
            _add(records, fqdn, CNAME, absolute(target))
        return records
    headless = spec.get("clusterIP") == "None"
    srv: dict[str, list[tuple[object, str]]] = {}  # owner → (port, target); weights once all are known
    if not headless:
        for ip in _cluster_ips(spec):
            rdtype = _address_type(ip)
            if rdtype is not None:
                _add(records, fqdn, rdtype, ip)
                _add(records, reverse_name(ip), PTR, fqdn)
        records.setdefault(fqdn, {})
        for port in (p for p in spec.get("ports") or [] if isinstance(p, dict)):
            for owner in filter(None, (_srv_owner(port, fqdn), fqdn)):
                srv.setdefault(owner, []).append((port.get("port"), fqdn))
    endpoints = ready_endpoints(slices, bool(spec.get("publishNotReadyAddresses")))
    # Endpoints have names of their own under the Service's (CoreDNS answers them for ClusterIP
    # Services too); a headless Service's name is its endpoints, and its SRV records point at them.
    for ip, hostname, ep_ports in endpoints:
        rdtype = _address_type(ip)
        assert rdtype is not None
        host = absolute(f"{hostname or dashed(ip)}.{fqdn}")
        _add(records, host, rdtype, ip)
        _add(records, reverse_name(ip), PTR, host)
        if headless:
            _add(records, fqdn, rdtype, ip)
            for port in ep_ports:
                for owner in filter(None, (_srv_owner(port, fqdn), fqdn)):
                    srv.setdefault(owner, []).append((port.get("port"), host))
    for owner, entries in srv.items():
        weight = 100 // len(entries)  # CoreDNS: 100 shared among the owner's records, floored
        for port, target in entries:
            _add(records, owner, SRV, f"0 {weight} {port} {target}")
    return records


def slice_service_key(slc: dict) -> str | None:
    meta = slc.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None
