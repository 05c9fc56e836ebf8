"""Printers for discovery.k8s.io/v1: endpoint slices (address type, then ports and endpoints, three at most)."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import (
    AGE,
    MAX_LISTED,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_int,
    as_text,
    maps_in,
    name_of,
    texts_in,
    with_more,
)


def _slice_ports(ports: list[dict]) -> list[str]:
    labels = []
    for port in ports:
        if port.get("port") is not None:
            labels.append(str(as_int(port["port"])))
        elif isinstance(port.get("name"), str):
            labels.append(port["name"])
        else:
            labels.append("*")
    return labels


def _endpoint_slice_cells(endpoint_slice: dict, now: float) -> list[Cell]:
    ports = _slice_ports(maps_in(endpoint_slice.get("ports")))
    addresses = [address for endpoint in maps_in(endpoint_slice.get("endpoints"))
                 for address in texts_in(endpoint.get("addresses"))]
    return [name_of(endpoint_slice), as_text(endpoint_slice.get("addressType")),
            with_more(ports[:MAX_LISTED], len(ports), empty="<unset>"),
            with_more(addresses[:MAX_LISTED], len(addresses), empty="<unset>"),
            age(endpoint_slice, now)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("discovery.k8s.io", "endpointslices"): Printer(
        (NAME, Column("AddressType", "The type of address the slice carries: IPv4, IPv6 or FQDN."),
         Column("Ports", "The ports exposed by the slice's endpoints."),
         Column("Endpoints", "The addresses of the slice's endpoints, ready or not."), AGE),
        _endpoint_slice_cells),
}
