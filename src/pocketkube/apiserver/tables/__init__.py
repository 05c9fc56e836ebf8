"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` renders.

One module per API group holds that group's printers (core, apps, discovery, coordination); base.py
holds the Table builder and what they share. PRINTERS maps (group, resource) to a printer; a
resource without one gets Name and Age, as Kubernetes' default table convertor does.
"""

from __future__ import annotations

from datetime import datetime

from pocketkube.apiserver.tables import (
    apiregistration,
    apps,
    batch,
    certificates,
    coordination,
    core,
    discovery,
    networking,
    policy,
    rbac,
    storage,
)
from pocketkube.apiserver.tables.base import (
    DEFAULT_PRINTER,
    Column,
    Printer,
    format_label_selector,
    format_labels,
    human_duration,
    partial_object_metadata,
    render,
    selector_string,
)
from pocketkube.apiserver.tables.core import (
    EVENT_COLUMNS,
    NODE_COLUMNS,
    POD_COLUMNS,
    SERVICE_COLUMNS,
    format_endpoints,
    node_roles,
    node_status,
    pod_status,
    service_external_ip,
)

PRINTERS: dict[tuple[str, str], Printer] = {
    **core.PRINTERS, **apps.PRINTERS, **discovery.PRINTERS, **coordination.PRINTERS, **storage.PRINTERS,
    **rbac.PRINTERS, **batch.PRINTERS, **policy.PRINTERS, **apiregistration.PRINTERS,
    **networking.PRINTERS, **certificates.PRINTERS,
}


def table(resource_plural: str, group: str, objects: list[dict], now: datetime | float, *,
          include_object: str = "Metadata", resource_version: str = "",
          continue_token: str = "", with_columns: bool = True, remaining: int | None = None) -> dict:
    """Render `objects` as a Table for `kubectl get` (lists, single GETs and watch events)."""
    printer = PRINTERS.get((group, resource_plural), DEFAULT_PRINTER)
    return render(printer, objects, now, include_object=include_object, resource_version=resource_version,
                  continue_token=continue_token, with_columns=with_columns, remaining=remaining)


__all__ = [
    "DEFAULT_PRINTER",
    "EVENT_COLUMNS",
    "NODE_COLUMNS",
    "POD_COLUMNS",
    "PRINTERS",
    "SERVICE_COLUMNS",
    "Column",
    "Printer",
    "format_endpoints",
    "format_label_selector",
    "format_labels",
    "human_duration",
    "node_roles",
    "node_status",
    "partial_object_metadata",
    "pod_status",
    "render",
    "selector_string",
    "service_external_ip",
    "table",
]
