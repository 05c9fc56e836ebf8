"""Printers for apiregistration.k8s.io/v1: APIServices (kube-aggregator's table convertor)."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import AGE, NAME, Cell, Column, Printer, age, dig, name_of


def service_cell(apiservice: dict) -> str:
    """`Local` for a group served in-process, else `<namespace>/<name>` of the backing Service."""
    service = dig(apiservice, "spec", "service")
    if not isinstance(service, dict):
        return "Local"
    return f"{service.get('namespace', '')}/{service.get('name', '')}"


def available_cell(apiservice: dict) -> str:
    """`True`, `False (<reason>)`, or `Unknown` before the availability controller has looked."""
    conditions = dig(apiservice, "status", "conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, dict) and cond.get("type") == "Available":
            status = str(cond.get("status", ""))
            if status != "True" and cond.get("reason"):
                return f"{status} ({cond['reason']})"
            return status
    return "Unknown"


def _apiservice_cells(apiservice: dict, now: float) -> list[Cell]:
    return [name_of(apiservice), service_cell(apiservice), available_cell(apiservice), age(apiservice, now)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("apiregistration.k8s.io", "apiservices"): Printer(
        (NAME, Column("Service", "The reference to the service that hosts this API endpoint."),
         Column("Available", "Whether this service is available."), AGE), _apiservice_cells),
}
