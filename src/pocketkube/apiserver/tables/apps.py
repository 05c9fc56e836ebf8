"""Printers for the apps group (apps/v1): deployments, replica sets, daemon sets, stateful sets and
controller revisions, with -o wide template columns (core.py prints replication controllers with
the replica set's columns from here)."""

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
    format_labels,
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


def replication_controller_cells(rc: dict, now: float) -> list[Cell]:
    spec, status = as_map(rc.get("spec")), as_map(rc.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    return [name_of(rc), as_int(spec.get("replicas")), as_int(status.get("replicas")),
            as_int(status.get("readyReplicas")), age(rc, now), names, images, format_labels(spec.get("selector"))]


def _daemon_set_cells(ds: dict, now: float) -> list[Cell]:
    spec, status = as_map(ds.get("spec")), as_map(ds.get("status"))
    template = as_map(spec.get("template"))
    names, images = _containers_and_images(template)
    return [name_of(ds), as_int(status.get("desiredNumberScheduled")), as_int(status.get("currentNumberScheduled")),
            as_int(status.get("numberReady")), as_int(status.get("updatedNumberScheduled")),
            as_int(status.get("numberAvailable")), format_labels(dig(template, "spec", "nodeSelector")),
            age(ds, now), names, images, format_label_selector(spec.get("selector"))]


def _stateful_set_cells(sts: dict, now: float) -> list[Cell]:
    spec, status = as_map(sts.get("spec")), as_map(sts.get("status"))
    names, images = _containers_and_images(spec.get("template"))
    return [name_of(sts), f"{as_int(status.get('readyReplicas'))}/{as_int(spec.get('replicas'))}",
            age(sts, now), names, images]


def _controller_name(obj: dict) -> str:
    """`daemonset.apps/web` for the controller reference (formatResourceName with its kind), or <none>."""
    for ref in maps_in(dig(obj, "metadata", "ownerReferences")):
        if ref.get("controller"):
            api_version = as_text(ref.get("apiVersion"))
            group = api_version.split("/")[0] if "/" in api_version else ""
            kind = as_text(ref.get("kind")).lower() + (f".{group}" if group else "")
            return f"{kind}/{as_text(ref.get('name'))}"
    return "<none>"


def _controller_revision_cells(revision: dict, now: float) -> list[Cell]:
    return [name_of(revision), _controller_name(revision), as_int(revision.get("revision")), age(revision, now)]


def replica_columns(kind_words: str) -> tuple[Column, ...]:
    """The columns of replica sets and replication controllers."""
    return (NAME, Column("Desired", "The number of replicas asked for.", type="integer"),
            Column("Current", "The number of replicas that exist.", type="integer"),
            Column("Ready", "The number of ready replicas.", type="integer"), AGE,
            *_template_columns(f"Label selector for the pods the {kind_words} counts."))


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
    ("apps", "replicasets"): Printer(replica_columns("replica set"), _replica_set_cells),
    ("apps", "daemonsets"): Printer(
        (NAME, Column("Desired", "The number of nodes that should run the daemon pod.", type="integer"),
         Column("Current", "The number of nodes running at least one daemon pod.", type="integer"),
         Column("Ready", "The number of nodes with a ready daemon pod.", type="integer"),
         Column("Up-to-date", "The number of nodes running the updated daemon pod.", type="integer"),
         Column("Available", "The number of nodes with an available daemon pod.", type="integer"),
         Column("Node Selector", "The node selector of the pod template."), AGE,
         *_template_columns("Label selector for the pods the daemon set manages.")),
        _daemon_set_cells),
    ("apps", "statefulsets"): Printer(
        (NAME, Column("Ready", "Number of the pod with ready state"), AGE,
         wide("Containers", "Names of each container in the template."),
         wide("Images", "Images referenced by each container in the template.")),
        _stateful_set_cells),
    ("apps", "controllerrevisions"): Printer(
        (NAME, Column("Controller", "Controller of the object"),
         Column("Revision", "Revision of the ControllerRevision", type="integer"), AGE),
        _controller_revision_cells),
}
