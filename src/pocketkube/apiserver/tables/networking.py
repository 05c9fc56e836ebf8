"""Printers for networking.k8s.io/v1 (upstream printIngress and printIngressClass)."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import AGE, NAME, Cell, Column, Printer, age, dig, maps_in, name_of

_MAX_HOSTS = 3


def format_hosts(rules: list[dict]) -> str:
    """The first three hosts, `+ N more...` past them, `*` when no rule names one."""
    hosts = [r["host"] for r in rules[:_MAX_HOSTS] if isinstance(r.get("host"), str) and r["host"]]
    if not hosts:
        return "*"
    shown = ",".join(hosts)
    return f"{shown} + {len(rules) - _MAX_HOSTS} more..." if len(rules) > _MAX_HOSTS else shown


def format_address(ing: dict, wide: bool = False) -> str:
    entries = maps_in(dig(ing, "status", "loadBalancer", "ingress"))
    text = ",".join(str(e.get("ip") or e.get("hostname") or "") for e in entries
                    if e.get("ip") or e.get("hostname"))
    return text[:13] + "..." if not wide and len(text) > 16 else text


def _ingress_cells(ing: dict, now: float) -> list[Cell]:
    class_name = dig(ing, "spec", "ingressClassName")
    ports = "80, 443" if maps_in(dig(ing, "spec", "tls")) else "80"
    return [name_of(ing), class_name if isinstance(class_name, str) and class_name else "<none>",
            format_hosts(maps_in(dig(ing, "spec", "rules"))), format_address(ing), ports, age(ing, now)]


def _ingress_class_cells(ic: dict, now: float) -> list[Cell]:
    params = dig(ic, "spec", "parameters")
    shown = "<none>"
    if isinstance(params, dict):
        shown = str(params.get("kind") or "")
        if params.get("apiGroup"):
            shown += "." + str(params["apiGroup"])
        shown += "/" + str(params.get("name") or "")
    return [name_of(ic), str(dig(ic, "spec", "controller") or ""), shown, age(ic, now)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("networking.k8s.io", "ingresses"): Printer(
        (NAME, Column("Class", "The name of the IngressClass resource that should be used by this ingress"),
         Column("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
         Column("Address", "Address is a list containing ingress points for the load-balancer"),
         Column("Ports", "Ports of TLS configurations that open"), AGE), _ingress_cells),
    ("networking.k8s.io", "ingressclasses"): Printer(
        (NAME, Column("Controller", "Controller that is responsible for handling this class"),
         Column("Parameters", "A reference to a resource with additional parameters"), AGE),
        _ingress_class_cells),
}
