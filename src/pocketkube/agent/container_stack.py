"""A node's container stack in containerd mode: pod bridge, CNI config, containerd, pause image.

The agent brings it up in order before its kubelet starts: the node's bridge with its gateway (so
the pod CIDR is routed locally before the first pod; the CNI bridge plugin then reuses it), the
CNI conflist pods are wired by, its own containerd under the data dir (unless
`--container-runtime-endpoint` names someone else's runtime), and the pause image every sandbox
runs, built here from busybox and imported when absent (no registry is assumed reachable).
`stop(teardown=False)` leaves containerd and the bridge in place for a restarted agent to adopt
with the pods still running; `teardown=True` removes them (their pods must be gone already).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent.runtime.cni import render_conflist, write_conflist
from pocketkube.agent.runtime.containerd import Containerd, ContainerdError, import_archive
from pocketkube.agent.runtime.cri.client import CriClient, CriError
from pocketkube.agent.runtime.pause import BUSYBOX, PAUSE_IMAGE, pause_files
from pocketkube.net import hostnet, portmap
from pocketkube.util.oci_layout import build_image, oci_archive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path  # the node's data dir
    pod_cidr: str
    bridge: str
    pod_routes: tuple[str, ...]
    endpoint: str = ""  # someone else's CRI runtime; empty: start our own containerd


class ContainerStack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.cni_dir = Path(cfg.data_dir).absolute() / "cni"
        self.containerd: Containerd | None = None
        if not cfg.endpoint:
            self.containerd = Containerd(Path(cfg.data_dir).absolute() / "containerd", sandbox_image=PAUSE_IMAGE,
                                         cni_conf_dir=self.cni_dir / "net.d")

    @property
    def endpoint(self) -> str:
        return self.cfg.endpoint or (self.containerd.endpoint if self.containerd else "")

    async def start(self) -> None:
        """Bridge, CNI config, containerd, pause image; ContainerdError/HostNetError say what failed."""
        if self.cfg.bridge:
            gateway = hostnet.setup_node_bridge(self.cfg.bridge, self.cfg.pod_cidr)
            write_conflist(self.cni_dir / "net.d", render_conflist(
                bridge=self.cfg.bridge, subnet=self.cfg.pod_cidr, gateway=gateway,
                ipam_dir=self.cni_dir / "ipam", routes=self.cfg.pod_routes))
        if self.containerd is None:
            return  # an external runtime brings its own CNI config and sandbox image
        await self.containerd.start()
        await self._ensure_pause_image()

    async def _ensure_pause_image(self) -> None:
        assert self.containerd is not None
        async with CriClient(self.endpoint) as cri:
            try:
                if await cri.image_status(PAUSE_IMAGE) is not None:
                    return
            except CriError as e:
                raise ContainerdError(f"containerd cannot look up the pause image: {e}") from None
        if not BUSYBOX.exists():
            raise ContainerdError(f"{BUSYBOX} not found: the pause image is built from it "
                                  "(apt-get install busybox-static)")
        with tempfile.TemporaryDirectory(dir=self.containerd.data_dir, prefix="pause-") as tmp:
            layout = build_image(name="pause", tag=PAUSE_IMAGE.rsplit(":", 1)[1], out_dir=Path(tmp) / "layout",
                                 **pause_files(BUSYBOX.read_bytes()))
            await import_archive(self.containerd.socket, oci_archive(layout, Path(tmp) / "pause.tar", name=PAUSE_IMAGE))
        log.info("imported the pause image %s", PAUSE_IMAGE)

    async def stop(self, teardown: bool) -> None:
        if not teardown:
            return
        if self.containerd is not None:
            await self.containerd.stop()
        if self.cfg.bridge:
            hostnet.teardown_node_bridge(self.cfg.bridge)
            # The node's sandboxes are gone; if no other sandbox on the host maps a port either,
            # portmap's shared chains go too (kept, untouched, while any is in use).
            if (outcome := portmap.remove_idle_chains()) == "removed":
                log.info("removed the CNI portmap chains (no pod maps a hostPort any more)")
            else:
                log.debug("CNI portmap chains: %s", outcome)
