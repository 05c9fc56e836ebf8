"""The control plane that runs beside the API server (as k3s' server role does): controllers
and the scheduler. They talk to the API server only through the REST client, like any other
client, so they could move to another process unchanged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pocketkube.client.events import EventRecorder
from pocketkube.client.leaderelection import LeaderElectionConfig, LeaderElector, new_identity
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
    # kube-controller-manager --service-account-private-key-file: signs the tokens of
    # kubernetes.io/service-account-token Secrets; empty: that controller does not run.
    service_account_key_file: str = ""
    local_path_template: str = ""  # where the local-path provisioner puts a node's volumes
    terminated_pod_gc_threshold: int = 12500
    # kube-controller-manager --cluster-signing-cert-file/--cluster-signing-key-file: the CA the
    # CSR signer issues client certificates with; empty: no signing (nor auto-approval).
    cluster_signing_cert_file: str = ""
    cluster_signing_key_file: str = ""
    cluster_cidr: str = ""  # --cluster-cidr: node IPAM hands out /node_cidr_mask_size blocks of it ("": off)
    node_cidr_mask_size: int = 24
    # --leader-elect (upstream's default true): the controllers act only while holding the Lease
    # kube-system/kube-controller-manager, the scheduler only while holding kube-system/kube-scheduler.
    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Where this control plane keeps its identity across restarts (empty: a new one per start, as
    # upstream). Only for a control plane that is alone in using the file (the one inside a
    # server, or `up`'s): restarted after a crash, it renews its own lease at once instead of
    # waiting 15 s for it to expire.
    identity_file: str = ""


LEASE_NAMESPACE = "kube-system"
log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, server_url: str, token: str, ca_file: str, settings: ControlPlaneSettings,
                 scheduler_token: str = "") -> None:
        self.client = Client(server_url, token, ca_file, user_agent="pocketkube-controller-manager")
        # The scheduler writes as its own user (system:kube-scheduler) when it has a token of its own.
        self.scheduler_client = Client(server_url, scheduler_token, ca_file, user_agent="pocketkube-scheduler") \
            if scheduler_token else self.client
        monitor = min(5.0, max(0.5, settings.node_monitor_grace_period / 4))
        self.manager = ControllerManager(self.client, ControllerManagerSettings(
            terminated_pod_gc_threshold=settings.terminated_pod_gc_threshold,
            node_lifecycle=NodeLifecycleSettings(grace_period=settings.node_monitor_grace_period,
                                                 eviction_timeout=settings.pod_eviction_timeout,
                                                 monitor_period=monitor),
            root_ca=Path(ca_file).read_text(),
            local_path_template=settings.local_path_template,
            cluster_cidr=settings.cluster_cidr, node_cidr_mask_size=settings.node_cidr_mask_size))
        # One pod and one node cache for the whole control plane (10,000 pods are not cheap).
        from pocketkube.api.resources import BY_PLURAL

        self.scheduler = Scheduler(self.scheduler_client,
                                   pod_informer=self.manager.informers.get(BY_PLURAL[("", "pods")]),
                                   node_informer=self.manager.informers.get(BY_PLURAL[("", "nodes")]),
                                   volume_informers=tuple(self.manager.informers.get(BY_PLURAL[k]) for k in (
                                       ("", "persistentvolumeclaims"), ("", "persistentvolumes"),
                                       ("storage.k8s.io", "storageclasses"))))
        self.settings = settings
        _add_service_controllers(self.manager, self.client, settings)
        if settings.service_account_key_file:
            _add_tokens_controller(self.manager, self.client, settings.service_account_key_file, ca_file)
        if settings.cluster_signing_cert_file and settings.cluster_signing_key_file:
            _add_certificate_controllers(self.manager, self.client, settings)

        self.lost = asyncio.Event()  # set when a lease was lost: this control plane has stopped acting
        self._electors: list[asyncio.Task] = []
        self._recorders: list[EventRecorder] = []
        self._stopping: asyncio.Future | None = None

    async def start(self) -> None:
        if not self.settings.leader_elect:
            await self._start_manager()
            await self._start_scheduler()
            return
        loop = asyncio.get_running_loop()
        identity = _identity(self.settings.identity_file)
        for name, client, on_started, component in (
                ("kube-controller-manager", self.client, self._start_manager, "kube-controller-manager"),
                ("kube-scheduler", self.scheduler_client, self._start_scheduler, "default-scheduler")):
            s = self.settings
            cfg = LeaderElectionConfig(LEASE_NAMESPACE, name, identity, lease_duration=s.lease_duration,
                                       renew_deadline=s.renew_deadline, retry_period=s.retry_period)
            self._recorders.append(EventRecorder(client, component))
            elector = LeaderElector(client, cfg, on_started=on_started, on_stopped=self._lose,
                                    recorder=self._recorders[-1])
            self._electors.append(loop.create_task(elector.run(), name=f"leader-election:{name}"))

    async def _start_manager(self) -> None:
        await self.manager.start()

    async def _start_scheduler(self) -> None:
        # The scheduler's pod and node caches are the manager's: run them even while the manager
        # is not leading (yet).
        self.manager.informers.start()
        await self.scheduler.start()

    async def _lose(self) -> None:
        """A renewal deadline passed: stop acting at once (upstream exits the process here)."""
        await self._stop_components()
        self.lost.set()

    async def _stop_components(self) -> None:
        if self._stopping is None:  # once, and to the end even if the caller is cancelled
            self._stopping = asyncio.ensure_future(self._stop_both())
        await asyncio.shield(self._stopping)

    async def _stop_both(self) -> None:
        await self.scheduler.stop()
        await self.manager.stop()

    async def stop(self) -> None:
        for t in self._electors:  # a leading elector releases its lease as it is cancelled
            t.cancel()
        await asyncio.gather(*self._electors, return_exceptions=True)
        await self._stop_components()
        await asyncio.gather(*(r.stop() for r in self._recorders), return_exceptions=True)
        await self.client.close()
        if self.scheduler_client is not self.client:
            await self.scheduler_client.close()


def _identity(path: str) -> str:
    if not path:
        return new_identity()
    try:
        kept = Path(path).read_text().strip()
        if kept:
            return kept
    except FileNotFoundError:
        pass
    identity = new_identity()
    Path(path).write_text(identity + "\n")
    return identity


class ControlPlaneRunner:
    """Runs control planes one after another: when one loses a lease it has stopped acting; a
    fresh one (new caches, new identities) then campaigns again, as a restarted
    kube-controller-manager would."""

    def __init__(self, make: Callable[[], ControlPlane]) -> None:
        self._make = make
        self.current: ControlPlane | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.current = self._make()
        await self.current.start()
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="control-plane")

    async def _supervise(self) -> None:
        while True:
            assert self.current is not None
            await self.current.lost.wait()
            log.warning("leader election lost: restarting the control plane")
            await self.current.stop()
            self.current = self._make()
            await self.current.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.current is not None:
            await self.current.stop()


def _add_service_controllers(manager: ControllerManager, client: Client, settings: ControlPlaneSettings) -> None:
    """Endpoints, EndpointSlices and the built-in LoadBalancer."""
    register_service_controllers(manager, client, settings.load_balancer_pool)


def _add_tokens_controller(manager: ControllerManager, client: Client, key_file: str, ca_file: str) -> None:
    """The Secret-based token filler, minting with the API server's signing key."""
    from pathlib import Path

    from pocketkube.apiserver.satoken import claims
    from pocketkube.apiserver.satoken.signer import Signer
    from pocketkube.controllers.serviceaccount_tokens import TokensController

    signer = Signer.from_file(Path(key_file))

    def mint(sa: dict, secret_name: str) -> str:
        return signer.issue(claims.legacy_claims(sa, secret_name))
    manager.add(TokensController(client, manager.informers, mint, Path(ca_file).read_bytes()))


def _add_certificate_controllers(manager: ControllerManager, client: Client, settings: ControlPlaneSettings) -> None:
    """csrapproving (SubjectAccessReviews through the API) and csrsigning (the cluster CA)."""
    from pocketkube.controllers.certificates import ApprovingController, SigningController

    async def review(spec: dict, subresource: str) -> bool:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": spec.get("username", ""), "uid": spec.get("uid", ""), "groups": spec.get("groups") or [],
            "extra": spec.get("extra") or {},
            "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                                   "verb": "create", "subresource": subresource}}}
        answer = await client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)
        return bool(((answer or {}).get("status") or {}).get("allowed"))

    manager.add(ApprovingController(client, manager.informers, review))
    manager.add(SigningController(client, manager.informers, Path(settings.cluster_signing_cert_file).read_bytes(),
                                  Path(settings.cluster_signing_key_file).read_bytes()))
