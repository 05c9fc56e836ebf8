"""Registers the Service controllers (Endpoints, EndpointSlice, built-in LoadBalancer) with a
ControllerManager before it starts; they share its informers and get one recorder each."""

from __future__ import annotations

from pocketkube.client.interface import Client
from pocketkube.controllers.endpoints import EndpointsController
from pocketkube.controllers.endpointslice import EndpointSliceController
from pocketkube.controllers.loadbalancer import DEFAULT_POOL, LoadBalancerController
from pocketkube.controllers.manager import ControllerManager

__all__ = ["register_service_controllers"]


def register_service_controllers(manager: ControllerManager, client: Client, load_balancer_pool: str = DEFAULT_POOL,
                                 *, workers: int = 5) -> None:
    manager.add(EndpointSliceController(client, manager.informers, manager.recorder("endpointslice-controller"),
                                        workers=workers))
    manager.add(EndpointsController(client, manager.informers, manager.recorder("endpoint-controller"),
                                    workers=workers))
    manager.add(LoadBalancerController(client, manager.informers, manager.recorder("service-lb-controller"),
                                       pool=load_balancer_pool))
