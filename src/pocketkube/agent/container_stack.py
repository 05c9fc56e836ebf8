"""A node's container stack in containerd mode: pod bridge, CNI config, containerd, pause image.

The agent brings it up in order before its kubelet starts: the node's bridge with its gateway (so
the pod CIDR is routed locally before the first pod; the CNI bridge plugin then reuses it), the
CNI conflist pods are wired by, its own containerd under the data dir (unless
`--container-runtime-endpoint` names someone else's runtime), and the pause image every sandbox
runs, built here from busybox and imported when absent (no registry is assumed reachable).
`stop(teardown=False)` leaves containerd and the bridge in place for a restarted agent to adopt
with the pods still running; `teardown=True` removes them (their pods must be gone already).

Registries: containerd's certs.d (`<node>/containerd/certs.d`) is always configured, so that a
loopback registry defaults to plain HTTP; `--insecure-registry HOST:PORT` adds a plain-HTTP
hosts.toml for another host and `--registry-mirror URL` puts mirrors in front of docker.io.

While the agent runs, a supervisor restarts its containerd whenever it exits, as k3s does: the
shims and containers outlive containerd (they run in their own sessions), and the new instance
finds them again in its state dir, so pods keep running and the CRI client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent.runtime.cni import render_conflist, write_conflist
from pocketkube.agent.runtime.containerd import Containerd, ContainerdError, import_archive
from pocketkube.agent.runtime.cri.client import CriClient, CriError
from pocketkube.agent.runtime.pause import BUSYBOX, PAUSE_IMAGE, pause_files
from pocketkube.agent.runtime.registries import registry_hosts, write_registry_hosts
from pocketkube.net import hostnet, portmap
from pocketkube.util.backoff import Backoff
from pocketkube.util.oci_layout import build_image, oci_archive

log = logging.getLogger(__name__)

# Between attempts to start containerd again after it died: soon, but not in a tight loop when it
# cannot start (its log says why).
RESTART_BACKOFF = (0.2, 5.0)


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path  # the node's data dir
    pod_cidr: str
    bridge: str
    pod_routes: tuple[str, ...]
    endpoint: str = ""  # someone else's CRI runtime; empty: start our own containerd
    insecure_registries: tuple[str, ...] = ()  # "HOST:PORT" pulled from over plain HTTP
    registry_mirrors: tuple[str, ...] = ()  # docker.io mirrors, "http[s]://HOST[:PORT]"


class ContainerStack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.cni_dir = Path(cfg.data_dir).absolute() / "cni"
        self.containerd: Containerd | None = None
        # Checked here, so that a malformed flag fails the agent before anything starts.
        self.registry_files = registry_hosts(cfg.insecure_registries, cfg.registry_mirrors)
        self.registry_dir = Path(cfg.data_dir).absolute() / "containerd" / "certs.d"
        if not cfg.endpoint:
            self.containerd = Containerd(Path(cfg.data_dir).absolute() / "containerd", sandbox_image=PAUSE_IMAGE,
                                         cni_conf_dir=self.cni_dir / "net.d", registry_config_dir=self.registry_dir)
        self.restarts = 0  # how often the supervisor started containerd again
        self._supervisor: asyncio.Task | None = None
        self._backoff = Backoff(initial=RESTART_BACKOFF[0], maximum=RESTART_BACKOFF[1], reset_after=60.0)

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
        write_registry_hosts(self.registry_dir, self.registry_files)
        await self.containerd.start()
        await self._ensure_pause_image()
        self._supervisor = asyncio.create_task(self._supervise(), name="containerd supervisor")

    async def _supervise(self) -> None:
        """Start containerd again whenever it exits, until the agent stops."""
        assert self.containerd is not None
        while True:
            code = await self.containerd.wait_exited()
            log.warning("containerd exited%s; starting it again (pods keep running in their shims)",
                        f" with {code}" if code is not None else "")
            while True:
                try:
                    await self.containerd.start()
                    break
                except ContainerdError as e:
                    delay = self._backoff.next()
                    log.error("containerd did not start again (next try in %.1f s): %s", delay, e)
                    await asyncio.sleep(delay)
            self.restarts += 1
            log.info("containerd is back (restart %d)", self.restarts)

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
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
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
