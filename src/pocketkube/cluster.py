"""`pocketkube up`: the server and one agent per node as separate processes, in the foreground.

Each node agent is its own process so that one node can fail alone, as a machine would. Ctrl-C
(or SIGTERM) stops the agents first — each kills its pods — then the server, so nothing is left
running, listening or programmed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pocketkube.agent.kubelet.volumes.manager import unmount_all as unmount_volumes
from pocketkube.agent.runtime.process import kill_recorded
from pocketkube.apiserver.pki import PKI, serving_hosts
from pocketkube.net import hostnet, portmap
from pocketkube.net.addresses import (
    ContainerPlan,
    NodePlan,
    PlanError,
    container_plan,
    dns_service_ip,
    kubernetes_service_ip,
    node_plan,
    process_dns_address,
)
from pocketkube.proxy.select import choose_kind, nftables_usable, remove_leftovers
from pocketkube.util.processes import stop_group


@dataclass
class UpConfig:
    data_dir: Path
    nodes: int = 3
    host: str = "127.0.0.1"
    port: int = 6443
    dataplane: str = "auto"
    traffic_counters: bool = True  # passed to every agent (--traffic-counters)
    node_ip_base: str = "127.0.1.0"
    pod_cidr_base: str = "127.244.0.0/16"
    service_cidr: str = "127.96.0.0/16"
    load_balancer_pool: str = "127.200.0.0/24"
    lease_interval: float = 10.0
    server_args: tuple[str, ...] = ()
    control_plane_args: tuple[str, ...] = ()
    update_user_kubeconfig: bool = True
    runtime: str = "process"  # what choose_runtime picked: "containerd" | "process"
    mode_line: str = ""  # doctor's: "runtime containerd, data plane nftables (why)"
    container_runtime_endpoint: str = ""
    pod_egress: bool = True  # container pods reach the outside, masqueraded behind the host (as kind)
    insecure_registries: tuple[str, ...] = ()  # passed to every agent's containerd
    container_log_max_size: str = "10Mi"  # passed to every agent (containerd mode's log rotation)
    container_log_max_files: int = 5
    registry_mirrors: tuple[str, ...] = ()
    node_cpu: str = ""  # each node's cpu and memory; default: the machine split evenly across the nodes
    node_memory: str = ""
    dns: bool = True  # the cluster DNS (kube-system/kube-dns), its own process
    cluster_domain: str = "cluster.local"
    dns_upstreams: tuple[str, ...] = ()  # IP[:PORT]; default: the host's /etc/resolv.conf
    ingress_http_port: int = 80  # the Ingress controller's ports on every node IP; both 0: no controller
    ingress_https_port: int = 443
    context: str = "pocketkube"  # its context in ~/.kube/config (pocketkube-NAME for a named cluster)


async def _join_line(data_dir: Path, url: str) -> str:
    """The command an agent on another host joins with (a fresh 24 h token), or "" if none."""
    from pocketkube.join_cli import _admin, join_command, new_join_token

    client = None
    try:
        from pocketkube.client.rest import Client

        server, token = _admin(data_dir)
        client = Client(server, token, str(data_dir / "pki" / "ca.crt"), user_agent="pocketkube-up")
        return join_command(url, await new_join_token(client, (data_dir / "pki" / "ca.crt").read_bytes(),
                                                      description="printed by pocketkube up"))
    except Exception as e:  # noqa: BLE001 - the join line is a convenience: the cluster runs without it
        _say(f"• no join token: {e}")
        return ""
    finally:
        if client is not None:
            await client.close()


def _say(msg: str) -> None:
    print(msg, flush=True)


def _ui_lines(data_dir: Path, url: str) -> list[str]:
    """The live map's login link (pocketkube ui), or nothing when the server has no key yet."""
    from pocketkube.ui_cli import link_lines

    try:
        return link_lines(data_dir, url)
    except (OSError, ValueError):
        return []


async def _spawn(*args: str, log: Path, pass_fds: tuple[int, ...] = ()) -> asyncio.subprocess.Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as f:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pocketkube", *args, stdout=asyncio.subprocess.PIPE, stderr=f,
            start_new_session=True, pass_fds=pass_fds)


def _listen(host: str, port: int) -> socket.socket:
    """The API server's socket, bound here so that a busy port is reported at once and agents can
    connect (waiting in the backlog) while the server process is still starting."""
    try:
        return socket.create_server((host, port), backlog=1024)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        hint = "; is another cluster running? pick another --port" if e.errno == errno.EADDRINUSE else ""
        raise RuntimeError(f"cannot listen on {host}:{port} for the API server: {reason}{hint}") from None


class ChildFailed(RuntimeError):
    """A child said why it could not start (its `failure` line)."""


async def _wait_line(proc: asyncio.subprocess.Process, prefix: str, timeout: float, failure: str = "") -> str:
    assert proc.stdout is not None
    async def read() -> str:
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("process exited")
            if line.startswith(prefix):
                return line[len(prefix):].strip()
            if failure and line.startswith(failure):
                raise ChildFailed(line[len(failure):].strip())
    return await asyncio.wait_for(read(), timeout)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading a child's stdout so it never blocks on a full pipe."""
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass



class Cluster:
    def __init__(self, cfg: UpConfig) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir).resolve()
        # Container pods have network namespaces of their own: the cluster gets bridges, routes and
        # a filter table on the host (net.hostnet); process pods live in the host's, on 127/8.
        self.net: ContainerPlan | None = None
        self.dataplane = cfg.dataplane
        if cfg.runtime == "containerd":
            # Resolved here, not by each agent: the userspace plane needs the VIPs local (hostnet).
            self.dataplane = choose_kind(cfg.dataplane, nftables_ok=cfg.dataplane == "auto" and nftables_usable())
            self.net = container_plan(hostnet.cluster_id_of(self.data_dir), cfg.nodes, cfg.pod_cidr_base,
                                      cfg.service_cidr, cfg.node_ip_base, cfg.load_balancer_pool)
            self.plans: list[NodePlan] = list(self.net.nodes)
        else:
            self.plans = node_plan(cfg.nodes, cfg.node_ip_base, cfg.pod_cidr_base)
        self.server: asyncio.subprocess.Process | None = None
        self.agents: dict[str, asyncio.subprocess.Process] = {}
        self.controller_manager: asyncio.subprocess.Process | None = None
        self.dns: asyncio.subprocess.Process | None = None
        self.dns_ip = dns_service_ip(cfg.service_cidr) if cfg.dns else ""
        self.dns_address = ""  # where the DNS process serves, once it said so
        self.ingress: asyncio.subprocess.Process | None = None
        self.ingress_ready = False
        self.url = ""
        self._drains: list[asyncio.Task] = []

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def _node_token_file(self, plan: NodePlan) -> Path:
        return self.data_dir / "nodes" / plan.name / "token"

    def _prepare_credentials(self) -> None:
        pki = PKI(self.data_dir)
        pki.ensure(serving_hosts(self.cfg.host, self.advertise_address, kubernetes_service_ip(self.cfg.service_cidr)))
        for plan in self.plans:
            path = self._node_token_file(plan)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pki.node_token(plan.name))
        from pocketkube.apiserver.rbac.policy import DNS_USER

        for path, token in ((self._controlplane_token_file, pki.controlplane_token()),
                            (self._scheduler_token_file, pki.scheduler_token()),
                            (self._dns_token_file, pki.user_token(DNS_USER)),
                            (self._ingress_token_file, pki.ingress_token())):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)

    @property
    def advertise_address(self) -> str:
        """Where pods reach the API server: its own address on the cluster bridge in container
        mode; in process mode the bind address (pods share the host's network namespace)."""
        return self.net.apiserver_ip if self.net is not None else ""

    def _listeners(self, listener: socket.socket) -> list[socket.socket]:
        """The API server's sockets: `listener` (on the bind address), then in container mode one
        on the advertise address and the same port (the cluster network must carry it already)."""
        if not self.advertise_address or self.cfg.host in (self.advertise_address, "0.0.0.0"):
            return [listener]
        try:
            return [listener, _listen(self.advertise_address, listener.getsockname()[1])]
        except RuntimeError:
            listener.close()
            raise

    @property
    def _controlplane_token_file(self) -> Path:
        return self.data_dir / "pki" / "controlplane.token"

    @property
    def _scheduler_token_file(self) -> Path:
        return self.data_dir / "pki" / "scheduler.token"

    @property
    def _dns_token_file(self) -> Path:
        return self.data_dir / "pki" / "dns.token"

    @property
    def dns_listen(self) -> str:
        """Where the DNS serves (kube-dns's endpoint): the API server's address on the cluster
        bridge in container mode (pods reach it), the node range's .254 in process mode."""
        return self.net.apiserver_ip if self.net is not None else process_dns_address(self.cfg.node_ip_base)

    async def _spawn_dns(self, url: str) -> None:
        """The cluster DNS in a process of its own: its event loop answers queries only (the
        p99 target), and a DNS crash is not a control-plane crash."""
        if not self.cfg.dns:
            return
        self.dns = await _spawn(
            "dns", "--server", url, "--token-file", str(self._dns_token_file),
            "--ca-file", str(self.data_dir / "pki" / "ca.crt"), "--listen", self.dns_listen,
            "--service-ip", self.dns_ip, "--cluster-domain", self.cfg.cluster_domain,
            *(a for u in self.cfg.dns_upstreams for a in ("--upstream", u)),
            log=self.data_dir / "logs" / "dns.log")

    async def _wait_dns(self) -> None:
        if self.dns is None:
            return
        try:
            self.dns_address = await _wait_line(self.dns, "DNS server: ", 30, failure="DNS failed: ")
            self._drains.append(asyncio.create_task(_drain(self.dns)))
        except ChildFailed as e:
            _say(f"• the cluster DNS did not start: {e} (pods resolve only through the host)")
        except (RuntimeError, TimeoutError):
            _say(f"• the cluster DNS did not start; see {self.data_dir / 'logs' / 'dns.log'}")

    @property
    def _ingress_token_file(self) -> Path:
        return self.data_dir / "pki" / "ingress.token"

    async def _spawn_ingress(self, url: str) -> None:
        """The built-in Ingress controller, on every node IP (its own process and identity)."""
        if not (self.cfg.ingress_http_port or self.cfg.ingress_https_port):
            return
        self.ingress = await _spawn(
            "ingress-controller", "--server", url, "--token-file", str(self._ingress_token_file),
            "--ca-file", str(self.data_dir / "pki" / "ca.crt"),
            *(a for plan in self.plans for a in ("--address", plan.ip)),
            "--http-port", str(self.cfg.ingress_http_port), "--https-port", str(self.cfg.ingress_https_port),
            log=self.data_dir / "logs" / "ingress.log")

    async def _wait_ingress(self) -> None:
        if self.ingress is None:
            return
        try:
            where = await _wait_line(self.ingress, "Ingress ready: ", 30, failure="Ingress failed: ")
            _say(f"• Ingress controller on {where}")
            self.ingress_ready = True
        except ChildFailed as e:
            _say(f"• Ingress controller not running: {e}")
        except (RuntimeError, TimeoutError):
            _say(f"• Ingress controller did not start; see {self.data_dir / 'logs' / 'ingress.log'}")
        self._drains.append(asyncio.create_task(_drain(self.ingress)))

    async def start(self) -> None:
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The port first (a busy one is reported before the host network changes), then the
        # network, which carries the advertise address, then a socket there on the same port.
        listener = _listen(self.cfg.host, self.cfg.port)
        port = listener.getsockname()[1]
        try:
            self._setup_network()
        except Exception:
            listener.close()
            raise
        listeners = self._listeners(listener)
        try:
            self._prepare_credentials()
            where = ", ".join(f"{s.getsockname()[0]}:{port}" for s in listeners)
            _say(f"• starting API server on {where} and {len(self.plans)} node agents "
                 f"(data dir {self.data_dir})")
            _say(f"• {self.cfg.mode_line or f'runtime {self.cfg.runtime}, data plane {self.dataplane}'}")
            registries = []
            if self.cfg.insecure_registries:
                registries.append(f"plain HTTP to {', '.join(self.cfg.insecure_registries)}")
            if self.cfg.registry_mirrors:
                registries.append(f"docker.io via {', '.join(self.cfg.registry_mirrors)}")
            if registries:
                _say(f"• registries: {'; '.join(registries)}")
            self.server = await self._spawn_server(listeners)
        finally:
            for s in listeners:
                s.close()  # the server holds them now
        # The agents start alongside the server, not after it: their start-up (a Python process
        # and its imports) overlaps the server's, and their first requests wait in the backlog.
        await self._spawn_agents(f"https://{self.cfg.host}:{port}")
        # The controllers and the scheduler run in a process of their own, as
        # kube-controller-manager does: they use the second core, and the API server's event loop
        # serves requests only.
        self.controller_manager = await _spawn(
            "controller-manager", "--server", f"https://{self.cfg.host}:{port}",
            "--token-file", str(self._controlplane_token_file), "--ca-file", str(self.data_dir / "pki" / "ca.crt"),
            "--service-account-private-key-file", str(self.data_dir / "pki" / "sa.key"),
            "--cluster-signing-cert-file", str(self.data_dir / "pki" / "ca.crt"),
            "--cluster-signing-key-file", str(self.data_dir / "pki" / "ca.key"),
            "--local-path-template", str(self.data_dir / "nodes" / "{node}" / "storage"),
            "--scheduler-token-file", str(self._scheduler_token_file),
            "--leader-elect-identity-file", str(self.data_dir / "controller-manager-identity"),
            *self.cfg.control_plane_args, log=self.data_dir / "logs" / "controller-manager.log")
        self._drains.append(asyncio.create_task(_drain(self.controller_manager)))
        await self._spawn_dns(f"https://{self.cfg.host}:{port}")
        await self._spawn_ingress(f"https://{self.cfg.host}:{port}")
        try:
            self.url = await _wait_line(self.server, "API server: ", 30)
        except (RuntimeError, TimeoutError):
            raise RuntimeError(f"the API server did not start; see {self.data_dir / 'logs' / 'server.log'}") \
                from None
        self._drains.append(asyncio.create_task(_drain(self.server)))
        _say(f"• API server ready at {self.url} ({time.monotonic() - t0:.2f}s)")
        await self._wait_agents()
        _say(f"• {len(self.plans)} nodes Ready ({time.monotonic() - t0:.2f}s)")
        await self._wait_dns()
        await self._wait_ingress()
        if self.cfg.update_user_kubeconfig:
            merge_user_kubeconfig(self.kubeconfig, context=self.cfg.context)
        self.join_line = await _join_line(self.data_dir, self.url)

    def _setup_network(self) -> None:
        """The cluster bridge, node IPs, routes and filter table for container pods (nothing for
        process pods); what a crashed run left is removed first."""
        if self.net is None:
            return
        removed = hostnet.remove_leftovers(self.net.cluster_id)
        if removed:
            _say(f"• removed what a previous run left: {', '.join(removed)}")
        hostnet.check_host(self.net)
        try:
            hostnet.setup_cluster_network(self.net, pod_egress=self.cfg.pod_egress,
                                          local_vips=self.dataplane == "userspace")
        except hostnet.HostNetError:
            hostnet.remove_leftovers(self.net.cluster_id)
            raise

    def _agent_network_args(self, plan: NodePlan) -> list[str]:
        if self.net is None:
            return []
        routes = self.net.pod_routes() + (["0.0.0.0/0"] if self.cfg.pod_egress else [])
        return ["--node-bridge", getattr(plan, "bridge"), "--pod-routes", ",".join(routes)]

    def _agent_registry_args(self) -> list[str]:
        return [*(a for r in self.cfg.insecure_registries for a in ("--insecure-registry", r)),
                *(a for m in self.cfg.registry_mirrors for a in ("--registry-mirror", m))]

    async def _spawn_server(self, listeners: list[socket.socket]) -> asyncio.subprocess.Process:
        port = listeners[0].getsockname()[1]
        advertise = ["--advertise-address", self.advertise_address] if self.advertise_address else []
        if len(listeners) > 1:
            advertise += ["--advertise-listen-fd", str(listeners[1].fileno())]
        return await _spawn(
            "server", "--data-dir", str(self.data_dir), "--bind-address", self.cfg.host, "--port", str(port),
            "--listen-fd", str(listeners[0].fileno()), *advertise, "--no-control-plane", *self.cfg.server_args,
            log=self.data_dir / "logs" / "server.log", pass_fds=tuple(s.fileno() for s in listeners))

    async def restart_server(self) -> None:
        """Start the API server again on the same port and data dir (after a crash). Agents and
        the controller manager reconnect by themselves and resume their watches."""
        port = int(self.url.rsplit(":", 1)[1])
        listeners = self._listeners(_listen(self.cfg.host, port))
        try:
            self.server = await self._spawn_server(listeners)
        finally:
            for s in listeners:
                s.close()
        await _wait_line(self.server, "API server: ", 30)
        self._drains.append(asyncio.create_task(_drain(self.server)))

    async def _spawn_agents(self, url: str) -> None:
        for plan in self.plans:
            self.agents[plan.name] = await _spawn(
                "agent", "--server", url, "--token-file", str(self._node_token_file(plan)),
                "--ca-file", str(self.data_dir / "pki" / "ca.crt"), "--node-name", plan.name,
                "--node-ip", plan.ip, "--pod-cidr", plan.pod_cidr, "--dataplane", self.dataplane,
                *([] if self.cfg.traffic_counters else ["--traffic-counters=false"]),
                "--data-dir", str(self.data_dir / "nodes" / plan.name),
                "--lease-interval", str(self.cfg.lease_interval), "--runtime", self.cfg.runtime,
                *(["--container-runtime-endpoint", self.cfg.container_runtime_endpoint]
                  if self.cfg.container_runtime_endpoint else []),
                *self._agent_network_args(plan), *self._agent_registry_args(),
                "--container-log-max-size", self.cfg.container_log_max_size,
                "--container-log-max-files", str(self.cfg.container_log_max_files),
                *self._agent_capacity_args(), *self._agent_dns_args(),
                log=self.data_dir / "logs" / f"{plan.name}.log")

    def _agent_dns_args(self) -> list[str]:
        return ["--cluster-dns", self.dns_ip, "--cluster-domain", self.cfg.cluster_domain] if self.dns_ip else []

    def _agent_capacity_args(self) -> list[str]:
        from pocketkube.agent.node import machine_share

        cpu, memory = machine_share(self.cfg.nodes)
        return ["--node-cpu", self.cfg.node_cpu or cpu, "--node-memory", self.cfg.node_memory or memory]

    async def _wait_agents(self) -> None:
        for name, proc in self.agents.items():
            try:
                await _wait_line(proc, "Node ready: ", 30, failure="Node failed: ")
            except ChildFailed as e:  # "node-1: why"
                raise RuntimeError(f"node {e}; see {self.data_dir / 'logs' / (name + '.log')}") from None
            except (RuntimeError, TimeoutError):
                raise RuntimeError(f"node {name} did not become ready; see "
                                   f"{self.data_dir / 'logs' / (name + '.log')}") from None
            self._drains.append(asyncio.create_task(_drain(proc)))

    def summary(self) -> str:
        lines = ["", "NODE      IP"]
        lines += [f"{p.name:<9} {p.ip}" for p in self.plans]
        if self.net is not None:
            lines += ["", "Pods pull their images; without a registry, load them into every node:",
                      "  pocketkube image load FILE.tar          (docker save / OCI archives)",
                      "  pocketkube image load --from-host nginx (built from this host's nginx-light)"]
        if self.dns_address:
            lines += ["", f"Cluster DNS: {self.dns_ip} (kube-system/kube-dns, zone {self.cfg.cluster_domain}); "
                          "from this host:",
                      f"  dig @{self.dns_ip} kubernetes.default.svc.{self.cfg.cluster_domain}"]
            served = self.dns_address.split()[0]  # HOST:PORT; not 53 when it could not bind that (no root)
            if not served.endswith(":53"):
                host, port = served.rsplit(":", 1)
                lines += [f"  dig @{host} -p {port} kubernetes.default.svc.{self.cfg.cluster_domain}"
                          "   (the server itself: port 53 needs root)"]
        if self.ingress_ready and self.cfg.ingress_http_port:
            port = "" if self.cfg.ingress_http_port == 80 else f":{self.cfg.ingress_http_port}"
            lines += ["", f"Ingresses (class pocketkube) answer on every node IP: "
                          f"curl -H 'Host: <host>' http://{self.plans[0].ip}{port}/"]
        if ui := _ui_lines(self.data_dir, self.url):
            lines += ["", *ui]
        if getattr(self, "join_line", ""):
            lines += ["", "Agents on other hosts join with (the token expires in 24h; `pocketkube token create` "
                          "makes another):", f"  {self.join_line}"]
        lines += ["", f"API server: {self.url}", f"export KUBECONFIG={self.kubeconfig}",
                  f"(also available as context '{self.cfg.context}' in ~/.kube/config)" if self.cfg.update_user_kubeconfig
                  else "", "Press Ctrl-C to stop the cluster."]
        return "\n".join(lines)

    async def stop(self) -> None:
        if self.ingress is not None:
            await stop_group(self.ingress, 15)
        if self.controller_manager is not None:
            await stop_group(self.controller_manager, 15)
        if self.dns is not None:
            await stop_group(self.dns, 15)
        await asyncio.gather(*(stop_group(p, 40) for p in self.agents.values()))
        # An agent that died (a simulated node crash) left its pods running for a restart to
        # re-adopt, and its data plane programmed; `up` is stopping the whole cluster, so they go too.
        for plan in self.plans:
            kill_recorded(self.data_dir / "nodes" / plan.name)
            unmount_volumes(self.data_dir / "nodes" / plan.name / "kubelet")
            remove_leftovers(plan.name, plan.ip)
        if self.net is not None:
            from pocketkube.agent.runtime.containerd import stop_leftover_containerd  # gRPC: only when used

            for plan in self.plans:
                await stop_leftover_containerd(self.data_dir / "nodes" / plan.name / "containerd")
            hostnet.teardown_cluster_network(self.net.cluster_id)
            hostnet.remove_leftovers(self.net.cluster_id)  # the bridges of agents that died
            portmap.remove_idle_chains()  # unless another cluster's pods still map ports
        if self.server is not None:
            await stop_group(self.server, 15)
        for t in self._drains:
            t.cancel()


def merge_user_kubeconfig(cluster_config: Path, user_config: Path | None = None, context: str = "pocketkube") -> None:
    """Add (or refresh) the `pocketkube` cluster, user and context (named `context`, with the user
    `<context>-admin`), keeping every other entry."""
    user_config = user_config or Path(os.environ.get("HOME", "~")).expanduser() / ".kube" / "config"
    ours = _renamed(yaml.safe_load(cluster_config.read_text()), context)
    try:
        theirs = yaml.safe_load(user_config.read_text()) or {}
    except FileNotFoundError:
        theirs = {}
    except (OSError, yaml.YAMLError):
        return  # never clobber a kubeconfig we cannot read
    theirs.setdefault("apiVersion", "v1")
    theirs.setdefault("kind", "Config")
    for section in ("clusters", "users", "contexts"):
        mine = {e["name"]: e for e in ours[section]}
        kept = [e for e in (theirs.get(section) or []) if e.get("name") not in mine]
        theirs[section] = kept + list(mine.values())
    theirs.setdefault("current-context", ours["current-context"])
    if not theirs.get("current-context"):
        theirs["current-context"] = ours["current-context"]
    user_config.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(user_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(theirs, f, sort_keys=False)


def _renamed(config: dict, context: str) -> dict:
    """The data dir's kubeconfig with its one cluster, user and context named after `context`."""
    user = f"{context}-admin"
    for e in config["clusters"]:
        e["name"] = context
    for e in config["users"]:
        e["name"] = user
    for e in config["contexts"]:
        e["name"] = context
        e["context"] = {**e["context"], "cluster": context, "user": user}
    config["current-context"] = context
    return config


SERVER_RESTARTS = 5  # within SERVER_RESTART_WINDOW seconds, before `up` gives up
SERVER_RESTART_WINDOW = 60.0


async def _supervise_server(cluster: Cluster) -> None:
    """Restart a crashed API server, as a service manager would; returns when it keeps crashing.

    The state is on disk, so a restarted server has every acknowledged write; node data planes
    keep serving meanwhile, and clients resume their watches from their last resourceVersion.
    """
    restarts: list[float] = []
    while cluster.server is not None:
        code = await cluster.server.wait()
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < SERVER_RESTART_WINDOW] + [now]
        if len(restarts) > SERVER_RESTARTS:
            return
        _say(f"• the API server exited (code {code}); restarting it")
        await asyncio.sleep(0.5)
        try:
            await cluster.restart_server()
        except (RuntimeError, OSError, TimeoutError) as e:
            _say(f"• the API server could not restart: {e}")
            return
        _say("• API server restarted")


async def _supervise_dns(cluster: Cluster) -> None:
    """Start the cluster DNS again when it exits (pods keep its ClusterIP in their resolv.conf);
    gives up after SERVER_RESTARTS exits within SERVER_RESTART_WINDOW seconds."""
    restarts: list[float] = []
    while cluster.dns is not None and cluster.dns_address:
        code = await cluster.dns.wait()
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < SERVER_RESTART_WINDOW] + [now]
        if len(restarts) > SERVER_RESTARTS:
            _say(f"• the cluster DNS keeps exiting; see {cluster.data_dir / 'logs' / 'dns.log'}")
            return
        _say(f"• the cluster DNS exited (code {code}); restarting it")
        await asyncio.sleep(0.5)
        await cluster._spawn_dns(cluster.url)
        await cluster._wait_dns()


async def _report_death(name: str, proc: asyncio.subprocess.Process) -> None:
    code = await proc.wait()
    _say(f"• node agent {name} exited (code {code}); the node will turn NotReady")


async def run_up(cfg: UpConfig) -> int:
    try:
        cluster = Cluster(cfg)
    except PlanError as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cluster.start()
    except (RuntimeError, OSError, PlanError) as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        await cluster.stop()
        return 1
    except BaseException:
        # A bug or a Ctrl-C during the start: what was set up on the host is undone all the same.
        await cluster.stop()
        raise
    _say(cluster.summary())
    waiter = asyncio.create_task(stop.wait())
    # A node agent that dies is a failed node: the cluster goes on without it, as Kubernetes does.
    watchers = [asyncio.create_task(_report_death(name, p)) for name, p in cluster.agents.items()]
    supervisor = asyncio.create_task(_supervise_server(cluster))
    watchers.append(asyncio.create_task(_supervise_dns(cluster)))
    done, _ = await asyncio.wait([waiter, supervisor], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        _say(f"• the API server keeps failing; stopping (see {cluster.data_dir / 'logs'})")
    deaths = [supervisor]
    for t in [waiter, *deaths, *watchers]:
        t.cancel()  # agents exiting from here on are stopping, not failing
    _say("• stopping: pods, agents, server")
    await cluster.stop()
    _say("• stopped")
    return 0
