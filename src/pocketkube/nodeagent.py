"""The node agent process: log server, node registration and heartbeat, kubelet.

`run_agent(cfg)` is the whole `pocketkube agent` command: it prints `Node ready: <name>` once
the node is registered and its pods are being reconciled, and on SIGTERM/SIGINT stops every
container it runs (unless cfg.kill_pods_on_exit is False) so that nothing is left running.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from pocketkube.agent.kubelet import Kubelet
from pocketkube.agent.kubelet.stats import UsageSampler
from pocketkube.agent.logserver import LogServer
from pocketkube.agent.node import NodeAgent
from pocketkube.agent.routes import HostGatewayRoutes, node_peer
from pocketkube.agent.runtime import procstats
from pocketkube.agent.runtime.interface import Runtime, SandboxError
from pocketkube.agent.runtime.process import ProcessRuntime
from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.client.servers import ServerLearner, ServerList, load_servers, parse_servers
from pocketkube.util.backoff import Backoff

if TYPE_CHECKING:  # imported when used: gRPC costs the process runtime's start-up 0.1 s
    from pocketkube.agent.container_stack import ContainerStack
    from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime

log = logging.getLogger(__name__)

REGISTER_TIMEOUT = 30.0
ENDPOINTS = BY_PLURAL[("", "endpoints")]
SERVERS_FILE = "api-servers.json"  # the API servers learned from the `kubernetes` Endpoints (k3s' load balancer file)
# A server started alongside the agent (`up`) is up within a second, and every retry interval
# adds to the start time: poll fast, and back off only to 0.1 s (10 tries/s while it is down).
REGISTER_RETRY_INITIAL = 0.05
REGISTER_RETRY_MAXIMUM = 0.1


@dataclass
class AgentConfig:
    server: str
    token: str
    ca_file: str | None
    node_name: str
    node_ip: str
    data_dir: Path
    pod_cidr: str = "127.244.1.0/24"
    dataplane: str = "auto"  # for the Service proxy that runs beside the kubelet
    kubelet_port: int = 10250  # the log server; 0 picks a free port
    kill_pods_on_exit: bool = True
    lease_interval: float = 10.0  # must stay well under the control plane's node-monitor grace period
    runtime: str = "process"  # "containerd" | "process"
    container_runtime_endpoint: str = ""  # with containerd: someone else's runtime; else we start our own
    node_bridge: str = ""  # with containerd: the bridge this node's pods attach to
    pod_routes: tuple[str, ...] = ()  # with containerd: what pods route via their gateway
    container_log_max_size: str = "10Mi"  # with containerd: the kubelet's log rotation flags
    container_log_max_files: int = 5
    insecure_registries: tuple[str, ...] = ()  # with our containerd: plain-HTTP registries (HOST:PORT)
    registry_mirrors: tuple[str, ...] = ()  # with our containerd: docker.io mirrors (URLs)
    node_cpu: str = ""  # the node's cpu and memory capacity (quantities); default: the machine's
    node_memory: str = ""
    # The kubelet's --cluster-dns/--cluster-domain: what ClusterFirst pods get as resolv.conf
    # (with containerd; process pods share the host's /etc/resolv.conf).
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    traffic_counters: bool = True  # the data plane counts connections (off: the cost benchmark's baseline)
    # Joining from another host: a join token (K10<ca hash>::<id>.<secret>) instead of token and CA;
    # the agent bootstraps a client certificate (agent/join.py) and authenticates with it.
    join_token: str = ""
    cert_file: str = ""
    key_file: str = ""
    # "host-gw": routes to the other Nodes' pod ranges via their InternalIPs (agents on several
    # hosts); "none": all pods are local already (`up` on one machine).
    routes: str = "none"


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        data_dir = Path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        # `--server a,b,...` and the servers learned before from the `kubernetes` Endpoints.
        self.servers_file = data_dir / SERVERS_FILE
        self.servers = ServerList(parse_servers(cfg.server), load_servers(self.servers_file))
        self.client = Client(self.servers, cfg.token, cfg.ca_file, user_agent=f"pocketkube-agent/{cfg.node_name}",
                             cert_file=cfg.cert_file or None, key_file=cfg.key_file or None)
        self._learner: asyncio.Task | None = None
        self.node = NodeAgent(self.client, cfg.node_name, cfg.node_ip, cfg.pod_cidr, data_dir, cfg.kubelet_port,
                              cfg.lease_interval, cpu=cfg.node_cpu, memory=cfg.node_memory)
        self.stack: ContainerStack | None = None
        if cfg.runtime == "containerd":
            self.stack = self._make_stack()
        self.routes: HostGatewayRoutes | None = None
        self._local_pod_range = ""
        self.runtime: Runtime | None = None
        self.kubelet: Kubelet | None = None
        self.log_server: LogServer | None = None
        self._heartbeat: asyncio.Task | None = None
        self._rotation: asyncio.Task | None = None
        self.proxy = None
        self._proxy_task: asyncio.Task | None = None

    def _make_stack(self) -> ContainerStack:
        from pocketkube.agent.container_stack import ContainerStack, StackConfig

        cfg = self.cfg
        return ContainerStack(StackConfig(data_dir=Path(cfg.data_dir), pod_cidr=cfg.pod_cidr, bridge=cfg.node_bridge,
                                          pod_routes=cfg.pod_routes, endpoint=cfg.container_runtime_endpoint,
                                          insecure_registries=cfg.insecure_registries,
                                          registry_mirrors=cfg.registry_mirrors))

    async def _discover_pod_cidr(self) -> None:
        """No --pod-cidr: register the Node without one and wait for node IPAM to give it one."""
        deadline = time.monotonic() + REGISTER_TIMEOUT
        retry = Backoff(initial=REGISTER_RETRY_INITIAL, maximum=0.5, jitter=0.2)
        while True:
            try:
                node = await self.node.ensure_node()
            except errors.ServiceUnavailable:
                node = {}
            cidr = node_peer(node).pod_cidr if node else ""
            if cidr:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.cfg.node_name} got no spec.podCIDR within {REGISTER_TIMEOUT:.0f}s: "
                                   "give --pod-cidr, or run the controller manager with --cluster-cidr")
            await asyncio.sleep(retry.next())
        log.info("node %s: pod CIDR %s (from the Node's spec.podCIDR)", self.cfg.node_name, cidr)
        self.cfg.pod_cidr = self.node.pod_cidr = cidr
        if self.stack is not None:
            self.stack = self._make_stack()

    async def _start_routes(self) -> None:
        """host-gw: routes to the other hosts' pods; process pods' IPs become local addresses."""
        if self.cfg.routes != "host-gw":
            return
        from pocketkube.net import hostgw

        if self.stack is None:
            await asyncio.to_thread(hostgw.local_pod_range, self.cfg.pod_cidr)
            self._local_pod_range = self.cfg.pod_cidr
        self.routes = HostGatewayRoutes(self.client, self.cfg.node_name, self.cfg.pod_cidr)
        await self.routes.start()

    async def _start_runtime(self) -> Runtime:
        """The process runtime, or the container stack and the CRI runtime over it (made inside
        the running loop: its gRPC channel binds to it)."""
        if self.stack is None:
            return ProcessRuntime(Path(self.cfg.data_dir), pod_cidr=self.cfg.pod_cidr, node_ip=self.cfg.node_ip)
        from pocketkube.agent.runtime.cri.logmanager import parse_policy
        from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime

        try:
            rotation = parse_policy(self.cfg.container_log_max_size, self.cfg.container_log_max_files)
        except ValueError as e:
            raise RuntimeError(f"failed to initialize container log manager: {e}") from None
        await self.stack.start()
        return ContainerdRuntime(self.stack.endpoint, data_dir=Path(self.cfg.data_dir).absolute(),
                                 node_name=self.cfg.node_name, node_ip=self.cfg.node_ip, log_rotation=rotation,
                                 cluster_dns=self.cfg.cluster_dns, cluster_domain=self.cfg.cluster_domain)

    async def start(self) -> None:
        if not self.cfg.pod_cidr:
            await self._discover_pod_cidr()
        await self._start_routes()
        self.runtime = await self._start_runtime()
        self.node.runtime_version = await self.runtime.version()
        self.kubelet = Kubelet(self.client, self.runtime, self.cfg.node_name, self.cfg.node_ip,
                               allocatable=self.node.capacity,
                               volumes_root=Path(self.cfg.data_dir).absolute() / "kubelet" / "pods")
        self.kubelet.sampler = UsageSampler(self.runtime, procstats.self_usage)
        # A joined node has no token the API server knows: it learns the one the server presents
        # by a TokenReview (the kubelet's webhook authentication), see LogServer.review.
        self.log_server = LogServer(self.kubelet, self.cfg.node_ip, self.cfg.kubelet_port,
                                    self.cfg.token or secrets.token_urlsafe(32))
        if not self.cfg.token:
            from pocketkube.agent.join import token_reviewer

            self.log_server.review = token_reviewer(self.client, self.cfg.node_name)
        self.node.kubelet_port = await self.log_server.start()
        await self._register()
        await self.kubelet.start()
        self._heartbeat = asyncio.create_task(self.node.heartbeat(), name="node heartbeat")
        if self.cfg.cert_file:
            self._rotation = asyncio.create_task(self._rotate_certificate(), name="client certificate rotation")
        learner = ServerLearner(self.servers, lambda: self.client.get(ENDPOINTS, "default", "kubernetes"),
                                self.servers_file)
        self._learner = asyncio.create_task(learner.run(), name="api server learner")
        await self._start_proxy()

    async def _start_proxy(self) -> None:
        """The node's Service proxy (kube-proxy's role) runs beside the kubelet."""
        from pocketkube.proxy.runner import ServiceProxy
        from pocketkube.proxy.select import make_data_plane

        plane = make_data_plane(self.cfg.dataplane, self.cfg.node_name, self.cfg.node_ip,
                                bridged_pods=self.stack is not None, count_traffic=self.cfg.traffic_counters)
        self.proxy = ServiceProxy(self.client, self.cfg.node_name, self.cfg.node_ip, plane)
        if self.log_server is not None:  # /proxy/traffic and /metrics on the node's endpoint
            self.log_server.proxy = self.proxy
        self._proxy_task = asyncio.create_task(self.proxy.run(), name="service proxy")
        log.info("node %s: Service data plane %s", self.cfg.node_name, getattr(plane, "name", plane))

    async def _register(self) -> None:
        """Register the node, waiting for the API server for up to REGISTER_TIMEOUT seconds."""
        deadline = time.monotonic() + REGISTER_TIMEOUT
        retry = Backoff(initial=REGISTER_RETRY_INITIAL, maximum=REGISTER_RETRY_MAXIMUM, jitter=0.2)
        while True:
            try:
                await self.node.register()
                await self.node.renew_lease()
                return
            except errors.ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(retry.next())

    async def _rotate_certificate(self) -> None:
        """A joined node renews its client certificate in the last fifth of its life (the
        kubelet's --rotate-certificates), as itself, and reconnects with the new one."""
        from pocketkube.agent.join import Credentials, JoinError, renew, renewal_delay

        creds = Credentials(Path(self.cfg.ca_file or ""), Path(self.cfg.cert_file), Path(self.cfg.key_file))
        retry = Backoff(initial=5.0, maximum=300.0, jitter=0.2)
        while True:
            try:
                delay = renewal_delay(creds.cert_file.read_bytes(), datetime.datetime.now(datetime.UTC))
            except (OSError, ValueError):
                delay = 3600.0
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await renew(self.servers.current, self.cfg.node_name, creds)
            except (JoinError, OSError, aiohttp.ClientError) as e:
                log.warning("node %s: client certificate renewal failed: %s", self.cfg.node_name, e)
                await asyncio.sleep(retry.next())
                continue
            retry.reset()
            log.info("node %s: client certificate renewed", self.cfg.node_name)
            await self.client.reload_credentials()

    async def shutdown(self, kill_pods: bool) -> None:
        """Stop the agent; with kill_pods every container is stopped and every pod's sandbox removed
        (with containerd: its network namespace, IP and cgroup, then containerd and the node's
        bridge). Without it the containers keep running and a restarted agent re-adopts them."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._rotation is not None:
            self._rotation.cancel()
        if self._learner is not None:
            self._learner.cancel()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.kubelet is not None:
            await self.kubelet.shutdown(kill_pods)
        if self.log_server is not None:
            await self.log_server.stop()
        if self.stack is not None:
            await self._stop_containers(kill_pods)
        await self._stop_routes(cleanup=kill_pods)
        await self.client.close()

    async def _stop_routes(self, cleanup: bool) -> None:
        """Routes and the local pod range go with the pods; pods left running (for a restarted
        agent to adopt) keep them, so other hosts still reach them meanwhile."""
        if self.routes is not None:
            await self.routes.stop(cleanup)
        if self._local_pod_range and cleanup:
            from pocketkube.net import hostgw

            try:
                await asyncio.to_thread(hostgw.local_pod_range, self._local_pod_range, False)
            except hostgw.RouteError as e:
                log.warning("host-gw: %s", e)

    async def _stop_containers(self, kill_pods: bool) -> None:
        assert self.stack is not None
        runtime: ContainerdRuntime | None = self.runtime  # type: ignore[assignment]
        if runtime is not None:
            if kill_pods:
                await asyncio.gather(*(runtime.remove_pod(uid) for uid in runtime.pods()), return_exceptions=True)
            await runtime.close()
        await self.stack.stop(teardown=kill_pods)
        if kill_pods and runtime is not None:
            runtime.remove_node_cgroups()


async def _join(cfg: AgentConfig) -> AgentConfig | None:
    """With a join token: the node's client certificate (bootstrapped or reused), else None."""
    from dataclasses import replace

    from pocketkube.agent.join import JoinError, bootstrap

    try:
        # The first server the agent was given (the join token names that cluster's CA).
        creds = await bootstrap(cfg.server.split(",")[0], cfg.join_token, cfg.node_name, Path(cfg.data_dir))
    except (JoinError, ConnectionError) as e:
        log.error("node agent %s could not join: %s", cfg.node_name, e)
        print(f"Node failed: {cfg.node_name}: {e}", flush=True)
        return None
    return replace(cfg, token="", ca_file=str(creds.ca_file), cert_file=str(creds.cert_file),
                   key_file=str(creds.key_file))


async def run_agent(cfg: AgentConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if cfg.join_token:
        joined = await _join(cfg)
        if joined is None:
            return 1
        cfg = joined
    try:
        agent = Agent(cfg)
    except ValueError as e:  # a malformed registry flag (the CLI checks them; this is the API's guard)
        print(f"Node failed: {cfg.node_name}: {e}", flush=True)
        return 1
    try:
        await agent.start()
    # RuntimeError: containerd, host network; ValueError: a malformed endpoint or registry flag
    except (OSError, errors.ApiError, RuntimeError, SandboxError, ValueError) as e:
        log.error("node agent %s could not start: %s", cfg.node_name, e)
        print(f"Node failed: {cfg.node_name}: {e}", flush=True)
        await agent.shutdown(kill_pods=cfg.kill_pods_on_exit)
        return 1
    print(f"Node ready: {cfg.node_name} ({cfg.node_ip}, pods {cfg.pod_cidr}, {agent.node.runtime_version}, "
          f"logs on port {agent.node.kubelet_port})", flush=True)
    await stop.wait()
    await agent.shutdown(kill_pods=cfg.kill_pods_on_exit)
    return 0


async def run_hollow_agent(cfg: AgentConfig, count: int, prefix: str) -> int:
    """`pocketkube agent --hollow N`: N simulated nodes (no pods run, no data plane, no sockets);
    cfg.node_ip is the first node's IP and cfg.pod_cidr the pool their podCIDRs are carved from.
    cfg.token is one token for all, or a YAML mapping node name → token (each node its own
    identity, system:node:<name>, as real kubelets have)."""
    from pocketkube.agent.hollow_fleet import HollowFleet, hollow_specs, hollow_tokens

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        specs = hollow_specs(prefix, count, cfg.node_ip, cfg.pod_cidr)
        token_of = hollow_tokens(cfg.token, [s.name for s in specs])
    except ValueError as e:
        print(f"Node failed: {prefix}*: {e}", flush=True)
        return 1
    fleet = HollowFleet(lambda name: Client(cfg.server, token_of[name], cfg.ca_file,
                                            user_agent=f"pocketkube-agent/{name} (hollow)"),
                        specs, Path(cfg.data_dir), cfg.lease_interval, cfg.node_cpu, cfg.node_memory)
    started = asyncio.create_task(fleet.start())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({started, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if started.done() and started.exception() is not None:
        e = started.exception()
        log.error("hollow nodes could not start: %s", e)
        print(f"Node failed: {prefix}*: {e}", flush=True)
        waiter.cancel()
        await fleet.stop()
        return 1
    if started.done():
        print(f"Node ready: {count} simulated (hollow) nodes {specs[0].name}..{specs[-1].name} "
              f"({specs[0].ip}..{specs[-1].ip})", flush=True)
        await waiter
    started.cancel()
    await asyncio.gather(started, return_exceptions=True)
    await fleet.stop()
    return 0
