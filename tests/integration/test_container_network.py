"""The container-mode pod network with real packets: bridges, routes and the cluster table from
net.hostnet, pods simulated exactly as the CNI bridge plugin makes them (a network namespace, a
veth on the node bridge with hairpin on, the pod's address and routes via the gateway), and the
real nftables data plane of each node with `bridged_pods`.

The ranges are test ranges, not the defaults, so a developer's running cluster is untouched:
pods 10.245.0.0/16, Services 10.97.0.0/16, nodes 10.251.0.0/24, LoadBalancers 10.251.1.0/24.
Every host object made here (bridges, veths, netns, routes, tables, responder processes) is
removed, even when a test fails, and the last test checks that nothing remains.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from pocketkube.net import hostnet
from pocketkube.net.addresses import ContainerPlan, PlanError, cluster_id, container_plan
from pocketkube.proxy.model import Endpoint, ServiceEntry, ServicePort
from pocketkube.proxy.nftables import render
from pocketkube.proxy.nftables.nft import default_runner, nft_usable
from pocketkube.proxy.nftables.proxier import NftablesDataPlane
from pocketkube.proxy.userspace.proxier import UserspaceDataPlane
from pocketkube.testing.capture import (
    CONTROL_DESTINATION,
    PacketCapture,
    capture_usable,
    has_default_route,
    send_control_packet,
)
from pocketkube.testing.requires import NET_RAW, NFT, ROOT, is_root, requires
from pocketkube.testing.waits import wait_for, wait_for_async

pytestmark = [requires(is_root(), ROOT), requires(is_root() and nft_usable(), NFT)]

RANGES = {"pod_cidr_base": "10.245.0.0/16", "service_cidr": "10.97.0.0/16", "node_ip_base": "10.251.0.0",
          "load_balancer_pool": "10.251.1.0/24"}
POD_PORT = 8080
WEB_VIP, SELF_VIP, EMPTY_VIP, UDP_VIP, LB_IP = "10.97.0.10", "10.97.0.11", "10.97.0.12", "10.97.0.13", "10.251.1.10"
WEB_NODE_PORT, SELF_NODE_PORT = 30950, 30951

# Each pod answers "<its ip> <the peer address it sees>", so a test sees where a connection landed
# and whether its source was kept or masqueraded.
RESPONDER = """
import socket, sys, threading
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", int(sys.argv[2])))
    while True:
        _, peer = u.recvfrom(100)
        u.sendto(f"{sys.argv[1]} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(64)
while True:
    c, peer = s.accept()
    c.sendall(f"{sys.argv[1]} {peer[0]}".encode())
    c.close()
"""
UDP_CLIENT = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(float(sys.argv[3]))
    try:
        s.sendto(b"?", (sys.argv[1], int(sys.argv[2])))
        print(s.recv(100).decode())
    except OSError as e:
        print("ERR", type(e).__name__)
"""
CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
    print(data.decode())
except OSError as e:
    print("ERR", type(e).__name__)
"""


def responder(netns: str, addr: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", RESPONDER, addr, str(POD_PORT)],
                            stdout=subprocess.DEVNULL)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@dataclass
class Pod:
    name: str
    node: int  # 1-based
    ip: str
    netns: str
    veth: str  # host side, on the node bridge
    responder: subprocess.Popen | None = None

    def fetch(self, addr: str, port: int, timeout: float = 2.0, client: str = CLIENT) -> str:
        """A TCP request (or with UDP_CLIENT a datagram) from inside the pod: the answer, or
        'ERR <exception>'."""
        done = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", client, addr, str(port),
                               str(timeout)], capture_output=True, text=True, timeout=timeout + 10, check=True)
        return done.stdout.strip()


class PodNetwork:
    """The host network of a 2-node test cluster and three pods: a and b on node 1, c on node 2."""

    def __init__(self, cid: str, pod_egress: bool = False) -> None:
        self.plan: ContainerPlan = container_plan(cid, 2, **RANGES)
        self.pod_egress = pod_egress
        self.pods: dict[str, Pod] = {}

    @property
    def cid(self) -> str:
        return self.plan.cluster_id

    def up(self) -> None:
        hostnet.check_host(self.plan)
        hostnet.setup_cluster_network(self.plan, self.pod_egress)
        for node in self.plan.nodes:
            hostnet.setup_node_bridge(node.bridge, node.pod_cidr)
        for name, node, host in (("a", 1, 2), ("b", 1, 3), ("c", 2, 2)):
            self._add_pod(name, node, host)
        for pod in self.pods.values():
            wait_for(lambda pod=pod: host_fetch(pod.ip, POD_PORT, 0.5).startswith(pod.ip), timeout=10,
                     what=f"pod {pod.name}'s responder")

    def _add_pod(self, name: str, node_index: int, host: int) -> None:
        """What the CNI bridge plugin does (hairpinMode, isGateway, host-local routes)."""
        node = self.plan.nodes[node_index - 1]
        subnet = ipaddress.ip_network(node.pod_cidr)
        pod = Pod(name, node_index, str(subnet.network_address + host), f"pk{self.cid}-pod-{name}",
                  f"vpk{self.cid}{name}")
        self.pods[name] = pod
        ip("netns", "add", pod.netns)
        ip("link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        ip("link", "set", pod.veth, "master", node.bridge, "up")
        ip("link", "set", "dev", pod.veth, "type", "bridge_slave", "hairpin", "on")
        ip("-n", pod.netns, "addr", "add", f"{pod.ip}/{subnet.prefixlen}", "dev", "eth0")
        ip("-n", pod.netns, "link", "set", "eth0", "up")
        ip("-n", pod.netns, "link", "set", "lo", "up")
        for route in self.plan.pod_routes():
            ip("-n", pod.netns, "route", "add", route, "via", node.gateway)
        pod.responder = responder(pod.netns, pod.ip)

    def down(self) -> None:
        for pod in self.pods.values():
            if pod.responder is not None:
                pod.responder.kill()
                pod.responder.wait()
            subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", pod.veth], capture_output=True, check=False)  # gone with the netns
        for node in self.plan.nodes:
            hostnet.teardown_node_bridge(node.bridge)
        hostnet.teardown_cluster_network(self.cid)
        hostnet.remove_leftovers(self.cid)

    def leftovers(self) -> list[str]:
        """Whatever of this cluster is still on the host."""
        found = [f"link {name}" for name in ip("-o", "link").split() if name.rstrip(":@").startswith(
            (f"pk{self.cid}", f"vpk{self.cid}"))]
        found += [f"netns {n}" for n in ip("netns", "list").split() if n.startswith(f"pk{self.cid}")]
        ranges = [ipaddress.ip_network(r) for r in self.plan.pod_routes()]
        for route in json.loads(ip("-j", "-4", "route", "show", "table", "all")):
            dst = route.get("dst", "default")
            if dst != "default" and any(ipaddress.ip_network(dst, strict=False).overlaps(r) for r in ranges):
                found.append(f"route {dst} dev {route.get('dev')} table {route.get('table', 'main')}")
        if hostnet.cluster_table_exists(self.cid):
            found.append(f"table {hostnet.cluster_table(self.cid)}")
        found += [f"process {p.responder.pid}" for p in self.pods.values()
                  if p.responder is not None and p.responder.poll() is None]
        return found


@contextmanager
def pod_network(tmp_path, pod_egress: bool = False) -> Iterator[PodNetwork]:
    net = PodNetwork(cluster_id(str(tmp_path.resolve())), pod_egress)
    try:
        net.up()
        yield net
    finally:
        net.down()


@pytest.fixture
def net(tmp_path) -> Iterator[PodNetwork]:
    with pod_network(tmp_path) as n:
        yield n


def host_fetch(addr: str, port: int, timeout: float = 2.0) -> str:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            data = b""
            while chunk := s.recv(100):
                data += chunk
        return data.decode()
    except OSError as e:
        return f"ERR {type(e).__name__}"


def model(net: PodNetwork) -> dict:
    def endpoint(pod: Pod) -> Endpoint:
        return Endpoint(pod.ip, POD_PORT, net.plan.nodes[pod.node - 1].name)

    a, c = net.pods["a"], net.pods["c"]
    web = ServiceEntry(ServicePort("itest", "web", "", "TCP", 80, (WEB_VIP,), WEB_NODE_PORT,
                                   load_balancer_ips=(LB_IP,)), (endpoint(c),))  # on node 2 only
    self_ = ServiceEntry(ServicePort("itest", "self", "", "TCP", 80, (SELF_VIP,), SELF_NODE_PORT), (endpoint(a),))
    empty = ServiceEntry(ServicePort("itest", "empty", "", "TCP", 80, (EMPTY_VIP,)), ())
    udp = ServiceEntry(ServicePort("itest", "udp", "", "UDP", 53, (UDP_VIP,)), (endpoint(c),))
    return {(e.port.key, e.port.protocol): e for e in (web, self_, empty, udp)}


@pytest.fixture(params=["nftables", "userspace"])
async def planes(request, net):
    """Both nodes' data planes of one kind, programmed with `model`; whatever they made goes
    whatever happens. The userspace plane listens on the VIPs, which the cluster network then
    makes local addresses of the host (`local_vips`)."""
    if request.param == "userspace":
        hostnet.setup_cluster_network(net.plan, net.pod_egress, local_vips=True)
        made = [UserspaceDataPlane(f"netit-{node.name}-{net.cid}", node.ip) for node in net.plan.nodes]
    else:
        made = [NftablesDataPlane(f"netit-{node.name}-{net.cid}", node.ip, bridged_pods=True)
                for node in net.plan.nodes]
    try:
        for plane in made:
            await plane.start()
            await plane.apply(model(net))
        yield made
    finally:
        runner = default_runner()
        try:
            for plane in made:
                await plane.stop()
                if isinstance(plane, NftablesDataPlane):
                    runner.run_sync(render.render_delete(plane.ctx))
        finally:
            runner.close()


def service_traffic(net: PodNetwork) -> dict[str, str]:
    """Every path the issue names, from the host and from pods; what each answered."""
    a, b, c = net.pods["a"], net.pods["b"], net.pods["c"]
    n1, n2 = (n.ip for n in net.plan.nodes)
    return {
        "host→ClusterIP": host_fetch(WEB_VIP, 80),
        "host→node-1:NodePort": host_fetch(n1, WEB_NODE_PORT),
        "host→node-2:NodePort": host_fetch(n2, WEB_NODE_PORT),
        "host→LB IP": host_fetch(LB_IP, 80),
        "pod→ClusterIP (other node)": b.fetch(WEB_VIP, 80),
        "pod→ClusterIP (same bridge)": b.fetch(SELF_VIP, 80),
        "pod→node-1:NodePort": b.fetch(n1, WEB_NODE_PORT),
        "pod→node-2:NodePort": c.fetch(n2, SELF_NODE_PORT),
        "pod→LB IP": a.fetch(LB_IP, 80),
        "hairpin via ClusterIP": a.fetch(SELF_VIP, 80),
        "hairpin via NodePort": a.fetch(n2, SELF_NODE_PORT),
        "pod→pod across bridges": b.fetch(c.ip, POD_PORT),
        "pod→pod across bridges, back": c.fetch(b.ip, POD_PORT),
    }


def test_every_cluster_range_routes_to_a_cluster_bridge_and_pods_have_no_way_out(net):
    for cidr in net.plan.ranges.values():
        rng = ipaddress.ip_network(cidr)
        for addr in (rng.network_address + 1, rng.broadcast_address - 1, rng.network_address + 7 * 256 + 9):
            if addr in rng:
                route = ip("-o", "route", "get", str(addr))
                assert f" dev pk{net.cid}" in route or route.startswith("local "), (cidr, route)
    probe = subprocess.run(["ip", "-n", net.pods["a"].netns, "route", "get", CONTROL_DESTINATION[0]],
                           capture_output=True, text=True, check=False)
    assert probe.returncode != 0 and "unreachable" in probe.stderr  # no default route in a pod


async def test_host_and_pods_reach_every_frontend_on_every_node(net, planes):
    a, b, c = net.pods["a"], net.pods["b"], net.pods["c"]
    gateway1, gateway2 = (n.gateway for n in net.plan.nodes)
    seen = await asyncio.to_thread(service_traffic, net)
    # The host's connections come from a node IP (an address of the cluster bridge: the kernel
    # picks which), so a pod answers the host through its gateway, never anywhere else.
    node_ips = {n.ip for n in net.plan.nodes}
    seen = {path: answer.replace(answer.split()[-1], "<node IP>") if answer.split()[-1] in node_ips else answer
            for path, answer in seen.items()}
    if planes[0].name == "userspace":
        # The proxy on the host makes the backend connection, from the gateway of the pod's node.
        to_a, to_c = f"{a.ip} {gateway1}", f"{c.ip} {gateway2}"
        expected = {
            "host→ClusterIP": to_c, "host→node-1:NodePort": to_c, "host→node-2:NodePort": to_c,
            "host→LB IP": to_c, "pod→ClusterIP (other node)": to_c, "pod→ClusterIP (same bridge)": to_a,
            "pod→node-1:NodePort": to_c, "pod→node-2:NodePort": to_a, "pod→LB IP": to_c,
            "hairpin via ClusterIP": to_a, "hairpin via NodePort": to_a,
        }
    else:
        expected = {
            "host→ClusterIP": f"{c.ip} <node IP>",
            "host→node-1:NodePort": f"{c.ip} <node IP>",
            "host→node-2:NodePort": f"{c.ip} <node IP>",
            "host→LB IP": f"{c.ip} <node IP>",
            "pod→ClusterIP (other node)": f"{c.ip} {b.ip}",  # the client's address is kept
            "pod→ClusterIP (same bridge)": f"{a.ip} {b.ip}",
            "pod→node-1:NodePort": f"{c.ip} {b.ip}",
            "pod→node-2:NodePort": f"{a.ip} {c.ip}",
            "pod→LB IP": f"{c.ip} {a.ip}",
            "hairpin via ClusterIP": f"{a.ip} {gateway1}",  # masqueraded to the gateway: else a drops it
            "hairpin via NodePort": f"{a.ip} {gateway1}",
        }
    expected |= {"pod→pod across bridges": f"{c.ip} {b.ip}", "pod→pod across bridges, back": f"{b.ip} {c.ip}"}
    assert seen == expected


def host_datagram(addr: str, port: int, timeout: float = 2.0) -> str:
    done = subprocess.run([sys.executable, "-c", UDP_CLIENT, addr, str(port), str(timeout)], capture_output=True,
                          text=True, timeout=timeout + 10, check=True)
    return done.stdout.strip()


async def test_udp_through_a_cluster_ip_from_host_and_pod(net, planes):
    b, c = net.pods["b"], net.pods["c"]
    from_host = await asyncio.to_thread(host_datagram, UDP_VIP, 53)
    from_pod = await asyncio.to_thread(b.fetch, UDP_VIP, 53, 2.0, UDP_CLIENT)
    if planes[0].name == "userspace":  # relayed by the proxy on the host, from c's gateway
        assert (from_host, from_pod) == (f"{c.ip} {net.plan.nodes[1].gateway}",) * 2
    else:
        assert from_host.split()[0] == c.ip and from_pod == f"{c.ip} {b.ip}"


async def test_a_service_without_endpoints_refuses_at_once_from_host_and_pod(net, planes):
    started = time.monotonic()
    assert host_fetch(EMPTY_VIP, 80, timeout=1.5).startswith("ERR")
    assert time.monotonic() - started < 1
    assert await asyncio.to_thread(net.pods["b"].fetch, EMPTY_VIP, 80, 1.5) == "ERR ConnectionRefusedError"


def traffic_with_nothing_behind(net: PodNetwork) -> dict[str, str]:
    """With the data planes stopped: Services, node ports and pod egress all fail on this host."""
    b, c = net.pods["b"], net.pods["c"]
    # A pod that routes everything to its gateway (a pod may change its own routes): the cluster
    # table's forward chain must drop its packets to the outside (pod egress is off here).
    ip("-n", c.netns, "route", "add", "default", "via", net.plan.nodes[1].gateway)
    return {
        "host→ClusterIP": host_fetch(WEB_VIP, 80, 0.5),
        "host→LB IP": host_fetch(LB_IP, 80, 0.5),
        "host→node-1:NodePort": host_fetch(net.plan.nodes[0].ip, WEB_NODE_PORT, 0.5),
        "host→absent node's pod": host_fetch("10.245.9.2", POD_PORT, 0.5),
        "pod→ClusterIP": b.fetch(WEB_VIP, 80, 0.5),
        "pod→node-2:NodePort": b.fetch(net.plan.nodes[1].ip, WEB_NODE_PORT, 0.5),
        "pod→outside": c.fetch(*CONTROL_DESTINATION, 0.5),
    }


@requires(capture_usable(), NET_RAW)
async def test_no_cluster_packet_on_any_real_interface_with_or_without_the_data_plane(net, planes):
    capture = PacketCapture()
    with capture.running():
        seen = await asyncio.to_thread(service_traffic, net)
        failed = [path for path, answer in seen.items() if answer.startswith("ERR")]
        assert not failed, seen  # the traffic is real
        for plane in planes:
            await plane.stop()
        dead = await asyncio.to_thread(traffic_with_nothing_behind, net)
        assert all(answer.startswith("ERR") for answer in dead.values()), dead
        if has_default_route():  # sent last: once the capture has it, it has every packet before it
            await wait_for_async(lambda: send_control_packet() or capture.saw_destination(CONTROL_DESTINATION[0]),
                                 timeout=10, interval=0.5,
                                 what="the capture to see the control packet (else it proves nothing)")
    assert capture.packets_in(net.plan.pod_routes()) == []


@contextmanager
def outside_network(cid: str) -> Iterator[tuple[str, str]]:
    """A stand-in for the world outside the cluster that is still on this host: a namespace behind
    a veth with a TEST-NET-3 /30 and a responder; yields (its address, the host's address)."""
    netns, veth, host_ip, outside_ip = f"pk{cid}-outside", f"vpk{cid}x", "203.0.113.1", "203.0.113.2"
    proc = None
    try:
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("addr", "add", f"{host_ip}/30", "dev", veth)
        ip("link", "set", veth, "up")
        ip("-n", netns, "addr", "add", f"{outside_ip}/30", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        proc = responder(netns, outside_ip)
        wait_for(lambda: host_fetch(outside_ip, POD_PORT, 0.5).startswith(outside_ip), timeout=10,
                 what="the outside responder")
        yield outside_ip, host_ip
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)


def test_pod_egress_is_masqueraded_behind_the_host_and_dropped_when_off(tmp_path):
    with pod_network(tmp_path, pod_egress=True) as n, outside_network(n.cid) as (outside_ip, host_ip):
        c = n.pods["c"]
        ip("-n", c.netns, "route", "add", "default", "via", n.plan.nodes[1].gateway)  # as with --pod-egress
        assert c.fetch(outside_ip, POD_PORT) == f"{outside_ip} {host_ip}"  # the pod's address stays inside
        hostnet.setup_cluster_network(n.plan, pod_egress=False)  # set up again, egress off: replaced in place
        assert c.fetch(outside_ip, POD_PORT, 0.5) == "ERR TimeoutError"
        assert c.fetch(n.pods["a"].ip, POD_PORT) == f"{n.pods['a'].ip} {c.ip}"  # the cluster still works


CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CNI = "the CNI plugins (apt-get install containernetworking-plugins)"


def cni(command: str, config: dict, netns: str, container_id: str) -> dict:
    """Run the CNI bridge plugin as containerd does (one plugin of the conflist, CNI 1.0.0)."""
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/var/run/netns/{netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": CNI_BIN_DIR, "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([f"{CNI_BIN_DIR}/bridge"], input=json.dumps(config), env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout or "{}")


@requires(os.access(f"{CNI_BIN_DIR}/bridge", os.X_OK) and os.access(f"{CNI_BIN_DIR}/host-local", os.X_OK), CNI)
async def test_the_cni_bridge_plugin_reuses_the_node_bridge_and_its_pod_is_served(net, tmp_path):
    """The pods above are made by hand; this one by the real plugin, with the conflist's settings."""
    node = net.plan.nodes[0]
    bridge_before = json.loads(ip("-j", "addr", "show", "dev", node.bridge))[0]
    netns, container_id = f"pk{net.cid}-pod-cni", f"pocketkube-test-{net.cid}"
    config = {"cniVersion": "1.0.0", "name": "pocketkube", "type": "bridge", "bridge": node.bridge,
              "isGateway": True, "ipMasq": False, "hairpinMode": True,
              "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                       "ranges": [[{"subnet": node.pod_cidr}]],
                       "routes": [{"dst": r} for r in net.plan.pod_routes()]}}
    ip("netns", "add", netns)
    proc = plane = None
    try:
        result = cni("ADD", config, netns, container_id)
        pod_ip = result["ips"][0]["address"].split("/")[0]
        assert result["ips"][0]["gateway"] == node.gateway
        bridge_after = json.loads(ip("-j", "addr", "show", "dev", node.bridge))[0]
        assert bridge_after["ifindex"] == bridge_before["ifindex"]  # reused, not made again
        assert [a["local"] for a in bridge_after["addr_info"] if a["family"] == "inet"] == [node.gateway]
        proc = responder(netns, pod_ip)
        await wait_for_async(lambda: host_fetch(pod_ip, POD_PORT, 0.5).startswith(pod_ip), timeout=10,
                             what="the CNI pod's responder")
        plane = NftablesDataPlane(f"netit-cni-{net.cid}", node.ip, bridged_pods=True)
        await plane.start()
        sp = ServicePort("itest", "cni", "", "TCP", 80, (SELF_VIP,), SELF_NODE_PORT)
        await plane.apply({(sp.key, "TCP"): ServiceEntry(sp, (Endpoint(pod_ip, POD_PORT, plane.ctx.node_name),))})
        c = net.pods["c"]
        assert await asyncio.to_thread(c.fetch, SELF_VIP, 80) == f"{pod_ip} {c.ip}"  # from the other node
        hairpin = await asyncio.to_thread(
            subprocess.run, ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, SELF_VIP, "80", "2"],
            capture_output=True, text=True, check=True)
        assert hairpin.stdout.strip() == f"{pod_ip} {node.gateway}"
    finally:
        if plane is not None:
            await plane.stop()
        if proc is not None:
            proc.kill()
            proc.wait()
        cni("DEL", config, netns, container_id)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    ports = [link["ifname"] for link in json.loads(ip("-j", "link", "show", "master", node.bridge))]
    assert sorted(ports) == sorted(p.veth for p in net.pods.values() if p.node == 1)  # the plugin's veth is gone


def test_a_range_taken_on_this_host_is_refused_naming_the_interface_and_the_flag(tmp_path):
    plan = container_plan(cluster_id(str(tmp_path.resolve())), 2, **RANGES)
    dummy = f"vpk{plan.cluster_id}d"
    try:
        ip("link", "add", dummy, "type", "veth", "peer", "name", f"{dummy}p")  # a host with no dummy module
        ip("addr", "add", "10.97.77.1/24", "dev", dummy)  # inside the test Service range
        ip("link", "set", dummy, "up")
        with pytest.raises(PlanError) as err:
            hostnet.check_host(plan)
        assert str(err.value) == (f"the services range 10.97.0.0/16 overlaps 10.97.77.1/24 on {dummy} (a host "
                                  "interface's network): pick another range with --service-cidr; the services range "
                                  f"10.97.0.0/16 overlaps the host route 10.97.77.0/24 via {dummy}: pick another "
                                  "range with --service-cidr")
    finally:
        subprocess.run(["ip", "link", "del", dummy], capture_output=True, check=False)


def test_teardown_and_remove_leftovers_leave_nothing(tmp_path):
    with pod_network(tmp_path) as n:
        assert n.leftovers()  # the check sees what is there
    assert n.leftovers() == []
    # The userspace plane's local VIP ranges come and go with the flag (a restart with another plane).
    vip = str(ipaddress.ip_network(n.plan.service_cidr).network_address + 10)
    hostnet.setup_cluster_network(n.plan, pod_egress=True, local_vips=True)
    assert ip("-o", "route", "get", vip).startswith("local ")
    hostnet.setup_cluster_network(n.plan, pod_egress=True)
    assert f" dev pk{n.cid}c " in ip("-o", "route", "get", vip)
    # A crashed run: the cluster's bridges and table remain, without their owners (the local
    # routes go with the cluster bridge).
    hostnet.setup_cluster_network(n.plan, pod_egress=True, local_vips=True)
    hostnet.setup_node_bridge(n.plan.nodes[0].bridge, n.plan.nodes[0].pod_cidr)
    removed = hostnet.remove_leftovers(n.cid)
    assert removed == [f"nftables table ip pocketkube-net-{n.cid}", f"bridge pk{n.cid}c", f"bridge pk{n.cid}n1"]
    assert n.leftovers() == [] and hostnet.remove_leftovers(n.cid) == []
    assert os.path.exists("/proc/sys/net/bridge")  # the prerequisites stay: host-global, see hostnet
