"""The kubelet's volumes: one module per volume plugin (pure decisions beside their I/O), the
AtomicWriter, the watch-based object cache, and the manager that drives them per pod."""

from pocketkube.agent.kubelet.volumes.items import MountError
from pocketkube.agent.kubelet.volumes.manager import VolumeError, VolumeManager, container_mounts

__all__ = ["MountError", "VolumeError", "VolumeManager", "container_mounts"]
