"""persistentVolumeClaim volumes: the claim's bound PersistentVolume, mounted as a hostPath
(DirectoryOrCreate) of its spec.hostPath.path or spec.local.path."""

from __future__ import annotations

from pocketkube.agent.kubelet.volumes.items import MountError


def claim_volume_name(pvc: dict) -> str:
    """The bound PV's name; MountError while the claim is not bound."""
    ns, name = pvc["metadata"].get("namespace"), pvc["metadata"].get("name")
    phase = (pvc.get("status") or {}).get("phase") or ""
    volume = (pvc.get("spec") or {}).get("volumeName") or ""
    if phase != "Bound" or not volume:
        raise MountError(f'PVC {ns}/{name} has non-bound phase ("{phase}") or empty pvc.Spec.VolumeName ("{volume}")')
    return volume


def host_path(pv: dict, pvc: dict) -> str:
    """The node directory holding the PV; MountError for a PV this node cannot mount."""
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    if ref.get("uid") and ref.get("uid") != pvc["metadata"].get("uid"):
        raise MountError(f'the volume "{pv["metadata"]["name"]}" is bound to another claim')
    for key in ("hostPath", "local"):
        path = (spec.get(key) or {}).get("path")
        if path:
            return path
    raise MountError(f'the volume "{pv["metadata"]["name"]}" has no hostPath or local path this node can mount')
