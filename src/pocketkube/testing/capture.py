"""Packet capture for the address-safety tests: what crosses this host's real interfaces.

An AF_PACKET socket with ETH_P_ALL (a socket bound to one protocol is not shown outgoing
packets, only taps are) records every IPv4 packet on every interface except the ones the cluster
itself owns: loopback, pocketkube's bridges (`pk<id>c`, `pk<id>n<i>`), and the veths enslaved to
them or named by the tests (`vpk…`). A test then asks which packets had a cluster address as
source or destination: on a real interface, that is a packet that could have left the machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pocketkube.net.addresses import looks_like_pocketkube_bridge

ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
CONTROL_DESTINATION = ("198.51.100.1", 9)  # TEST-NET-2 via the default route: the capture's control


def _master(interface: str) -> str:
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{interface}/master"))
    except OSError:
        return ""


def is_cluster_interface(interface: str) -> bool:
    """Loopback, a pocketkube bridge, a veth on one, or a test's own bridge or veth (`pkt…`, `vpk…`)."""
    return (interface == "lo" or looks_like_pocketkube_bridge(interface) or interface.startswith(("vpk", "pkt"))
            or looks_like_pocketkube_bridge(_master(interface)))


class PacketCapture:
    """IPv4 packets (interface, source, destination) seen on the host's other interfaces while
    `running()` is open."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.settimeout(0.1)
        self.seen: list[tuple[str, str, str]] = []
        self._ours: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _is_ours(self, interface: str) -> bool:
        if interface not in self._ours:
            self._ours[interface] = is_cluster_interface(interface)
        return self._ours[interface]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet, (interface, protocol, *_rest) = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if protocol == ETH_P_IP and len(packet) >= 20 and not self._is_ours(interface):
                self.seen.append((interface, socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])))

    def packets_in(self, cidrs: Iterable[str]) -> list[tuple[str, str, str]]:
        """The packets from or to an address in one of `cidrs`."""
        nets = [ipaddress.ip_network(c) for c in cidrs]
        return [p for p in self.seen if any(ipaddress.ip_address(a) in n for a in p[1:] for n in nets)]

    def saw_destination(self, addr: str) -> bool:
        return any(dst == addr for _, _, dst in self.seen)

    @contextmanager
    def running(self) -> Iterator[PacketCapture]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.sock.close()


def capture_usable() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)).close()
    except OSError:
        return False
    return True


def has_default_route() -> bool:
    route = subprocess.run(["ip", "route", "show", "default"], capture_output=True, text=True, check=False)
    return bool(route.stdout.strip())


def send_control_packet(destination: tuple[str, int] = CONTROL_DESTINATION) -> None:
    """A datagram that does leave (if there is a default route): proves the capture sees the wire."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"pocketkube network-safety control", destination)
        except OSError:
            pass
