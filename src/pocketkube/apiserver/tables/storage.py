"""Printers for storage.k8s.io/v1: StorageClasses, the default one marked `(default)`."""

from __future__ import annotations

from pocketkube.api.volumes import is_default_class
from pocketkube.apiserver.tables.base import AGE, NAME, Cell, Column, Printer, age, as_text, dig, name_of


def _sc_cells(sc: dict, now: float) -> list[Cell]:
    name = name_of(sc) + (" (default)" if is_default_class(sc) else "")
    expansion = dig(sc, "allowVolumeExpansion")
    return [name, as_text(sc.get("provisioner")), as_text(sc.get("reclaimPolicy")) or "Delete",
            as_text(sc.get("volumeBindingMode")) or "Immediate", "true" if expansion is True else "false",
            age(sc, now)]


SC_COLUMNS = (NAME,
              Column("Provisioner", "provisioner indicates the type of the provisioner."),
              Column("ReclaimPolicy", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
                                      "PersistentVolumes of this storage class."),
              Column("VolumeBindingMode", "volumeBindingMode indicates how PersistentVolumeClaims should be "
                                          "provisioned and bound."),
              Column("AllowVolumeExpansion", "allowVolumeExpansion shows whether the storage class allow volume "
                                             "expand."),
              AGE)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("storage.k8s.io", "storageclasses"): Printer(SC_COLUMNS, _sc_cells),
}
