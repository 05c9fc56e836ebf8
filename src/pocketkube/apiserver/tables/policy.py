"""Printers for policy/v1: PodDisruptionBudgets (upstream printPodDisruptionBudget)."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import AGE, NAME, Cell, Column, Printer, age, as_int, dig, name_of


def _int_or_string(value: object) -> str:
    return "N/A" if value is None else str(value)


def _pdb_cells(pdb: dict, now: float) -> list[Cell]:
    return [name_of(pdb), _int_or_string(dig(pdb, "spec", "minAvailable")),
            _int_or_string(dig(pdb, "spec", "maxUnavailable")),
            as_int(dig(pdb, "status", "disruptionsAllowed")), age(pdb, now)]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("policy", "poddisruptionbudgets"): Printer(
        (NAME, Column("Min Available", "The minimum number of pods that must be available."),
         Column("Max Unavailable", "The maximum number of pods that may be unavailable."),
         Column("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.",
                type="integer"), AGE), _pdb_cells),
}
