"""Printers for PersistentVolumes and PersistentVolumeClaims (core/v1), columns as upstream's
printers.go (kubectl 1.32 and 1.37 render the same server-side columns); core.py includes them."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_map,
    as_text,
    dig,
    name_of,
)

_MODE_ABBREVIATIONS = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                       ("ReadWriteOncePod", "RWOP"))
_UNSET = "<unset>"


def access_modes_string(modes: object) -> str:
    """GetAccessModesAsString: the abbreviations in a fixed order, each once."""
    present = set(modes) if isinstance(modes, list) else set()
    return ",".join(short for mode, short in _MODE_ABBREVIATIONS if mode in present)


def _class_of(obj: dict) -> str:
    beta = as_text(as_map(dig(obj, "metadata", "annotations")).get("volume.beta.kubernetes.io/storage-class"))
    return beta or as_text(dig(obj, "spec", "storageClassName"))


def _volume_mode(obj: dict) -> str:
    return as_text(dig(obj, "spec", "volumeMode")) or _UNSET


def _pv_cells(pv: dict, now: float) -> list[Cell]:
    ref = as_map(dig(pv, "spec", "claimRef"))
    claim = f"{as_text(ref.get('namespace'))}/{as_text(ref.get('name'))}" if ref else ""
    phase = "Terminating" if dig(pv, "metadata", "deletionTimestamp") else as_text(dig(pv, "status", "phase"))
    return [name_of(pv), as_text(as_map(dig(pv, "spec", "capacity")).get("storage")),
            access_modes_string(dig(pv, "spec", "accessModes")),
            as_text(dig(pv, "spec", "persistentVolumeReclaimPolicy")), phase,
            claim, _class_of(pv), as_text(dig(pv, "spec", "volumeAttributesClassName")) or _UNSET,
            as_text(dig(pv, "status", "reason")), age(pv, now), _volume_mode(pv)]


def _pvc_cells(pvc: dict, now: float) -> list[Cell]:
    phase = as_text(dig(pvc, "status", "phase"))
    if dig(pvc, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    volume = as_text(dig(pvc, "spec", "volumeName"))
    capacity, modes = "", ""
    if volume:  # upstream prints the capacity and modes of bound claims only
        capacity = as_text(as_map(dig(pvc, "status", "capacity")).get("storage"))
        modes = access_modes_string(dig(pvc, "status", "accessModes"))
    return [name_of(pvc), phase, volume, capacity, modes, _class_of(pvc),
            as_text(dig(pvc, "spec", "volumeAttributesClassName")) or _UNSET, age(pvc, now), _volume_mode(pvc)]


PV_COLUMNS = (NAME,
              Column("Capacity", "capacity is the description of the persistent volume's resources and capacity."),
              Column("Access Modes", "accessModes contains all ways the volume can be mounted."),
              Column("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent "
                                       "volume when released from its claim."),
              Column("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
              Column("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and "
                              "PersistentVolumeClaim."),
              Column("StorageClass", "StorageClass of the pv"),
              Column("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
              Column("Reason", "reason is a brief CamelCase string that describes any failure and is meant for "
                               "machine parsing and tidy display in the CLI."),
              AGE,
              Column("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted "
                                   "filesystem or to remain in raw block state.", priority=1))
PVC_COLUMNS = (NAME,
               Column("Status", "phase represents the current phase of PersistentVolumeClaim."),
               Column("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
               Column("Capacity", "capacity represents the actual resources of the underlying volume."),
               Column("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has."),
               Column("StorageClass", "StorageClass of the pvc"),
               Column("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
               AGE,
               Column("VolumeMode", "volumeMode defines what type of volume is required by the claim.", priority=1))
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "persistentvolumes"): Printer(PV_COLUMNS, _pv_cells),
    ("", "persistentvolumeclaims"): Printer(PVC_COLUMNS, _pvc_cells),
}
