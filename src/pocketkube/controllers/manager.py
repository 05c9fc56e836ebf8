"""The controller manager: one set of shared informers, and the controllers that use them.

`start()` builds the enabled controllers, starts the informers and one task per controller,
and returns at once; controllers begin work when their caches have synced. `stop()` stops the
controllers, then the informers, then flushes pending events. Other controllers (e.g.
EndpointSlice) join with `add()` before `start()`, reusing `informers` and a recorder from
`recorder(component)`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pocketkube.api.resources import BY_PLURAL, Resource
from pocketkube.client.events import EventRecorder
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers
from pocketkube.controllers.clusterroleaggregation import ClusterRoleAggregationController
from pocketkube.controllers.cronjob import CronJobController
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.deployment import DeploymentController
from pocketkube.controllers.disruption import DisruptionController
from pocketkube.controllers.gc import GarbageCollector
from pocketkube.controllers.job import JobController
from pocketkube.controllers.namespace import NamespaceController
from pocketkube.controllers.nodeipam import NodeIPAMController
from pocketkube.controllers.nodelifecycle import NodeLifecycleController, NodeLifecycleSettings
from pocketkube.controllers.persistentvolume import PersistentVolumeController
from pocketkube.controllers.podgc import DEFAULT_THRESHOLD, PodGCController
from pocketkube.controllers.provisioner import LOCAL_PATH_PROVISIONER, LocalPathProvisioner
from pocketkube.controllers.replicaset import ReplicaSetController
from pocketkube.controllers.replicationcontroller import ReplicationControllerController
from pocketkube.controllers.resourcequota import ResourceQuotaController
from pocketkube.controllers.serviceaccounts import RootCACertPublisher, ServiceAccountsController
from pocketkube.controllers.statefulset import StatefulSetController
from pocketkube.controllers.ttlafterfinished import TTLAfterFinishedController
from pocketkube.controllers.volume_protection import VolumeProtectionController

__all__ = ["ALL_CONTROLLERS", "GC_RESOURCES", "ControllerManager", "ControllerManagerSettings"]

log = logging.getLogger(__name__)

# One name per line: every issue adds controllers here.
ALL_CONTROLLERS = frozenset({
    "replicaset",
    "tokencleaner",
    "deployment",
    "garbagecollector",
    "nodelifecycle",
    "namespace",
    "serviceaccount",
    "root-ca-cert-publisher",
    "persistentvolume-binder",
    "volume-protection",
    "local-path-provisioner",
    "clusterroleaggregation",
    "daemonset",
    "statefulset",
    "replicationcontroller",
    "job",
    "cronjob",
    "ttl-after-finished",
    "podgc",
    "disruption",
    "resourcequota",
    "nodeipam",
})
# Kinds that own or are owned by something; Events and Namespaces never are.
GC_RESOURCES: tuple[Resource, ...] = tuple(BY_PLURAL[k] for k in (
    ("", "pods"), ("", "nodes"), ("", "services"), ("", "endpoints"), ("apps", "deployments"),
    ("apps", "replicasets"), ("discovery.k8s.io", "endpointslices"), ("coordination.k8s.io", "leases"),
    ("apps", "daemonsets"), ("apps", "statefulsets"), ("apps", "controllerrevisions"), ("", "replicationcontrollers"),
    ("batch", "jobs"), ("batch", "cronjobs"),
    ("", "persistentvolumeclaims"),  # owned by StatefulSets (retention policy) and pods (ephemeral volumes)
))


@dataclass(frozen=True)
class ControllerManagerSettings:
    controllers: frozenset[str] = ALL_CONTROLLERS
    replicaset_workers: int = 5
    deployment_workers: int = 5
    gc_workers: int = 4
    namespace_workers: int = 2
    job_workers: int = 5
    terminated_pod_gc_threshold: int = DEFAULT_THRESHOLD
    node_lifecycle: NodeLifecycleSettings = field(default_factory=NodeLifecycleSettings)
    root_ca: str = ""  # PEM of the CA the API server's certificate chains to (kube-root-ca.crt)
    # Where each node keeps provisioned volumes, "{node}" standing for its name ("": no local-path
    # provisioning; claims of its class then wait).
    local_path_template: str = ""
    # --cluster-cidr: the nodeipam controller gives each Node a /node_cidr_mask_size of it ("": off).
    cluster_cidr: str = ""
    node_cidr_mask_size: int = 24


class ControllerManager:
    def __init__(self, client: Client, settings: ControllerManagerSettings = ControllerManagerSettings()) -> None:
        self.client = client
        self.settings = settings
        self.informers = SharedInformers(client)
        self.controllers: list[Controller] = []
        self._recorders: dict[str, EventRecorder] = {}
        self._tasks: list[asyncio.Task] = []

    def recorder(self, component: str) -> EventRecorder:
        if component not in self._recorders:
            self._recorders[component] = EventRecorder(self.client, component)
        return self._recorders[component]

    def add(self, controller: Controller) -> None:
        self.controllers.append(controller)

    def _build(self) -> None:
        s, enabled = self.settings, self.settings.controllers
        if "replicaset" in enabled:
            self.add(ReplicaSetController(self.client, self.informers, self.recorder("replicaset-controller"),
                                          workers=s.replicaset_workers))
        if "deployment" in enabled:
            self.add(DeploymentController(self.client, self.informers, self.recorder("deployment-controller"),
                                          workers=s.deployment_workers))
        if "replicationcontroller" in enabled:
            self.add(ReplicationControllerController(self.client, self.informers,
                                                     self.recorder("replication-controller"),
                                                     workers=s.replicaset_workers))
        if "daemonset" in enabled:
            self.add(DaemonSetController(self.client, self.informers, self.recorder("daemonset-controller")))
        if "statefulset" in enabled:
            self.add(StatefulSetController(self.client, self.informers, self.recorder("statefulset-controller")))
        if "garbagecollector" in enabled:
            self.add(GarbageCollector(self.client, self.informers, GC_RESOURCES, workers=s.gc_workers))
        if "nodelifecycle" in enabled:
            self.add(NodeLifecycleController(self.client, self.informers, self.recorder("node-controller"),
                                             self.recorder("taint-eviction-controller"), s.node_lifecycle))
        if "namespace" in enabled:
            self.add(NamespaceController(self.client, self.informers, workers=s.namespace_workers))
        if "serviceaccount" in enabled:
            self.add(ServiceAccountsController(self.client, self.informers))
        if "root-ca-cert-publisher" in enabled and s.root_ca:
            self.add(RootCACertPublisher(self.client, self.informers, s.root_ca))
        if "persistentvolume-binder" in enabled:
            self.add(PersistentVolumeController(self.client, self.informers,
                                                self.recorder("persistentvolume-controller")))
        if "volume-protection" in enabled:
            self.add(VolumeProtectionController(self.client, self.informers))
        if "local-path-provisioner" in enabled and s.local_path_template:
            self.add(LocalPathProvisioner(self.client, self.informers, self.recorder(LOCAL_PATH_PROVISIONER),
                                          s.local_path_template))
        if "clusterroleaggregation" in enabled:
            self.add(ClusterRoleAggregationController(self.client, self.informers))
        if "job" in enabled:
            self.add(JobController(self.client, self.informers, self.recorder("job-controller"),
                                   workers=s.job_workers))
        if "cronjob" in enabled:
            self.add(CronJobController(self.client, self.informers, self.recorder("cronjob-controller")))
        if "ttl-after-finished" in enabled:
            self.add(TTLAfterFinishedController(self.client, self.informers))
        if "podgc" in enabled:
            self.add(PodGCController(self.client, self.informers,
                                     terminated_pod_threshold=s.terminated_pod_gc_threshold))
        if "disruption" in enabled:
            self.add(DisruptionController(self.client, self.informers))
        if "resourcequota" in enabled:
            self.add(ResourceQuotaController(self.client, self.informers))
        if "tokencleaner" in enabled:
            from pocketkube.controllers.tokencleaner import TokenCleaner

            self.add(TokenCleaner(self.client, self.informers))
        if "nodeipam" in enabled and s.cluster_cidr:
            self.add(NodeIPAMController(self.client, self.informers, self.recorder("cidrAllocator"),
                                        s.cluster_cidr, s.node_cidr_mask_size))

    async def start(self) -> None:
        self._build()
        self.informers.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(c), name=c.name) for c in self.controllers]

    async def wait_synced(self, timeout: float | None = None) -> None:
        await self.informers.wait_synced(timeout)

    async def _supervise(self, controller: Controller) -> None:
        try:
            await controller.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # visible in the logs; the other controllers keep going
            log.exception("%s stopped unexpectedly", controller.name)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.controllers), return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.informers.stop()
        await asyncio.gather(*(r.stop() for r in self._recorders.values()), return_exceptions=True)
