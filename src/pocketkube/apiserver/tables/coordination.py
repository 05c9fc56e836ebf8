"""Printers for coordination.k8s.io/v1: leases and their holder."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import AGE, NAME, Cell, Column, Printer, age, as_text, dig, name_of


def _lease_cells(lease: dict, now: float) -> list[Cell]:
    return [name_of(lease), as_text(dig(lease, "spec", "holderIdentity")), age(lease, now)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("coordination.k8s.io", "leases"): Printer(
        (NAME, Column("Holder", "The identity of the lease's current holder."), AGE), _lease_cells),
}
