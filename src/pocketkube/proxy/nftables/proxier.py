"""The nftables data plane: one `ip pocketkube-<node>` table, updated by atomic deltas.

healthCheckNodePorts are answered in userspace, as kube-proxy does in every mode. With
`count_traffic` (the default) the table carries named traffic counters (counters.py), read by
`traffic()`; a full sync carries their values over from the table it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from pocketkube.api.traffic import TrafficSnapshot
from pocketkube.proxy.healthcheck import HealthCheckServers
from pocketkube.proxy.model import Model, ServiceEntry
from pocketkube.proxy.nftables import counters, render
from pocketkube.proxy.nftables.nft import NftError, NftRunner, default_runner

log = logging.getLogger(__name__)


class NftablesDataPlane:
    name = "nftables"

    def __init__(self, node_name: str, node_ip: str, runner: NftRunner | None = None,
                 bridged_pods: bool = False, count_traffic: bool = True) -> None:
        """`bridged_pods`: the node's pods have their own network namespaces behind a bridge
        (container runtime), which adds hairpin masquerade and the forward/output no-endpoint
        checks (render's docstring); False keeps the process runtime's table as it was."""
        self.ctx = render.NodeContext(node_name, node_ip, bridged_pods, count_traffic)
        self._runner = runner
        self.health = HealthCheckServers(node_name, node_ip)
        self._lock = asyncio.Lock()
        # What the kernel holds now, and the model entries it was rendered from (so unchanged
        # entries keep their ServiceRules object and the diff skips them by identity).
        self._programmed: dict[tuple[str, str], render.ServiceRules] = {}
        self._entries: dict[tuple[str, str], ServiceEntry] = {}
        self.last_sync_seconds = 0.0
        self.full_syncs = 0
        self._replace_table = True  # until the first apply: what the kernel holds is unknown

    @property
    def table(self) -> str:
        return self.ctx.table

    async def start(self) -> None:
        """Get ready to program. The table of an earlier run (a restarted agent) keeps serving until
        the first apply replaces it whole, in one transaction: emptying it here would refuse
        connections until the proxy has listed Services again."""
        if self._runner is None:
            self._runner = default_runner()
        self._replace_table = True

    async def apply(self, model: Model) -> None:
        """Program `model` in one transaction holding only what changed."""
        async with self._lock:
            started = time.perf_counter()
            desired = self._desired(model)
            script = render.render_delta(self.ctx, self._programmed, desired)
            if self._replace_table:
                await self._full_sync(desired)
                self._replace_table = False
            elif script:
                try:
                    await self._run(script)
                except NftError as err:  # our view of the kernel was wrong: rebuild it whole
                    log.warning("nftables delta for %s failed, doing a full sync: %s", self.table, err)
                    await self._full_sync(desired)
            self._programmed = desired
            self._entries = dict(model)
            self.last_sync_seconds = time.perf_counter() - started
        await self.health.apply(model)

    async def stop(self) -> None:
        await self.health.stop()
        async with self._lock:
            if self._runner is not None:
                await self._run(render.render_delete(self.ctx))
                self._runner.close()
                self._runner = None
            self._programmed, self._entries = {}, {}

    def _desired(self, model: Model) -> dict[tuple[str, str], render.ServiceRules]:
        desired = {}
        for key, entry in model.items():
            old = self._entries.get(key)
            if old is not None and (old is entry or old == entry):
                desired[key] = self._programmed[key]
            else:
                desired[key] = render.service_rules(entry, self.ctx)
        return desired

    async def _full_sync(self, ruleset: render.Ruleset) -> None:
        seed = await self._read_counters() if self.ctx.count_traffic else {}
        await self._run(render.render_full(self.ctx, ruleset, seed))
        self.full_syncs += 1

    async def _read_counters(self) -> dict[str, int]:
        """The table's counters now; {} when it has none (or does not exist yet)."""
        if self._runner is None:
            return {}
        try:
            return await self._runner.read_counters(render.FAMILY, self.ctx.table)
        except ValueError:  # nft printed something we cannot read
            return {}

    async def traffic(self) -> TrafficSnapshot:
        """Cumulative new connections per entry, endpoint and rejection (empty when not counting)."""
        at = time.time()
        if not self.ctx.count_traffic:
            return TrafficSnapshot(self.ctx.node_name, self.name, at)
        refs = [(name, ref) for rules in list(self._programmed.values()) for name, ref in rules.counters.items()]
        values = await self._read_counters() if refs else {}
        return counters.snapshot(self.ctx.node_name, at, refs, values)

    async def _run(self, script: str) -> None:
        if self._runner is None:
            raise RuntimeError(f"{self.name} data plane for {self.ctx.node_name} is not started")
        await self._runner.run(script)


def table_name(node_name: str, node_ip: str) -> str:
    """The name of the table a node's nftables data plane programs (for cleanup checks)."""
    return render.NodeContext(node_name, node_ip).table


def remove_leftover_table(node_name: str, node_ip: str, runner: NftRunner | None = None) -> bool:
    """Delete the table of a node whose agent died before it could (`up` stopping, tests).

    Idempotent; False when nftables cannot be driven here (not root, no library nor binary),
    in which case no table can exist either.
    """
    if runner is None:
        if os.geteuid() != 0:
            return False
        try:
            runner = default_runner()
        except OSError:
            return False
    try:
        runner.run_sync(render.render_delete(render.NodeContext(node_name, node_ip)))
        return True
    except NftError as err:
        log.warning("could not remove nftables table of %s: %s", node_name, err)
        return False
    finally:
        runner.close()
