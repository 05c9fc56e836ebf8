"""The control plane that runs beside the API server (as k3s' server role does): controllers
and the scheduler. They talk to the API server only through the REST client, like any other
client, so they could move to another process unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.client.rest import Client
from pocketkube.controllers.manager import ControllerManager, ControllerManagerSettings
from pocketkube.controllers.nodelifecycle import NodeLifecycleSettings
from pocketkube.controllers.registration import register_service_controllers
from pocketkube.scheduler.scheduler import Scheduler


@dataclass(frozen=True)
class ControlPlaneSettings:
    node_monitor_grace_period: float = 40.0
    pod_eviction_timeout: float = 300.0
    load_balancer_pool: str = "127.200.0.0/24"
    terminated_pod_gc_threshold: int = 12500


class ControlPlane:
    def __init__(self, server_url: str, token: str, ca_file: str, settings: ControlPlaneSettings) -> None:
        self.client = Client(server_url, token, ca_file, user_agent="pocketkube-controller-manager")
        monitor = min(5.0, max(0.5, settings.node_monitor_grace_period / 4))
        self.manager = ControllerManager(self.client, ControllerManagerSettings(
            terminated_pod_gc_threshold=settings.terminated_pod_gc_threshold,
            node_lifecycle=NodeLifecycleSettings(grace_period=settings.node_monitor_grace_period,
                                                 eviction_timeout=settings.pod_eviction_timeout,
                                                 monitor_period=monitor)))
        # One pod and one node cache for the whole control plane (10,000 pods are not cheap).
        from pocketkube.api.resources import BY_PLURAL

        self.scheduler = Scheduler(self.client,
                                   pod_informer=self.manager.informers.get(BY_PLURAL[("", "pods")]),
                                   node_informer=self.manager.informers.get(BY_PLURAL[("", "nodes")]))
        self.settings = settings
        _add_service_controllers(self.manager, self.client, settings)

    async def start(self) -> None:
        await self.manager.start()
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.manager.stop()
        await self.client.close()


def _add_service_controllers(manager: ControllerManager, client: Client, settings: ControlPlaneSettings) -> None:
    """Endpoints, EndpointSlices and the built-in LoadBalancer."""
    register_service_controllers(manager, client, settings.load_balancer_pool)
