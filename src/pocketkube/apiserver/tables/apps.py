"""Printers for the apps group (apps/v1): deployments and replica sets, with -o wide template columns."""

from __future__ import annotations

from typing import Any

from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_int,
    as_map,
    as_text,
    dig,
    format_label_selector,
    maps_in,
    name_of,
    selector_string,
    wide,
)


def _containers_and_images(template: Any) -> tuple[str, str]:
    containers = maps_in(dig(as_map(template), "spec", "containers"))
    return (",".join(as_text(c.get("name")) for c in containers),
            ",".join(as_text(c.get("image")) for c in containers))


def _deployment_cells(deployment: dict, now: float) -> list[Cell]:
    spec, status = as_map(deployment.get("spec")), as_map(deployment.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    try:
        selector = selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    return [name_of(deployment), f"{as_int(status.get('readyReplicas'))}/{as_int(spec.get('replicas'))}",
            as_int(status.get("updatedReplicas")), as_int(status.get("availableReplicas")),
            age(deployment, now), names, images, selector]


def _replica_set_cells(replica_set: dict, now: float) -> list[Cell]:
    spec, status = as_map(replica_set.get("spec")), as_map(replica_set.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    return [name_of(replica_set), as_int(spec.get("replicas")), as_int(status.get("replicas")),
            as_int(status.get("readyReplicas")), age(replica_set, now),
            names, images, format_label_selector(spec.get("selector"))]


def _template_columns(selector_description: str) -> tuple[Column, ...]:
    return (wide("Containers", "Names of each container in the template."),
            wide("Images", "Images referenced by each container in the template."),
            wide("Selector", selector_description))


PRINTERS: dict[tuple[str, str], Printer] = {
    ("apps", "deployments"): Printer(
        (NAME, Column("Ready", "Number of the pod with ready state"),
         Column("Up-to-date", "Pods running the latest pod template."),
         Column("Available", "Pods ready for at least minReadySeconds."), AGE,
         *_template_columns("Label selector for the pods the deployment manages.")),
        _deployment_cells),
    ("apps", "replicasets"): Printer(
        (NAME, Column("Desired", "The number of replicas asked for.", type="integer"),
         Column("Current", "The number of replicas that exist.", type="integer"),
         Column("Ready", "The number of ready replicas.", type="integer"), AGE,
         *_template_columns("Label selector for the pods the replica set counts.")),
        _replica_set_cells),
}
